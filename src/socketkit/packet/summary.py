"""One line per packet in the style of ``tcpdump -n -S`` (absolute sequence numbers).

Two paths produce the same text:
  * the fast path formats the common packets (Ethernet/SLL2/raw -> IPv4 without options or
    IPv6 -> TCP/UDP/ICMP echo) straight from one ``unpack_from`` of a struct compiled from the
    header tables (:func:`.fields.stack`), building no objects;
  * everything else (ARP, VLAN, options, fragments, extension headers, truncated or malformed
    packets) goes through :func:`.decode.decode` and :func:`format_packet`.
Tests check the two agree on every packet they both handle.

``summary`` never raises on packet content: a cut header ends the line with ``[|tcp]``, a
malformed one with ``[|ip: reason]``.
"""

from __future__ import annotations

from datetime import datetime

from .fastpath import FAST_PATHS, no_fast_path
from .linktype import LinkType

__all__ = ["DIGITS3", "HMS_CACHE", "hms_text", "summary", "time_text"]

# --- time ----------------------------------------------------------------------------------

#: seconds whose HH:MM:SS text is cached; a capture walks forward in time, so a small cache
#: hits almost always, and clearing it keeps memory bounded.
_MAX_SECONDS_CACHED = 4096
#: "000".."999": f"{usec:06d}" parses its format spec on every call (~250 ns); two lookups
#: in this table give the same six digits for ~40 ns.
DIGITS3 = tuple(f"{value:03d}" for value in range(1000))
HMS_CACHE: dict[int, str] = {}


def hms_text(sec: int) -> str:
    """``HH:MM:SS`` of a Unix time in local time (honours ``TZ``), cached."""
    if len(HMS_CACHE) >= _MAX_SECONDS_CACHED:
        HMS_CACHE.clear()
    try:
        text = datetime.fromtimestamp(sec).strftime("%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        text = f"[{sec}s]"
    HMS_CACHE[sec] = text
    return text


def time_text(ts_ns: int) -> str:
    """``HH:MM:SS.uuuuuu`` in local time, as tcpdump prints it (honours ``TZ``)."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    usec = ns // 1000
    return f"{HMS_CACHE.get(sec) or hms_text(sec)}.{DIGITS3[usec // 1000]}{DIGITS3[usec % 1000]}"


# --- the object path --------------------------------------------------------------------------


def summary(data: bytes | bytearray | memoryview, linktype: int, ts_ns: int | None = None) -> str:
    """One ``tcpdump -n -S`` style line for a captured packet.

    Args:
        data: the captured bytes (``Record.data``).
        linktype: their LINKTYPE.
        ts_ns: capture time (ns since the epoch); when given the line starts with local
            ``HH:MM:SS.uuuuuu`` as tcpdump's does.

    Returns:
        The line, without a newline. Never raises for packet content: cut headers end in
        ``[|layer]``, malformed ones in ``[|layer: reason]``; an unknown link type gives
        ``unknown link type N, length L``.
    """
    if type(data) is not bytes:
        data = bytes(data)
    head = "" if ts_ns is None else f"{time_text(ts_ns)} "
    line = FAST_PATHS.get(linktype, no_fast_path)(data, head)
    if line is not None:
        return line
    if linktype not in _DECODABLE:
        return f"{head}unknown link type {linktype}, length {len(data)}"
    from .decoder import Packet  # the general path, loaded on first use
    from .describe import format_packet

    return head + format_packet(Packet(data, linktype))


_DECODABLE = frozenset(int(value) for value in LinkType)
