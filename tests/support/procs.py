"""Start peer programs for a test and always stop them, by PID, even on failure."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def running(argv: Sequence[str], **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """``with running([...]) as proc:`` — terminated (then killed) and reaped on exit."""
    proc: subprocess.Popen[bytes] = subprocess.Popen(list(argv), **kw)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
