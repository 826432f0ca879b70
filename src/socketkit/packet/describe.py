"""The general summary path: a decoded :class:`~.decode.Packet` as one ``tcpdump -n -S`` line.

:func:`.summary.summary` uses it for everything the fast path does not handle (ARP, VLAN,
options, fragments, extension headers, cut or malformed packets); imported on first use so
printing a capture of common packets never loads the object decoder.
"""

from __future__ import annotations

from .addresses import ipv4_text
from .decoder import Packet
from .dnstext import dns_text
from .fastpath import SLL_DIRECTION, TCP_FLAGS
from .layers import (
    ARP,
    ICMP,
    ICMPV6,
    TCP,
    UDP,
    Dot1Q,
    Ethernet,
    IPv4,
    IPv6,
    LinuxSLL,
    LinuxSLL2,
)
from .summary import time_text
from .tcpoptions import tcp_options_text

__all__ = ["DNS_PORT", "format_packet"]

#: UDP port whose payload is printed as DNS (the fast paths leave these packets to this one)
DNS_PORT = 53

_ICMP_NAMES = {3: "unreachable", 4: "source quench", 5: "redirect",
               11: "time exceeded in-transit", 12: "parameter problem",
               13: "time stamp request", 14: "time stamp reply"}  # fmt: skip
_ICMP6_NAMES = {1: "destination unreachable", 2: "packet too big",
                3: "time exceeded in-transit", 4: "parameter problem",
                133: "router solicitation", 134: "router advertisement",
                135: "neighbor solicitation", 136: "neighbor advertisement",
                143: "multicast listener report v2"}  # fmt: skip


def _tcp_text(tcp: TCP) -> str:
    flags = tcp.flags & 0xFF
    plen = tcp.payload_length
    parts = [f"Flags [{TCP_FLAGS[flags]}]"]
    if plen > 0:
        parts.append(f", seq {tcp.seq}:{(tcp.seq + plen) & 0xFFFFFFFF}")
    elif flags & 0x07:
        parts.append(f", seq {tcp.seq}")
    if flags & 0x10:
        parts.append(f", ack {tcp.ack}")
    parts.append(f", win {tcp.window}")
    if flags & 0x20:
        parts.append(f", urg {tcp.urgent}")
    if tcp.options_raw:
        parts.append(f", options [{tcp_options_text(tcp.options_raw)}]")
    parts.append(f", length {plen}")
    return "".join(parts)


def format_packet(packet: Packet, ts_ns: int | None = None) -> str:
    """The summary line of a decoded packet (the general path of :func:`summary`)."""
    layers, truncated, error = packet.partial()
    data = packet.data
    out: list[str] = [] if ts_ns is None else [time_text(ts_ns), " "]
    net: IPv4 | IPv6 | None = None
    tail = ""
    link_end = 0
    ethertype: int | None = None
    for layer in layers:
        if isinstance(layer, Ethernet | Dot1Q):
            ethertype = layer.type
            link_end = layer.offset + layer.header_length
            # a VLAN tag is printed with -e only, as tcpdump (printer.LinePrinter does it)
        elif isinstance(layer, LinuxSLL | LinuxSLL2):
            ethertype = layer.protocol
            link_end = layer.header_length
            out.append(SLL_DIRECTION.get(layer.pkttype, f"pkttype {layer.pkttype}") + " ")
        elif isinstance(layer, ARP):
            size = len(data) - layer.offset
            if layer.op == 1:
                tail = f"ARP, Request who-has {layer.tpa} tell {layer.spa}, length {size}"
            elif layer.op == 2:
                tail = f"ARP, Reply {layer.spa} is-at {layer.sha}, length {size}"
            else:
                tail = f"ARP, op {layer.op}, length {size}"
        elif isinstance(layer, IPv4 | IPv6):
            net = layer
        elif isinstance(layer, TCP | UDP) and net is not None:
            word = "IP" if isinstance(net, IPv4) else "IP6"
            out.append(f"{word} {net.src}.{layer.sport} > {net.dst}.{layer.dport}: ")
            if isinstance(layer, TCP):
                tail = _tcp_text(layer)
            else:
                ulen = layer.length
                tail = f"UDP, length {ulen - 8}" if ulen >= 8 else f"UDP, bad length {ulen}"
                if ulen >= 8 and DNS_PORT in (layer.sport, layer.dport):
                    body = layer.offset + 8
                    tail = dns_text(data[body : layer.offset + ulen], ulen - 8)
            net = None
        elif isinstance(layer, ICMP | ICMPV6) and net is not None:
            word = "IP" if isinstance(net, IPv4) else "IP6"
            out.append(f"{word} {net.src} > {net.dst}: ")
            tail = _icmp_text(layer, net, data)
            net = None
    if net is not None:  # IP without a decoded upper layer
        word = "IP" if isinstance(net, IPv4) else "IP6"
        out.append(f"{word} {net.src} > {net.dst}: ")
        if truncated is None and error is None:
            tail = _ip_other_text(net)
    elif not tail and truncated is None and error is None:
        if ethertype is not None and ethertype < 0x600:
            tail = f"802.3, length {len(data) - link_end}"
        elif ethertype is not None:
            tail = f"ethertype 0x{ethertype:04x}, length {len(data) - link_end}"
        else:
            tail = f"length {len(data)}"
    out.append(tail)
    space = " " if tail else ""
    if truncated is not None:
        out.append(f"{space}[|{truncated}]")
    elif error is not None:
        out.append(f"{space}[|{error.layer}: {error.reason}]")
    return "".join(out)


def _ip_payload_length(net: IPv4 | IPv6) -> int:
    if isinstance(net, IPv4):
        return net.total_length - net.header_length
    return net.payload_length + 40 - net.header_length


def _ip_other_text(net: IPv4 | IPv6) -> str:
    """As tcpdump 4.99 prints an IP payload it does not decode: a later IPv4 fragment is
    ``ip-proto-N``, an unknown protocol `` ip-proto-N LENGTH`` (its leading space too), an
    IPv6 fragment ``frag (OFFSET|LENGTH)``."""
    length = _ip_payload_length(net)
    if isinstance(net, IPv4) and net.frag_offset:
        return f"ip-proto-{net.proto}"
    if isinstance(net, IPv6) and net.is_fragment:
        frag = next(ext for ext in net.extensions if ext.kind == 44)
        return f"frag ({frag.frag_offset}|{net.payload_length + 40 - frag.offset - 8 + net.offset})"
    if isinstance(net, IPv6) and net.proto == 59:
        return f"no next header, length {length}"
    if isinstance(net, IPv4):
        return f" ip-proto-{net.proto} {length}"
    return f"ip-proto-{net.proto}, length {length}"


def _quoted_unreachable(icmp: ICMP, data: bytes) -> str | None:
    """tcpdump's text for an ICMP destination unreachable (print-icmp.c), from the quoted
    IPv4 header and the 8 bytes after it; None when they are not all captured."""
    at = icmp.offset + 8
    if len(data) < at + 20 or data[at] >> 4 != 4:
        return None
    ihl = (data[at] & 15) * 4
    proto = data[at + 9]
    dst = ipv4_text(bytes(data[at + 16 : at + 20]))
    code = icmp.code
    if code == 0:
        return f"net {dst} unreachable"
    if code == 1:
        return f"host {dst} unreachable"
    if code == 2:
        return f"{dst} protocol {proto} unreachable"
    if code == 3:
        if ihl < 20 or len(data) < at + ihl + 4:
            return None
        port = (data[at + ihl + 2] << 8) | data[at + ihl + 3]
        name = {6: "tcp", 17: "udp"}.get(proto)
        if name is None:
            return f"{dst} protocol {proto} port {port} unreachable"
        return f"{dst} {name} port {port} unreachable"
    if code == 4:
        mtu = icmp.seq  # RFC 1191: next-hop MTU in the low 16 bits of the rest of the header
        return (
            f"{dst} unreachable - need to frag (mtu {mtu})"
            if mtu
            else (f"{dst} unreachable - need to frag")
        )
    return None


def _icmp_text(icmp: ICMP | ICMPV6, net: IPv4 | IPv6, data: bytes) -> str:
    length = _ip_payload_length(net)
    if isinstance(icmp, ICMP):
        if icmp.type in (0, 8):
            kind = "request" if icmp.type == 8 else "reply"
            return f"ICMP echo {kind}, id {icmp.id}, seq {icmp.seq}, length {length}"
        if icmp.type == 3:
            text = _quoted_unreachable(icmp, data)
            if text is not None:
                return f"ICMP {text}, length {length}"
        if icmp.type == 11 and icmp.code in (0, 1):
            what = "time exceeded in-transit" if icmp.code == 0 else "ip reassembly time exceeded"
            return f"ICMP {what}, length {length}"
        name = _ICMP_NAMES.get(icmp.type, f"type {icmp.type}")
        return f"ICMP {name}, code {icmp.code}, length {length}"
    if icmp.type in (128, 129):
        kind = "request" if icmp.type == 128 else "reply"
        return f"ICMP6, echo {kind}, id {icmp.id}, seq {icmp.seq}, length {length}"
    name = _ICMP6_NAMES.get(icmp.type, f"type {icmp.type}")
    return f"ICMP6, {name}, code {icmp.code}, length {length}"
