"""Range-checked argparse types for sniff, ping and traceroute: a bad value is a usage error
(one line, exit 2) before anything is opened, sent or printed, as iputils and tcpdump refuse
them (``ping: invalid argument: '300': out of range: 0 <= value <= 255``)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from .exit_codes import ExitStatus


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=``: an integer in ``low..high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"{low} <= value <= {high}" if high is not None else f"value >= {low}"
            raise argparse.ArgumentTypeError(f"{text!r}: out of range: {bound}")
        return value

    parse.__name__ = "int"
    return parse


def seconds(text: str) -> float:
    """An argparse ``type=``: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: out of range: 0 <= seconds")
    return value


def usage_error(command: str, message: str) -> int:
    """Report a check that spans options as argparse reports one option: one line, then where
    to read more; returns the usage exit status."""
    print(
        f"socketkit {command}: {message}\nsee 'socketkit {command} --help'",
        file=sys.stderr,
        flush=True,
    )
    return ExitStatus.USAGE
