"""LINKTYPE values: the link-layer header type stored in pcap/pcapng files.

These are the *file* values from https://www.tcpdump.org/linktypes.html (libpcap
``pcap/dlt.h``), not the platform's in-memory DLT_ numbers (DLT_RAW is 12 or 14 in memory
but always 101 in a file).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "LinkType",
]


class LinkType(IntEnum):
    """The link types socketkit decodes."""

    NULL = 0  # BSD loopback: 4-byte address family in the *writer's* byte order
    ETHERNET = 1  # Ethernet II / 802.3; Linux ``lo`` captures as Ethernet with zero MACs
    RAW = 101  # bare IPv4 or IPv6, told apart by the version nibble
    LOOP = 108  # OpenBSD loopback: 4-byte address family in network byte order
    LINUX_SLL = 113  # Linux cooked capture v1, 16-byte header
    IPV4 = 228  # bare IPv4
    IPV6 = 229  # bare IPv6
    LINUX_SLL2 = 276  # Linux cooked capture v2, 20-byte header (tcpdump -i any)


LINKTYPE_NULL = LinkType.NULL
LINKTYPE_ETHERNET = LinkType.ETHERNET
LINKTYPE_RAW = LinkType.RAW
LINKTYPE_LOOP = LinkType.LOOP
LINKTYPE_LINUX_SLL = LinkType.LINUX_SLL
LINKTYPE_IPV4 = LinkType.IPV4
LINKTYPE_IPV6 = LinkType.IPV6
LINKTYPE_LINUX_SLL2 = LinkType.LINUX_SLL2
