"""socketkit: sockets from Python and from the shell, done right and fast.

The public API is re-exported here and imported lazily (PEP 562), so ``import socketkit``
and the command line start fast. ``socketkit.aio`` holds the asyncio twins of the stream API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it. One table: adding a public name is one line here.
_EXPORTS: dict[str, str] = {
    # errors
    "SocketkitError": "socketkit._errors",
    "AddressError": "socketkit._errors",
    "ResolutionError": "socketkit._errors",
    "ConnectError": "socketkit._errors",
    "ConnectionRefused": "socketkit._errors",
    "ConnectTimeout": "socketkit._errors",
    "DatagramTooLarge": "socketkit._errors",
    "SocketkitTimeout": "socketkit._errors",
    "ReadTimeout": "socketkit._errors",
    "WriteTimeout": "socketkit._errors",
    "BrokenStreamError": "socketkit._errors",
    "ClosedResourceError": "socketkit._errors",
    "IncompleteReadError": "socketkit._errors",
    "ProtocolError": "socketkit._errors",
    "LocalProtocolError": "socketkit._errors",
    "RemoteProtocolError": "socketkit._errors",
    "DecodeError": "socketkit._errors",
    "TLSError": "socketkit._errors",
    "AccessDenied": "socketkit._errors",
    "PermissionDenied": "socketkit._errors",
    "MissingDependency": "socketkit._errors",
    # raw sockets: live capture, ping, traceroute
    "capture": "socketkit.raw.capture",
    "Capture": "socketkit.raw.capture",
    "CaptureStats": "socketkit.raw.capture",
    "CapturedPacket": "socketkit.raw.capture",
    "FilterError": "socketkit.raw.bpf",
    "ping": "socketkit.raw.ping",
    "PingReport": "socketkit.raw.ping",
    "PingStats": "socketkit.raw.ping",
    "Probe": "socketkit.raw.ping",
    "traceroute": "socketkit.raw.trace",
    "TraceReport": "socketkit.raw.trace",
    "Hop": "socketkit.raw.trace",
    "HopProbe": "socketkit.raw.trace",
    # bench (iperf3-compatible throughput, loss and latency tests)
    "BenchResult": "socketkit.bench",
    "BenchServer": "socketkit.bench",
    "BenchRun": "socketkit.bench",
    "IntervalReport": "socketkit.bench",
    # addresses
    "Address": "socketkit._addr",
    "parse_address": "socketkit._addr",
    # packets and capture files (sans-I/O decoding, pcap/pcapng)
    "decode": "socketkit.packet",
    "summary": "socketkit.packet",
    "hexdump": "socketkit.packet",
    "open_capture_file": "socketkit.packet",
    "PcapWriter": "socketkit.packet",
    "PcapngWriter": "socketkit.packet",
    "Record": "socketkit.packet",
    "Packet": "socketkit.packet",
    "LinkType": "socketkit.packet",
    # the stream API (sync; asyncio twins in socketkit.aio)
    "connect": "socketkit._sync.connect",
    "serve": "socketkit._sync.server",
    "Stream": "socketkit._sync.stream",
    "Server": "socketkit._sync.server",
    # the datagram API (sync; asyncio twins in socketkit.aio)
    "udp": "socketkit._sync.udp",
    "DatagramSocket": "socketkit._sync.udp",
    "Datagram": "socketkit._udp",
    # framing (sans-I/O)
    "LineFramer": "socketkit.proto.framing",
    "LengthPrefixFramer": "socketkit.proto.framing",
    "ByteBuffer": "socketkit.proto.buffer",
    "TLSEngine": "socketkit.proto.tls",
    # TLS configuration
    "client_context": "socketkit._tls",
    "server_context": "socketkit._tls",
    "describe_tls": "socketkit._tls",
    "ephemeral_certificate": "socketkit._tls",
    # netcat: the EOF policy (sans-I/O) and session options behind connect/listen
    "EofPolicy": "socketkit.netcat.eof",
    "EofMachine": "socketkit.netcat.eof",
    "NetcatOptions": "socketkit.netcat.options",
    # per-peer datagram servers (sync; asyncio twin in socketkit.aio)
    "serve_udp": "socketkit._sync.udp_server",
    "UDPServer": "socketkit._sync.udp_server",
    "Conversation": "socketkit._sync.udp_server",
}

# public name -> the name inside its module, where they differ
_ALIASES = {"describe_tls": "describe"}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from ._addr import Address, parse_address
    from ._errors import (
        AccessDenied,
        AddressError,
        BrokenStreamError,
        ClosedResourceError,
        ConnectError,
        ConnectionRefused,
        ConnectTimeout,
        DatagramTooLarge,
        DecodeError,
        IncompleteReadError,
        LocalProtocolError,
        MissingDependency,
        PermissionDenied,
        ProtocolError,
        ReadTimeout,
        RemoteProtocolError,
        ResolutionError,
        SocketkitError,
        SocketkitTimeout,
        TLSError,
        WriteTimeout,
    )
    from ._sync.connect import connect
    from ._sync.server import Server, serve
    from ._sync.stream import Stream
    from ._sync.udp import DatagramSocket, udp
    from ._sync.udp_server import Conversation, UDPServer, serve_udp
    from ._tls import client_context, ephemeral_certificate, server_context
    from ._tls import describe as describe_tls
    from ._udp import Datagram
    from .bench import BenchResult, BenchRun, BenchServer, IntervalReport
    from .netcat.eof import EofMachine, EofPolicy
    from .netcat.options import NetcatOptions
    from .packet import (
        LinkType,
        Packet,
        PcapngWriter,
        PcapWriter,
        Record,
        decode,
        hexdump,
        open_capture_file,
        summary,
    )
    from .proto.buffer import ByteBuffer
    from .proto.framing import LengthPrefixFramer, LineFramer
    from .proto.tls import TLSEngine
    from .raw.bpf import FilterError
    from .raw.capture import Capture, CapturedPacket, CaptureStats, capture
    from .raw.ping import PingReport, PingStats, Probe, ping
    from .raw.trace import Hop, HopProbe, TraceReport, traceroute


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'socketkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
