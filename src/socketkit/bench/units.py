"""iperf3's number syntax: ``50M`` rates are powers of 1000, ``128K`` sizes powers of 1024."""

from __future__ import annotations

from .._errors import AddressError

__all__ = ["format_bits", "format_bytes", "parse_rate", "parse_size"]

_SUFFIX = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def _parse(text: str, base: int, what: str) -> int:
    raw = text.strip()
    suffix = raw[-1:].lower() if raw[-1:].isalpha() else ""
    number = raw[: len(raw) - len(suffix)] if suffix else raw
    if suffix not in _SUFFIX:
        raise AddressError(f"bad {what} {text!r}: use a number with an optional K/M/G/T suffix")
    try:
        value = float(number)
    except ValueError:
        raise AddressError(f"bad {what} {text!r}") from None
    if value < 0:
        raise AddressError(f"bad {what} {text!r}: negative")
    return int(value * base ** _SUFFIX[suffix])


def parse_rate(text: str) -> int:
    """Bits per second: ``50M`` = 50,000,000 (iperf3 ``-b``)."""
    return _parse(text, 1000, "rate")


def parse_size(text: str) -> int:
    """Bytes: ``128K`` = 131,072 (iperf3 ``-l``, ``-n``, ``-w``)."""
    return _parse(text, 1024, "size")


def format_bits(bps: float) -> str:
    for unit, scale in (("Gbits/sec", 1e9), ("Mbits/sec", 1e6), ("Kbits/sec", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bits/sec"


def format_bytes(n: float) -> str:
    for unit, scale in (("GBytes", 1 << 30), ("MBytes", 1 << 20), ("KBytes", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} Bytes"
