"""Files of a TFTP transfer: names kept inside the served directory, and writes that replace a
file only once complete (a temporary name beside it, renamed at the end, removed on failure).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from typing import IO

from ..proto import tftp

__all__ = ["AtomicFile", "Refused", "open_for_read", "resolve_for_write", "TEMP_PREFIX"]

#: Temporary files are ``.NAME.<random>.tftp-part`` beside the target: hidden, and refused as
#: transfer names, so nobody reads a half-written file through the server.
TEMP_PREFIX = "."
TEMP_SUFFIX = ".tftp-part"


Refused = tftp.TftpRefusal


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _checked_name(root: str, name: str) -> str:
    """``root/name`` after refusing absolute names, ``..`` and temporary-file names."""
    if name.startswith("/") or name.startswith("\\"):
        raise Refused(
            f"absolute name {name!r} refused: names are relative to the served directory",
            tftp.ErrorCode.ACCESS_VIOLATION,
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts):
        raise Refused(
            f"name {name!r} refused: it leaves the served directory",
            tftp.ErrorCode.ACCESS_VIOLATION,
        )
    if parts[-1].endswith(TEMP_SUFFIX):
        raise Refused(
            f"name {name!r} refused: a transfer in progress", tftp.ErrorCode.ACCESS_VIOLATION
        )
    return os.path.join(root, *parts)


def open_for_read(root: str, name: str) -> tuple[IO[bytes], int]:
    """Open ``name`` under ``root`` (a real path) for reading: (file, size).

    The file's real path is checked after opening (``/proc/self/fd``), so a symlink that
    leads out of ``root`` is refused even if it is swapped in between a check and the open.

    Raises:
        Refused: ERROR 1 (missing), 2 (outside root, not a regular file, not readable).
    """
    path = _checked_name(root, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Refused(f"{name}: no such file", tftp.ErrorCode.FILE_NOT_FOUND) from None
    except OSError as exc:
        raise Refused(
            f"{name}: {(exc.strerror or str(exc)).lower()}", tftp.ErrorCode.ACCESS_VIOLATION
        ) from None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
        if not _inside(root, real):
            raise Refused(
                f"{name}: refused: it leads out of the served directory",
                tftp.ErrorCode.ACCESS_VIOLATION,
            )
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{name}: refused: not a regular file", tftp.ErrorCode.ACCESS_VIOLATION)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=256 * 1024), info.st_size
    except BaseException:
        os.close(fd)
        raise


def resolve_for_write(root: str, name: str, size: int | None) -> str:
    """The path ``name`` will be written to under ``root``, after every check that can be
    made before the transfer (the directory exists and stays inside ``root``; the target is
    not a directory; ``size`` bytes fit on the file system).

    Raises:
        Refused: ERROR 2 (outside root, a directory, no such directory), 3 (no room).
    """
    path = _checked_name(root, name)
    parent = os.path.dirname(path)
    real_parent = os.path.realpath(parent)
    if not _inside(root, real_parent):
        raise Refused(
            f"{name}: refused: it leads out of the served directory",
            tftp.ErrorCode.ACCESS_VIOLATION,
        )
    if not os.path.isdir(real_parent):
        raise Refused(f"{name}: no such directory on the server", tftp.ErrorCode.ACCESS_VIOLATION)
    if os.path.isdir(path):
        raise Refused(f"{name}: refused: it is a directory", tftp.ErrorCode.ACCESS_VIOLATION)
    if os.path.islink(path) and not _inside(root, os.path.realpath(path)):
        raise Refused(
            f"{name}: refused: it leads out of the served directory",
            tftp.ErrorCode.ACCESS_VIOLATION,
        )
    if size is not None:
        fs = os.statvfs(real_parent)
        if size > fs.f_bavail * fs.f_frsize:
            raise Refused(
                f"{name}: {size} bytes do not fit on the server's disk", tftp.ErrorCode.DISK_FULL
            )
    return os.path.join(real_parent, os.path.basename(path))


class AtomicFile:
    """A file written under a temporary name beside ``path`` and renamed onto it by
    :meth:`commit`; :meth:`discard` (or leaving the ``with`` block with an error) removes
    the temporary file, so a good file at ``path`` is never replaced by a partial one.

    The directory is opened once and used by descriptor from then on (``openat``,
    ``renameat``). With ``root`` (the server's directory), the opened directory's real path
    must be inside it: a directory swapped for a symlink after the name was checked is
    refused (ERROR 2) before anything is created, and cannot be followed out later.
    """

    def __init__(self, path: str, *, root: str | None = None, mode: int = 0o644) -> None:
        self.path = path
        directory, base = os.path.split(os.path.abspath(path))
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if root is not None and not _inside(root, os.readlink(f"/proc/self/fd/{dir_fd}")):
                raise Refused(
                    f"{base}: refused: its directory leads out of the served directory",
                    tftp.ErrorCode.ACCESS_VIOLATION,
                )
            self._name = f"{TEMP_PREFIX}{base}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(self._name, flags, mode, dir_fd=dir_fd)
        except BaseException:
            os.close(dir_fd)
            raise
        self._dir: int | None = dir_fd
        self._base = base
        self.temp = os.path.join(directory, self._name)
        self.file: IO[bytes] = os.fdopen(fd, "wb", buffering=256 * 1024)
        self.done = False

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> None:
        """Flush, then rename over ``path`` in the directory opened at the start (atomic)."""
        self.file.close()
        assert self._dir is not None
        os.replace(self._name, self._base, src_dir_fd=self._dir, dst_dir_fd=self._dir)
        self.done = True
        self._close_dir()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        if not self.done and self._dir is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._name, dir_fd=self._dir)
        self._close_dir()

    def _close_dir(self) -> None:
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            self.discard()
