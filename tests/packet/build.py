"""Packet builders for the tests: plain struct packing, with correct checksums."""

from __future__ import annotations

import ipaddress
import struct

from socketkit.packet import internet_checksum

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def eth(payload: bytes, ethertype: int = 0x0800, *, vlans: tuple[int, ...] = ()) -> bytes:
    """Ethernet II; ``vlans`` adds 802.1Q tags (outer first, 0x88a8 for all but the last)."""
    out = MAC_B + MAC_A
    tpids = [0x88A8] * (len(vlans) - 1) + [0x8100] if vlans else []
    for tpid, vid in zip(tpids, vlans, strict=True):
        out += struct.pack("!HH", tpid, (3 << 13) | vid)
    return out + struct.pack("!H", ethertype) + payload


def ip4(
    payload: bytes,
    proto: int,
    src: str = "198.18.0.1",
    dst: str = "198.18.0.2",
    *,
    ident: int = 0x1234,
    frag: int = 0x4000,
    ttl: int = 64,
    options: bytes = b"",
    total: int | None = None,
) -> bytes:
    ihl = 5 + len(options) // 4
    length = ihl * 4 + len(payload) if total is None else total
    header = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            length,
            ident,
            frag,
            ttl,
            proto,
            0,
            ipaddress.IPv4Address(src).packed,
            ipaddress.IPv4Address(dst).packed,
        )
        + options
    )
    csum = internet_checksum(header)
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def ip6(
    payload: bytes, nxt: int, src: str = "fd00::1", dst: str = "fd00::2", *, hlim: int = 64
) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(payload), nxt, hlim)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + payload
    )


def _pseudo4(src: str, dst: str, proto: int, length: int) -> bytes:
    return (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!BBH", 0, proto, length)
    )


def tcp(
    sport: int = 40000,
    dport: int = 45000,
    seq: int = 1000,
    ack: int = 0,
    flags: int = 0x02,
    *,
    win: int = 65535,
    options: bytes = b"",
    payload: bytes = b"",
    pseudo: bytes | None = None,
    urp: int = 0,
) -> bytes:
    doff = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, win, 0, urp)
    segment = header + options + payload
    if pseudo is not None:
        csum = internet_checksum(pseudo + segment)
        segment = segment[:16] + struct.pack("!H", csum) + segment[18:]
    return segment


def tcp4(src: str = "198.18.0.1", dst: str = "198.18.0.2", **kw: object) -> bytes:
    """IPv4 + TCP with correct checksums."""
    options = kw.get("options", b"")
    payload = kw.get("payload", b"")
    assert isinstance(options, bytes) and isinstance(payload, bytes)
    length = 20 + len(options) + len(payload)
    segment = tcp(pseudo=_pseudo4(src, dst, 6, length), **kw)  # type: ignore[arg-type]
    return ip4(segment, 6, src, dst)


def udp(sport: int, dport: int, payload: bytes, pseudo: bytes | None = None) -> bytes:
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if pseudo is not None:
        csum = internet_checksum(pseudo + datagram) or 0xFFFF
        datagram = datagram[:6] + struct.pack("!H", csum) + datagram[8:]
    return datagram


def udp4(sport: int, dport: int, payload: bytes, src: str = "198.18.0.1",
         dst: str = "198.18.0.2") -> bytes:  # fmt: skip
    return ip4(udp(sport, dport, payload, _pseudo4(src, dst, 17, 8 + len(payload))), 17, src, dst)


def udp6(sport: int, dport: int, payload: bytes, src: str = "fd00::1",
         dst: str = "fd00::2") -> bytes:  # fmt: skip
    length = 8 + len(payload)
    pseudo = (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!IxxxB", length, 17)
    )
    return ip6(udp(sport, dport, payload, pseudo), 17, src, dst)


def icmp_echo(ident: int, seq: int, payload: bytes = b"x" * 56, *, reply: bool = False) -> bytes:
    body = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, seq) + payload
    csum = internet_checksum(body)
    return body[:2] + struct.pack("!H", csum) + body[4:]


def icmp6_echo(ident: int, seq: int, payload: bytes = b"x" * 56, *, reply: bool = False,
               src: str = "fd00::1", dst: str = "fd00::2") -> bytes:  # fmt: skip
    body = struct.pack("!BBHHH", 129 if reply else 128, 0, 0, ident, seq) + payload
    pseudo = (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!IxxxB", len(body), 58)
    )
    csum = internet_checksum(pseudo + body)
    return ip6(body[:2] + struct.pack("!H", csum) + body[4:], 58, src, dst)


def arp(op: int, sha: bytes, spa: str, tha: bytes, tpa: str) -> bytes:
    return (
        struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
        + sha
        + ipaddress.IPv4Address(spa).packed
        + tha
        + ipaddress.IPv4Address(tpa).packed
    )


def sll(payload: bytes, protocol: int = 0x0800, pkttype: int = 0) -> bytes:
    return struct.pack("!HHH8sH", pkttype, 1, 6, MAC_A + b"\0\0", protocol) + payload


def sll2(payload: bytes, protocol: int = 0x0800, pkttype: int = 4, ifindex: int = 3) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, ifindex, 1, pkttype, 6, MAC_A + b"\0\0") + payload


TS_OPTION = b"\x01\x01\x08\x0a" + struct.pack("!II", 1111, 2222)
SYN_OPTIONS = (
    struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02" + b"\x08\x0a" + struct.pack("!II", 7, 0)
    + b"\x01" + b"\x03\x03\x07"
)  # fmt: skip  # mss 1460,sackOK,TS val 7 ecr 0,nop,wscale 7 (what Linux sends)
