"""What kind of file a local descriptor is, and the page-aligned buffers the copy path uses.

The relay picks its fastest path from this: ``splice(2)`` for pipes, sockets and files,
``sendfile(2)`` for a regular file into a socket, a plain copy through a reused buffer for the
rest (terminals, TLS, transforms).
"""

from __future__ import annotations

import enum
import mmap
import os
import select
import stat
import sys

__all__ = [
    "FdKind",
    "aligned_buffer",
    "check_delivered",
    "check_stdio",
    "fd_kind",
    "grow_pipe",
    "write_all",
]

#: Pipe capacity asked for with F_SETPIPE_SZ: 1 MiB (the default /proc/sys/fs/pipe-max-size)
#: moves a whole socket buffer per splice call; the kernel may grant less.
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.h, Linux >= 2.6.35


class FdKind(enum.Enum):
    PIPE = "pipe"
    FILE = "file"  # a regular file
    CHAR = "char"  # a character device other than a terminal: /dev/null, /dev/zero, /dev/full
    TERMINAL = "terminal"
    SOCKET = "socket"
    OTHER = "other"


def fd_kind(fd: int) -> FdKind:
    """Classify ``fd`` by ``fstat``; ``OTHER`` if it cannot be examined."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return FdKind.OTHER
    if stat.S_ISFIFO(mode):
        return FdKind.PIPE
    if stat.S_ISREG(mode):
        return FdKind.FILE
    if stat.S_ISSOCK(mode):
        return FdKind.SOCKET
    if stat.S_ISCHR(mode):
        return FdKind.TERMINAL if os.isatty(fd) else FdKind.CHAR
    return FdKind.OTHER


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> int:
    """Ask for a larger pipe buffer; return the capacity the kernel granted (or guessed)."""
    import fcntl

    try:
        return int(fcntl.fcntl(fd, _F_SETPIPE_SZ, size))
    except OSError:
        return 65536  # the Linux default capacity


def aligned_buffer(size: int) -> memoryview:
    """A zeroed, page-aligned, writable buffer of ``size`` bytes.

    ``recv_into`` a glibc-allocated bytearray of >= 128 KiB runs at half speed because it
    starts 16 bytes into a page (docs/design.md, measured trap 1); anonymous mmap memory is
    page-aligned.
    """
    return memoryview(mmap.mmap(-1, size))


def write_all(fd: int, data: bytes | memoryview, what: str, *, broken_pipe: bool = False) -> None:
    """Write all of ``data`` to a local descriptor (blocking); a failure is one-line
    ``OSError("cannot write WHAT: ...")``. With ``broken_pipe``, a closed reader stays a
    ``BrokenPipeError`` (stdout: the command then exits quietly, as if killed by SIGPIPE)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            if broken_pipe and isinstance(exc, BrokenPipeError):
                raise
            raise OSError(f"cannot write {what}: {exc.strerror}") from exc
        view = view[written:]


def check_delivered(fd: int) -> None:
    """At the end of a session: if ``fd`` is a pipe whose reader has gone while bytes we wrote
    are still unread in it, raise ``BrokenPipeError`` (the command exits 141, as if SIGPIPE had
    killed it), whether or not the last write happened to fail.

    Without this the outcome is a race: ``splice(2)`` can leave far more than the pipe's
    nominal 64 KiB in it (page references, not copies), so a reader that stops early (``head
    -c 10``) may find every write already done, and the session would end with 0 although
    its output was lost. A reader that is still there, or that read everything, is not a loss.
    """
    import fcntl
    import termios

    if fd_kind(fd) is not FdKind.PIPE:
        return
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR is always reported: no reader is left
    if not any(ev & select.POLLERR for _fd, ev in poller.poll(0)):
        return
    unread = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, unread)
    except OSError:
        return
    if int.from_bytes(unread, sys.byteorder) > 0:
        raise BrokenPipeError(32, "stdout closed by its reader before it read everything")


def check_stdio(*, stdin: bool, stdout: bool) -> None:
    """Before any socket is opened: the standard descriptors the session will use are open
    and usable, so a closed one is a one-line local error (exit 9) up front, rather than
    after connecting or, worse, a socket that takes the free descriptor number 0 or 1 and is
    then relayed to itself.

    Raises:
        OSError: ``stdin is closed``, ``stdin is a directory``, ``stdout is closed``.
    """
    for fd, name, used in ((0, "stdin", stdin), (1, "stdout", stdout)):
        if not used:
            continue
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            hint = "< /dev/null" if fd == 0 else "> /dev/null"
            raise OSError(
                f"{name} is closed ({exc.strerror}): give a file, a pipe or {hint}"
            ) from exc
        if stat.S_ISDIR(mode):
            raise OSError(f"{name} is a directory: give a file, a pipe or a terminal")
