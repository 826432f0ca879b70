"""Text forms of link and IP addresses, cached for the hot path.

The caches are bounded (:data:`MAX_CACHED` entries, then cleared) so a capture of a million
distinct addresses cannot grow memory without limit.
"""

from __future__ import annotations

import ipaddress

__all__ = ["MAX_CACHED", "ipv4_text", "ipv6_text", "mac_text"]

#: entries kept per cache before it is cleared; a capture rarely sees more distinct addresses
#: and the clear keeps memory bounded when it does.
MAX_CACHED = 65536

_V4: dict[bytes, str] = {}
_V6: dict[bytes, str] = {}
_MAC: dict[bytes, str] = {}


def ipv4_text(raw: bytes) -> str:
    """Dotted quad of 4 bytes (``b"\\x7f\\0\\0\\1"`` -> ``"127.0.0.1"``)."""
    text = _V4.get(raw)
    if text is None:
        if len(_V4) >= MAX_CACHED:
            _V4.clear()
        text = _V4[raw] = "%d.%d.%d.%d" % tuple(raw)  # noqa: UP031 - fastest for 4 ints
    return text


def ipv6_text(raw: bytes) -> str:
    """RFC 5952 text of 16 bytes (``::1``, ``fe80::1``), as tcpdump and tshark print it."""
    text = _V6.get(raw)
    if text is None:
        if len(_V6) >= MAX_CACHED:
            _V6.clear()
        text = _V6[raw] = ipaddress.IPv6Address(raw).compressed
    return text


def mac_text(raw: bytes) -> str:
    """Colon-separated lower-case hex (``00:11:22:aa:bb:cc``); any length."""
    text = _MAC.get(raw)
    if text is None:
        if len(_MAC) >= MAX_CACHED:
            _MAC.clear()
        text = _MAC[raw] = raw.hex(":")
    return text
