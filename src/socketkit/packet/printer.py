"""tcpdump's printing options on top of :func:`.summary.summary` (what ``socketkit sniff``
prints): relative TCP sequence numbers (the default; ``-S`` absolute), the time stamp formats
(``-t`` .. ``-ttttt``), the link-level header (``-e``), quick output (``-q``), the ASCII dump
(``-A``) and the interface name tcpdump puts on Linux cooked v2 (``-i any``) lines.

:func:`.summary.summary` stays stateless and prints ``tcpdump -nn -S`` lines; a
:class:`LinePrinter` keeps the state tcpdump keeps between packets (each TCP conversation's
first sequence numbers, the previous time stamp) and rewrites only the parts the options
change, so a packet these options do not touch costs one dictionary lookup more.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import datetime

from .addresses import mac_text
from .checksum import internet_checksum
from .dnstext import dns_text
from .hexdump import network_offset
from .summary import DIGITS3, summary, time_text
from .tcpoptions import tcp_options_text

__all__ = ["MAX_CONVERSATIONS", "LinePrinter", "TcpSequences", "ascii_text"]

#: TCP conversations remembered for relative sequence numbers (two entries each); past it
#: the table starts afresh (tcpdump's grows without bound).
MAX_CONVERSATIONS = 1 << 19
_M32 = 0xFFFFFFFF
_ETHERNET, _SLL2 = 1, 276
_TCP_HEAD = struct.Struct("!HHIIBB").unpack_from
_ETHERTYPE_NAMES = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP"}
_NET_WORDS = ("IP ", "IP6 ")
_VLAN_NAMES = {0x8100: "802.1Q", 0x88A8: "802.1Q-QinQ"}
# tcpdump's ascii_print: graphic characters, space, tab and newline as they are, others "."
_ASCII = bytes(b if 0x20 <= b < 0x7F or b in (9, 10) else 0x2E for b in range(256))


class TcpSequences:
    """tcpdump's relative sequence numbers (print-tcp.c): the first segment with ACK set seen
    in a conversation (or any SYN-ACK) records both sides' initial numbers and is printed
    absolute; later segments of either direction print ``seq``/``ack`` (and SACK edges)
    relative to them. Segments without ACK (a SYN) are left absolute."""

    __slots__ = ("_bases",)

    def __init__(self) -> None:
        self._bases: dict[bytes, tuple[int, int]] = {}

    def get(self, key: bytes) -> tuple[int, int] | None:
        """``(seq base, ack base)`` of one direction (``key``: source and destination
        address, source and destination port, as on the wire), or None."""
        return self._bases.get(key)

    def start(self, key: bytes, seq: int, ack: int) -> None:
        """Record a conversation from a segment with ACK set (both directions)."""
        bases = self._bases
        if len(bases) >= 2 * MAX_CONVERSATIONS:
            bases.clear()
        ack_base = (ack - 1) & _M32
        bases[key] = (seq, ack_base)
        half = (len(key) - 4) // 2
        reverse = key[half : 2 * half] + key[:half] + key[-2:] + key[-4:-2]
        bases[reverse] = (ack_base, seq)

    def rewrite(self, line: str, data: bytes, linktype: int) -> str:
        """``line`` (a summary of ``data``) with its TCP numbers made relative."""
        net = network_offset(data, linktype)
        size = len(data)
        if size < net + 20:
            return line
        version = data[net] >> 4
        if version == 4:
            ihl = (data[net] & 15) * 4
            if data[net + 9] != 6 or (data[net + 6] & 0x1F) | data[net + 7] or ihl < 20:
                return line
            at = net + ihl
            addresses = data[net + 12 : net + 20]
            ip_payload = ((data[net + 2] << 8) | data[net + 3]) - ihl
        elif version == 6 and size >= net + 40 and data[net + 6] == 6:
            at = net + 40
            addresses = data[net + 8 : net + 40]
            ip_payload = (data[net + 4] << 8) | data[net + 5]
        else:
            return line
        if size < at + 20:
            return line
        _sport, _dport, seq, ack, off, flags = _TCP_HEAD(data, at)
        if not flags & 0x10:
            return line
        key = addresses + data[at : at + 4]
        found = self._bases.get(key)
        if found is None or flags & 0x02:
            self.start(key, seq, ack)
            rseq, rack, sack_base = seq, ack, (ack - 1) & _M32
        else:
            rseq, rack = (seq - found[0]) & _M32, (ack - found[1]) & _M32
            sack_base = found[1]
            plen = ip_payload - (off >> 4) * 4
            if plen > 0:
                line = line.replace(
                    f", seq {seq}:{(seq + plen) & _M32},",
                    f", seq {rseq}:{(rseq + plen) & _M32},",
                    1,
                )
            elif flags & 0x07:
                line = line.replace(f", seq {seq},", f", seq {rseq},", 1)
            line = line.replace(f", ack {ack},", f", ack {rack},", 1)
        doff = (off >> 4) * 4
        if doff > 20 and size >= at + doff and 5 in _option_kinds(data, at + 20, at + doff):
            raw = data[at + 20 : at + doff]
            line = line.replace(tcp_options_text(raw), tcp_options_text(raw, sack_base), 1)
        return line


def _option_kinds(data: bytes, start: int, end: int) -> set[int]:
    kinds = set()
    index = start
    while index < end:  # bounded: every step advances at least one byte
        kind = data[index]
        kinds.add(kind)
        if kind == 0:
            break
        if kind == 1 or index + 1 >= end:
            index += 1
            continue
        index += max(data[index + 1], 2)
    return kinds


def ascii_text(data: bytes) -> str:
    """tcpdump ``-A``: the bytes as text, graphic characters, space, tab and newline kept,
    others as ``.``; a CR is left out before a newline or among the last two bytes
    (``ascii_print`` in tcpdump's util-print.c)."""
    out = data.translate(_ASCII).decode("ascii")
    if b"\r" not in data:
        return out
    chars = list(out)
    for index, byte in enumerate(data):
        if byte == 13 and (index + 2 >= len(data) or data[index + 1] == 10):
            chars[index] = ""
    return "".join(chars)


def _hms_delta(delta_ns: int) -> str:
    sign = " "
    if delta_ns < 0:
        sign, delta_ns = "-", -delta_ns
    sec, ns = divmod(delta_ns, 1_000_000_000)
    usec = ns // 1000
    hours, rest = divmod(sec, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}.{usec:06d}"


class LinePrinter:
    """The text ``tcpdump -nn`` prints for each packet, with tcpdump's printing options.

    Args:
        relative: relative TCP sequence numbers (tcpdump's default; ``-S`` turns it off).
        stamps: the number of ``-t`` given: 0 local time of day, 1 none, 2 Unix seconds,
            3 delta since the previous packet, 4 date and time, 5 delta since the first.
        link: ``-e``, the link-level header (Ethernet and Linux cooked v2).
        quick: ``-q``, TCP as ``tcp LENGTH``.
        ascii: ``-A``, the packet from its network header as text after the line.
        verbose: the number of ``-v``: 1 adds the IP header fields and the checksums of
            TCP (and UDP, ICMPv6 over IPv6) as tcpdump prints them; 2 also checks UDP over
            IPv4 and always prints the TCP sequence number. IPv4 options are not printed.
        interface_name: ``ifindex -> name`` for Linux cooked v2 lines, as tcpdump looks it
            up on the machine that prints (this package does no I/O: the caller gives it;
            default ``?``, what tcpdump prints for an index it cannot name). Cached.
    """

    def __init__(
        self,
        *,
        relative: bool = True,
        stamps: int = 0,
        link: bool = False,
        quick: bool = False,
        ascii: bool = False,
        verbose: int = 0,
        interface_name: Callable[[int], str] | None = None,
    ) -> None:
        self.sequences = TcpSequences() if relative else None
        self.stamps = stamps
        self.link = link
        self.quick = quick
        self.ascii = ascii
        self.verbose = verbose
        self._first: int | None = None
        self._previous: int | None = None
        self._names: dict[int, str] = {}
        self._lookup = interface_name

    def stamp(self, ts_ns: int) -> str:
        """The time stamp and its space (empty with ``-t``)."""
        mode = self.stamps
        if mode == 0:
            return time_text(ts_ns) + " "
        if mode == 1:
            return ""
        if mode == 2:
            sec, ns = divmod(ts_ns, 1_000_000_000)
            usec = ns // 1000
            return f"{sec}.{DIGITS3[usec // 1000]}{DIGITS3[usec % 1000]} "
        if mode == 4:
            day = datetime.fromtimestamp(ts_ns // 1_000_000_000).strftime("%Y-%m-%d")
            return f"{day} {time_text(ts_ns)} "
        if self._first is None:
            self._first = ts_ns
        since = self._previous if mode == 3 and self._previous is not None else self._first
        self._previous = ts_ns
        return _hms_delta(ts_ns - since) + " "

    def interface(self, ifindex: int) -> str:
        """The interface name for a cooked v2 line (``?`` unknown)."""
        name = self._names.get(ifindex)
        if name is None:
            name = "?" if self._lookup is None else self._lookup(ifindex)
            self._names[ifindex] = name
        return name

    def line(self, data: bytes, linktype: int, ts_ns: int, orig_len: int) -> str:
        """The text for one packet, without the final newline."""
        text = summary(data, linktype)
        if self.sequences is not None:
            text = self.sequences.rewrite(text, data, linktype)
        cooked = linktype == _SLL2 and len(data) >= 20
        if cooked:  # the line starts with the direction: the rest is as for any link
            direction, _, text = text.partition(" ")
        if self.quick:
            text = _quick(text)
        if self.verbose:
            text = _verbose(text, data, linktype, self.verbose, self.sequences)
        if cooked:
            text = self._cooked(direction, text, data, orig_len)
        elif self.link and linktype == _ETHERNET and len(data) >= 14:
            text = _ethernet_header(data, orig_len, text)
        text = self.stamp(ts_ns) + text
        if self.ascii:
            text = f"{text}\n{ascii_text(data[network_offset(data, linktype) :])}"
        return text

    def _cooked(self, direction: str, rest: str, data: bytes, orig_len: int) -> str:
        name = self.interface(int.from_bytes(data[4:8], "big"))
        head = f"{name:<5} {direction:<3} "
        if not self.link:
            return head + rest
        ethertype = (data[0] << 8) | data[1]
        addr = mac_text(data[12 : 12 + min(data[11], 8)])
        kind = _ETHERTYPE_NAMES.get(ethertype, "Unknown")
        return (
            f"{head}ifindex {int.from_bytes(data[4:8], 'big')} {addr} ethertype {kind} "
            f"(0x{ethertype:04x}), length {orig_len}: {_without_net_word(rest)}"
        )


def _ethernet_header(data: bytes, orig_len: int, text: str) -> str:
    """tcpdump ``-e`` on Ethernet: the addresses, each EtherType with its name, the length;
    a VLAN tag's ``vlan V, p P, `` is followed by the inner EtherType."""
    ethertype = (data[12] << 8) | data[13]
    head = f"{mac_text(data[6:12])} > {mac_text(data[0:6])}, "
    offset = 14
    while ethertype in _VLAN_NAMES and len(data) >= offset + 4:
        tci = (data[offset] << 8) | data[offset + 1]
        head += f"ethertype {_VLAN_NAMES[ethertype]} (0x{ethertype:04x}), "
        if offset == 14:
            head += f"length {orig_len}: "
        dei = ", DEI" if tci & 0x1000 else ""
        head += f"vlan {tci & 0xFFF}, p {tci >> 13}{dei}, "
        ethertype = (data[offset + 2] << 8) | data[offset + 3]
        offset += 4
    kind = _ETHERTYPE_NAMES.get(ethertype)
    if kind is None:
        return text if offset == 14 else head + text
    head += f"ethertype {kind} (0x{ethertype:04x}), "
    if offset == 14:
        head += f"length {orig_len}: "
    if kind == "ARP" and text.startswith("ARP, "):
        return head + text[5:]
    return head + _without_net_word(text)


def _without_net_word(text: str) -> str:
    for word in _NET_WORDS:
        if text.startswith(word):
            return text[len(word) :]
    return text


def _quick(text: str) -> str:
    """tcpdump ``-q``: a TCP segment's flags, numbers and options become ``tcp LENGTH``."""
    at = text.find(": Flags [")
    if at < 0:
        return text
    length = text.rpartition(", length ")[2]
    if not length.isdigit():
        return text
    return f"{text[: at + 2]}tcp {length}"


# --- -v ---------------------------------------------------------------------------------------

_PROTO_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 44: "Fragment",
                47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6", 103: "PIM", 112: "VRRP",
                132: "SCTP"}  # fmt: skip
_ECN = ("", ",ECT(1)", ",ECT(0)", ",CE")


def _verbose(
    text: str, data: bytes, linktype: int, level: int, sequences: TcpSequences | None
) -> str:
    """tcpdump ``-v``: the IP header fields after ``IP``/``IP6``, the transport checksums."""
    net = network_offset(data, linktype)
    size = len(data)
    if size < net + 20:
        return text
    version = data[net] >> 4
    if version == 4 and text.startswith("IP "):
        ihl = (data[net] & 15) * 4
        tos, total, ident, frag, ttl, proto = struct.unpack_from("!xBHHHBB", data, net)
        flags = ", ".join(
            name for bit, name in ((0x2000, "+"), (0x4000, "DF"), (0x8000, "rsvd")) if frag & bit
        )
        head = (
            f"IP (tos 0x{tos:x}{_ECN[tos & 3]}, ttl {ttl}, id {ident}, offset "
            f"{(frag & 0x1FFF) * 8}, flags [{flags or 'none'}], proto "
            f"{_PROTO_NAMES.get(proto, 'unknown')} ({proto}), length {total}"
            f"{_ip_checksum_note(data, net, ihl)})\n    "
        )
        rest = text[3:]
        if frag & 0x1FFF or ihl < 20:
            return head + rest
        start, end = net + ihl, min(size, net + total)
        pseudo = data[net + 12 : net + 20] + struct.pack("!BBH", 0, proto, total - ihl)
        full = size >= net + total
    elif version == 6 and size >= net + 40 and text.startswith("IP6 "):
        flow, plen, proto, hlim = struct.unpack_from("!IHBB", data, net)
        parts = ["IP6 ("]
        if flow & 0x0FF00000:
            parts.append(f"class 0x{(flow >> 20) & 0xFF:02x}, ")
        if flow & 0xFFFFF:
            parts.append(f"flowlabel 0x{flow & 0xFFFFF:05x}, ")
        parts.append(
            f"hlim {hlim}, next-header {_PROTO_NAMES.get(proto, 'unknown')} ({proto}) "
            f"payload length: {plen}) "
        )
        head = "".join(parts)
        rest = text[4:]
        start, end = net + 40, min(size, net + 40 + plen)
        pseudo = data[net + 8 : net + 40] + struct.pack("!IxxxB", plen, proto)
        full = size >= net + 40 + plen
    else:
        return text
    if proto == 44 and size >= start + 8 and ": frag (" in rest:  # -v adds the ident
        rest = rest.replace(": frag (", f": frag (0x{data[start + 4 : start + 8].hex()}:", 1)
    if proto == 17 and end - start >= 8 and _is_dns(data, start):
        ulen = (data[start + 4] << 8) | data[start + 5]
        message = data[start + 8 : min(end, start + ulen)]
        rest = rest.replace(dns_text(message, ulen - 8), dns_text(message, ulen - 8, level), 1)
    if proto == 6:
        rest = _tcp_verbose(rest, data, start, end, pseudo, full, level, sequences)
    elif proto == 17 and (version == 6 or level > 1) and full and end - start >= 8:
        rest = _udp_verbose(rest, data, start, end, pseudo)
    elif proto == 58 and version == 6 and full and end - start >= 4:
        rest = _icmp6_verbose(rest, data, start, end, pseudo)
    return head + rest


def _is_dns(data: bytes, udp: int) -> bool:
    return 53 in ((data[udp] << 8) | data[udp + 1], (data[udp + 2] << 8) | data[udp + 3])


def _ip_checksum_note(data: bytes, net: int, ihl: int) -> str:
    """tcpdump's ``, bad cksum F (->G)!`` for an IPv4 header whose checksum is wrong."""
    if ihl < 20 or len(data) < net + ihl or internet_checksum(data[net : net + ihl]) == 0:
        return ""
    field = (data[net + 10] << 8) | data[net + 11]
    good = _correct_checksum(data, net, net + ihl, net + 10, b"")
    return f", bad cksum {field:x} (->{good:x})!"


def _correct_checksum(data: bytes, start: int, end: int, at: int, pseudo: bytes) -> int:
    segment = bytearray(data[start:end])
    segment[at - start : at - start + 2] = b"\0\0"
    return internet_checksum(pseudo + bytes(segment))


def _tcp_verbose(  # noqa: PLR0917 - internal
    rest: str,
    data: bytes,
    start: int,
    end: int,
    pseudo: bytes,
    full: bool,
    level: int,
    sequences: TcpSequences | None,
) -> str:
    if end < start + 20:
        return rest
    at = rest.find(": Flags [")
    close = rest.find("]", at)
    if at < 0 or close < 0:
        return rest
    field = (data[start + 16] << 8) | data[start + 17]
    text = f", cksum 0x{field:04x}"
    if full:
        good = _correct_checksum(data, start, end, start + 16, pseudo)
        text += " (correct)" if good == field else f" (incorrect -> 0x{good:04x})"
    rest = rest[: close + 1] + text + rest[close + 1 :]
    if level > 1 and ", seq " not in rest:
        seq = int.from_bytes(data[start + 4 : start + 8], "big")
        if sequences is not None and data[start + 13] & 0x10:
            net_key = pseudo[:8] if len(pseudo) == 12 else pseudo[:32]
            bases = sequences.get(net_key + data[start : start + 4])
            if bases is not None:
                seq = (seq - bases[0]) & _M32
        after = rest.find(", ", rest.find(", cksum ") + 2)
        rest = f"{rest[:after]}, seq {seq}{rest[after:]}"
    return rest


def _udp_verbose(rest: str, data: bytes, start: int, end: int, pseudo: bytes) -> str:
    at = rest.find(": UDP, ")
    if at < 0:
        return rest
    field = (data[start + 6] << 8) | data[start + 7]
    if field == 0 and len(pseudo) == 12:
        return rest
    good = _correct_checksum(data, start, end, start + 6, pseudo) or 0xFFFF
    note = "[udp sum ok]" if good == field else f"[bad udp cksum 0x{field:04x} -> 0x{good:04x}!]"
    return f"{rest[: at + 2]}{note} {rest[at + 2 :]}"


def _icmp6_verbose(rest: str, data: bytes, start: int, end: int, pseudo: bytes) -> str:
    at = rest.find(": ICMP6, ")
    if at < 0:
        return rest
    field = (data[start + 2] << 8) | data[start + 3]
    good = _correct_checksum(data, start, end, start + 2, pseudo)
    note = (
        "[icmp6 sum ok]" if good == field else f"[bad icmp6 cksum 0x{field:04x} -> 0x{good:04x}!]"
    )
    body = rest[at + 2 :]
    if data[start] in (128, 129):  # echo: tcpdump -v leaves the length out
        body = body.rpartition(", length ")[0]
    return f"{rest[: at + 2]}{note} {body}"
