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

from .capfile import CaptureFile, open_capture_file
from .checksum import internet_checksum, verify_checksums
from .decode import MAX_IPV6_EXTENSIONS, MAX_VLAN_TAGS, Packet, decode
from .hexdump import hexdump
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
from .pcap import DEFAULT_SNAPLEN, PcapWriter
from .pcapng import PcapngWriter
from .record import Record
from .summary import format_packet, summary, time_text
from .tcpoptions import TCPOption

__all__ = [
    "ARP",
    "DEFAULT_SNAPLEN",
    "DNS",
    "ICMP",
    "ICMPV6",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "MAX_IPV6_EXTENSIONS",
    "MAX_VLAN_TAGS",
    "TCP",
    "UDP",
    "CaptureFile",
    "Dot1Q",
    "Ethernet",
    "IPOption",
    "IPv4",
    "IPv6",
    "IPv6Extension",
    "Layer",
    "LinkType",
    "LinuxSLL",
    "LinuxSLL2",
    "Loopback",
    "Packet",
    "PcapWriter",
    "PcapngWriter",
    "Record",
    "TCPOption",
    "decode",
    "format_packet",
    "hexdump",
    "internet_checksum",
    "open_capture_file",
    "summary",
    "time_text",
    "verify_checksums",
]
