"""What ``connect`` and ``listen`` share around their session: the usage line and how errors
become one line (and a JSON event) before the CLI maps them to an exit status."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from .exit_codes import ExitStatus, status_for

if TYPE_CHECKING:
    from ..netcat.report import Reporter

__all__ = ["run_reporting", "usage"]


def usage(prog: str, message: str) -> int:
    """Print ``prog: message`` and where to read more, as argparse's usage errors are printed
    (cli/main.py), and return the usage exit status (2)."""
    print(f"{prog}: {message}\nsee '{prog} --help'", file=sys.stderr)
    return ExitStatus.USAGE


def run_reporting(prog: str, reporter: Reporter, body: Callable[[], int]) -> int:
    """Run ``body``. A plain ``ValueError`` (a bad option value) is a usage error; every other
    error is reported through ``reporter`` (one line, or a JSON event) and re-raised for the
    CLI's exit-status mapping."""
    from .._errors import AddressError

    try:
        return body()
    except ValueError as exc:
        if isinstance(exc, OSError):
            raise
        if isinstance(exc, AddressError):
            reporter.error(str(exc), int(status_for(exc)))
            raise
        return usage(prog, str(exc))
    except BrokenPipeError:
        raise  # stdout's reader went away: exit 141 quietly, no error event
    except Exception as exc:
        reporter.error(" ".join(str(exc).split()), int(status_for(exc)))
        raise
