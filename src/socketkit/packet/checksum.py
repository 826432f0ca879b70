"""Internet checksums (RFC 1071) and their verification for decoded packets, on request."""

from __future__ import annotations

import struct

from .decoder import Packet
from .layers import ICMP, ICMPV6, TCP, UDP, IPv4, IPv6

__all__ = ["internet_checksum", "verify_checksums"]


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """The 16-bit one's-complement checksum of ``data`` (RFC 1071); 0 means "verifies"
    when the data includes its checksum field."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\0"
    total = sum(struct.unpack(f"!{len(raw) // 2}H", raw))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def _pseudo(net: IPv4 | IPv6, proto: int, length: int) -> bytes:
    if isinstance(net, IPv4):
        src = bytes(int(part) for part in net.src.split("."))
        dst = bytes(int(part) for part in net.dst.split("."))
        return src + dst + struct.pack("!BBH", 0, proto, length)
    import ipaddress

    src6 = ipaddress.IPv6Address(net.src).packed
    dst6 = ipaddress.IPv6Address(net.dst).packed
    return src6 + dst6 + struct.pack("!IxxxB", length, proto)


def verify_checksums(packet: Packet) -> dict[str, bool | None]:
    """Check every checksum the packet carries.

    Returns:
        ``{"ip": ok, "tcp": ok, ...}`` for the IPv4 header and the TCP/UDP/ICMP/ICMPv6
        checksum. ``None`` means it cannot be checked: the capture cut the bytes it covers, or
        a UDP-over-IPv4 checksum of 0 (not computed, RFC 768). Outgoing packets captured on
        the sending host often fail because the NIC fills the checksum in later (offload).

    Raises:
        DecodeError: the packet's headers are malformed.
    """
    data = packet.data
    results: dict[str, bool | None] = {}
    net: IPv4 | IPv6 | None = None
    for layer in packet.layers:
        if isinstance(layer, IPv4):
            net = layer
            header = data[layer.offset : layer.offset + layer.header_length]
            results["ip"] = internet_checksum(header) == 0
        elif isinstance(layer, IPv6):
            net = layer
        elif isinstance(layer, TCP | UDP | ICMP | ICMPV6) and net is not None:
            name = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "icmp6"}[type(layer)]
            if isinstance(net, IPv4):
                end = net.offset + net.total_length
            else:
                end = net.offset + 40 + net.payload_length
            if isinstance(layer, UDP) and layer.length >= 8:
                end = min(end, layer.offset + layer.length)
            if end > len(data) or (isinstance(net, IPv4) and net.is_fragment):
                results[name] = None
                continue
            if isinstance(layer, UDP) and layer.checksum == 0 and isinstance(net, IPv4):
                results[name] = None
                continue
            segment = data[layer.offset : end]
            if isinstance(layer, ICMP):
                results[name] = internet_checksum(segment) == 0
            else:
                proto = {TCP: 6, UDP: 17, ICMPV6: 58}[type(layer)]
                pseudo = _pseudo(net, proto, len(segment))
                results[name] = internet_checksum(pseudo + segment) == 0
            break
    return results
