"""Output files of the commands: checked before the work starts, errors said in one line.

A command that writes a file (``methods --write``, ``sniff -w``, ``bench --plot``, …) calls
:func:`check_writable` before it does its job, so a typo in a path costs nothing, and reports a
failed write with :func:`cannot_write`. Both raise a plain :class:`OSError` whose text is the
whole message, which the CLI prints on one line with exit status 9 (IO).
"""

from __future__ import annotations

import os

__all__ = ["cannot_write", "check_writable"]


def cannot_write(path: str, exc: OSError, what: str = "") -> OSError:
    """``cannot write [WHAT ]PATH: reason`` for an error met opening or writing ``path``."""
    reason = (exc.strerror or str(exc)).lower()
    if exc.filename not in (None, path):  # the reason is about another path (its directory)
        reason = f"{reason}: {exc.filename}"
    err = OSError(f"cannot write {what + ' ' if what else ''}{path}: {reason}")
    err.errno = exc.errno
    return err


def check_writable(path: str, what: str = "") -> None:
    """Raise a one-line :class:`OSError` unless ``path`` can be opened for writing.

    ``-`` (stdout) always can. The file is opened without truncating it and, if the check
    created it, removed again: the check changes nothing. A full disk shows only when writing.
    ``what`` names the file in the message (``"--plot file"``).
    """
    if path == "-":
        return
    name = f"{what} {path}" if what else path
    if not path:
        raise OSError(f"cannot write an empty {what or 'file'} name: name a file, or - for stdout")
    if os.path.isdir(path):
        raise OSError(f"cannot write {name}: it is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OSError(f"cannot write {name}: no such directory {parent}")
    existed = os.path.lexists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise cannot_write(path, exc, what) from exc
    if not existed:
        os.unlink(path)
