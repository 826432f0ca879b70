"""Sans-I/O packet decoding, one-line summaries and capture files (pcap, pcapng).

Public names (also re-exported from ``socketkit``):

* :func:`decode` ``(data, linktype) -> Packet`` — typed frozen layers, decoded lazily;
* :func:`summary` ``(data, linktype, ts_ns=None) -> str`` — one ``tcpdump -n -S`` style line;
* :func:`hexdump` ``(data) -> str`` — ``tcpdump -X`` style hex + ASCII;
* :func:`open_capture_file` ``(path_or_fileobj)`` — iterate ``Record(ts_ns, data, orig_len,
  linktype)`` from pcap or pcapng (auto-detected), streaming;
* :class:`PcapWriter` / :class:`PcapngWriter` ``(fileobj, linktype, snaplen=262144,
  nanosecond=False)`` with ``.write(ts_ns, data, orig_len=None)`` and ``.close()``;
* :class:`LinkType` and the ``LINKTYPE_*`` constants; :func:`verify_checksums`.

Malformed input raises :class:`socketkit.DecodeError` ``(layer, offset, reason)`` or yields a
packet marked ``truncated``; nothing else escapes. This package does no I/O of its own except
reading/writing the file objects handed to it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# summary() and hexdump() live in modules of the same name: bound here at import, or the
# submodule (set as a package attribute when it is first imported) would shadow them.
from .hexdump import hexdump
from .summary import summary

# name -> submodule defining it; imported on first use (PEP 562) so that reading and printing
# a capture loads only the modules it needs (start-up time counts in `sniff -r`).
_EXPORTS: dict[str, str] = {
    "CaptureFile": "capfile",
    "open_capture_file": "capfile",
    "internet_checksum": "checksum",
    "verify_checksums": "checksum",
    "MAX_IPV6_EXTENSIONS": "decoder",
    "MAX_VLAN_TAGS": "decoder",
    "Packet": "decoder",
    "decode": "decoder",
    "format_packet": "describe",
    "ARP": "layers",
    "DNS": "layers",
    "ICMP": "layers",
    "ICMPV6": "layers",
    "TCP": "layers",
    "UDP": "layers",
    "Dot1Q": "layers",
    "Ethernet": "layers",
    "IPOption": "layers",
    "IPv4": "layers",
    "IPv6": "layers",
    "IPv6Extension": "layers",
    "Layer": "layers",
    "LinuxSLL": "layers",
    "LinuxSLL2": "layers",
    "Loopback": "layers",
    "LINKTYPE_ETHERNET": "linktype",
    "LINKTYPE_IPV4": "linktype",
    "LINKTYPE_IPV6": "linktype",
    "LINKTYPE_LINUX_SLL": "linktype",
    "LINKTYPE_LINUX_SLL2": "linktype",
    "LINKTYPE_LOOP": "linktype",
    "LINKTYPE_NULL": "linktype",
    "LINKTYPE_RAW": "linktype",
    "LinkType": "linktype",
    "DEFAULT_SNAPLEN": "pcap",
    "PcapWriter": "pcap",
    "PcapngWriter": "pcapng",
    "Record": "record",
    "time_text": "summary",
    "TCPOption": "tcpoptions",
}

__all__ = [
    "ARP",
    "CaptureFile",
    "DEFAULT_SNAPLEN",
    "DNS",
    "Dot1Q",
    "Ethernet",
    "ICMP",
    "ICMPV6",
    "IPOption",
    "IPv4",
    "IPv6",
    "IPv6Extension",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "Layer",
    "LinkType",
    "LinuxSLL",
    "LinuxSLL2",
    "Loopback",
    "MAX_IPV6_EXTENSIONS",
    "MAX_VLAN_TAGS",
    "Packet",
    "PcapWriter",
    "PcapngWriter",
    "Record",
    "TCP",
    "TCPOption",
    "UDP",
    "decode",
    "format_packet",
    "hexdump",
    "internet_checksum",
    "open_capture_file",
    "summary",
    "time_text",
    "verify_checksums",
]

if TYPE_CHECKING:
    from .capfile import (
        CaptureFile,
        open_capture_file,
    )
    from .checksum import (
        internet_checksum,
        verify_checksums,
    )
    from .decoder import (
        MAX_IPV6_EXTENSIONS,
        MAX_VLAN_TAGS,
        Packet,
        decode,
    )
    from .describe import (
        format_packet,
    )
    from .layers import (
        ARP,
        DNS,
        ICMP,
        ICMPV6,
        TCP,
        UDP,
        Dot1Q,
        Ethernet,
        IPOption,
        IPv4,
        IPv6,
        IPv6Extension,
        Layer,
        LinuxSLL,
        LinuxSLL2,
        Loopback,
    )
    from .linktype import (
        LINKTYPE_ETHERNET,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_LINUX_SLL2,
        LINKTYPE_LOOP,
        LINKTYPE_NULL,
        LINKTYPE_RAW,
        LinkType,
    )
    from .pcap import (
        DEFAULT_SNAPLEN,
        PcapWriter,
    )
    from .pcapng import (
        PcapngWriter,
    )
    from .record import (
        Record,
    )
    from .summary import (
        time_text,
    )
    from .tcpoptions import (
        TCPOption,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'socketkit.packet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
