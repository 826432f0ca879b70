"""Hex + ASCII dump in the layout of ``tcpdump -X``."""

from __future__ import annotations

__all__ = ["hexdump", "network_offset"]

_ETHERNET, _RAW, _LOOP, _SLL, _IPV4, _IPV6, _SLL2, _NULL = 1, 101, 108, 113, 228, 229, 276, 0
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
#: The link header length of the fixed-size link types (LINKTYPE -> bytes).
_FIXED = {_NULL: 4, _LOOP: 4, _SLL: 16, _SLL2: 20, _RAW: 0, _IPV4: 0, _IPV6: 0}

# tcpdump (ascii_print in util-print.c) shows only graphic characters; space becomes "."
_PRINTABLE = bytes(b if 0x20 < b < 0x7F else 0x2E for b in range(256))


def hexdump(data: bytes | bytearray | memoryview, *, offset: int = 0, ascii: bool = True) -> str:
    """Format ``data`` as tcpdump ``-X`` does: 16 bytes a line, hex in 2-byte groups, then
    the graphic ASCII characters (others, space included, as ``.``)::

        \\t0x0000:  4500 0054 1c46 4000 4001 2061 7f00 0001  E..T.F@.@..a....

    Args:
        data: the bytes to dump.
        offset: the number printed for the first line (e.g. where ``data`` starts in a packet).
        ascii: False for ``tcpdump -x``: the hex groups only, nothing after them.

    Returns:
        The lines joined with ``\\n`` (no trailing newline); ``""`` for empty data.
    """
    raw = bytes(data)
    lines = []
    for start in range(0, len(raw), 16):
        chunk = raw[start : start + 16]
        text = chunk.hex()
        groups = " ".join(text[i : i + 4] for i in range(0, len(text), 4))
        if not ascii:
            lines.append(f"\t0x{offset + start:04x}:  {groups}")
            continue
        lines.append(
            f"\t0x{offset + start:04x}:  {groups:<39}  {chunk.translate(_PRINTABLE).decode()}"
        )
    return "\n".join(lines)


def network_offset(data: bytes | bytearray | memoryview, linktype: int) -> int:
    """Where ``tcpdump -X`` starts its dump of a packet: after the link-layer header (``-XX``
    dumps from 0). Ethernet skips 14 bytes plus its VLAN tags; a frame cut inside its Ethernet
    header or a VLAN tag dumps nothing. As in tcpdump (``pretty_print_packet`` in print.c),
    a packet whose printer stops at a cut header before the link header length is counted
    dumps from 0: no IPv4 byte at all, or a cut ARP message. Unknown link types dump from 0.

    Args:
        data: the captured bytes.
        linktype: the LINKTYPE of ``data``.

    Returns:
        An offset in ``0..len(data)``.
    """
    size = len(data)
    if linktype == _ETHERNET:
        if size < 14:
            return size
        offset = 12
        ethertype = int.from_bytes(data[12:14], "big")
        while ethertype in _VLAN_TPIDS:
            offset += 4
            if size < offset + 2:
                return size
            ethertype = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
    elif linktype in _FIXED:
        offset = _FIXED[linktype]
        if size < offset:
            return 0
        if linktype == _SLL:
            ethertype = int.from_bytes(data[14:16], "big")
        elif linktype == _SLL2:
            ethertype = int.from_bytes(data[0:2], "big")
        elif linktype in (_NULL, _LOOP):
            family = data[0] | data[3]  # AF_INET is 2 in either byte order
            ethertype = 0x0800 if family == 2 and not data[1] | data[2] else 0
        else:
            return 0
    else:
        return 0
    rest = size - offset
    if ethertype == 0x0800 and rest == 0:
        return 0
    if ethertype == 0x0806 and (rest < 8 or rest < 8 + 2 * (data[offset + 4] + data[offset + 5])):
        return 0
    return offset
