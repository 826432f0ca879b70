"""``socketkit tftp get|put|serve``: a TFTP client and server (RFC 1350 with options)."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys
import threading
import time
from typing import IO, Any

from .._errors import SocketkitError
from ._rawargs import int_range
from .exit_codes import ExitStatus, status_for

SUMMARY = "get and put files over TFTP, or serve a directory"
DESCRIPTION = (
    "TFTP (RFC 1350) with the option extensions blksize, tsize, timeout (RFC 2347-2349) and "
    "windowsize (RFC 7440): 'get' downloads a file, 'put' uploads one, 'serve' serves a "
    "directory. Retransmission with exponential back-off; octet and netascii modes."
)
EXIT_CODES = (
    "exit codes: 0 done, 1 the server answered with a TFTP error (file not found, disk "
    "full...), 2 usage, 3 HOST did not resolve, 4 refused (no server at the port: ICMP port "
    "unreachable; or a put's last ACK was lost after the server left), 5 timeout (the peer "
    "stopped answering), 7 refused: access violation (TFTP "
    "error 2: outside the directory, writes not allowed) or a busy server, 8 permission (port "
    "below 1024 without privilege), 9 a local file cannot be read or written, 10 the peer "
    "broke the protocol, 130 interrupted (the server is told)."
)
EPILOG = (
    "examples:\n"
    "  socketkit tftp get 192.0.2.7 pxelinux.0\n"
    "  socketkit tftp get -o fw.bin --blksize 1428 --windowsize 16 [::1]:6969 images/fw.bin\n"
    "  socketkit tftp put 127.0.0.1:6969 notes.txt --mode netascii\n"
    "  socketkit tftp serve /srv/tftp -p 6969 --write --max-sessions 32\n\n"
    + EXIT_CODES
    + "\nMore: socketkit help tftp."
)

_BLKSIZE = int_range(8, 65464)
_WINDOWSIZE = int_range(1, 65535)
_RETRIES = int_range(0, 1000)
_SESSIONS = int_range(1, 100_000)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 255:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a timeout: give seconds, more than 0 and at most 255"
        )
    return value


#: tftp-hpa's names for the modes (its ``mode binary`` / ``-m ascii``), accepted as aliases.
_MODE_ALIASES = {"binary": "octet", "image": "octet", "ascii": "netascii"}


def _mode(text: str) -> str:
    lowered = text.lower()
    return _MODE_ALIASES.get(lowered, lowered)


def _port(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, not {text!r}")
    return value


def _common(parser: argparse.ArgumentParser, *, server: bool) -> None:
    parser.add_argument(
        "--blksize",
        type=_BLKSIZE,
        default=65464 if server else 512,
        metavar="BYTES",
        help="the largest block size granted to a client (default 65464)"
        if server
        else "block size to ask for, 8..65464 (default 512, RFC 1350's; the server may grant "
        "less, or ignore it: then 512)",
    )
    if not server:
        parser.add_argument(
            "--windowsize",
            type=_WINDOWSIZE,
            default=1,
            metavar="BLOCKS",
            help="blocks sent per ACK to ask for, 1..65535 (default 1: lock-step; RFC 7440)",
        )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=1.0,
        metavar="SECONDS",
        help="seconds before the first retransmission, doubled on each further one up to 8x "
        "(default 1)",
    )
    parser.add_argument(
        "--retries",
        type=_RETRIES,
        default=6,
        metavar="N",
        help="retransmissions of one packet before giving up (default 6: about 40 s)",
    )
    if not server:
        parser.add_argument(
            "--mode",
            type=_mode,
            choices=("octet", "netascii"),
            default="octet",
            help="octet: bytes as they are (default); netascii: text, CR LF line ends on the "
            "wire; tftp-hpa's names binary and ascii are taken for them",
        )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per event on stderr (see socketkit help tftp)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="a line per transfer on stderr"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="{get,put,serve}")
    fmt = argparse.RawDescriptionHelpFormatter
    get = sub.add_parser(
        "get",
        help="download REMOTE from HOST",
        description="Download REMOTE from the TFTP server HOST (port 69 unless HOST:PORT; "
        "IPv6 as [addr]:port). The file is written under a temporary name and renamed when "
        "complete: a failed transfer leaves no partial file and an existing file untouched. "
        "Progress is shown when stderr is a terminal.",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    get.set_defaults(usage_error=get.error)
    get.add_argument("host", metavar="HOST[:PORT]")
    get.add_argument("remote", metavar="REMOTE", help="the file name on the server")
    get.add_argument(
        "-o",
        "--output",
        metavar="LOCAL",
        help="where to write it (default: REMOTE's last component here; - for stdout)",
    )
    _common(get, server=False)
    put = sub.add_parser(
        "put",
        help="upload LOCAL to HOST",
        description="Upload LOCAL to the TFTP server HOST (port 69 unless HOST:PORT) as REMOTE "
        "(default: LOCAL's last component). In octet mode the size is sent (tsize), so a "
        "server can refuse a file that does not fit before any data is sent.",
        epilog=EXIT_CODES,
        formatter_class=fmt,
    )
    put.add_argument("host", metavar="HOST[:PORT]")
    put.add_argument("local", metavar="LOCAL", help="the file to send")
    put.add_argument("remote", metavar="REMOTE", nargs="?", help="the name on the server")
    _common(put, server=False)
    serve = sub.add_parser(
        "serve",
        help="serve DIR",
        description="Serve the files of DIR over TFTP until Ctrl-C or SIGTERM. Names are "
        "relative to DIR; '..', absolute names and symlinks leading out of DIR are refused "
        "(TFTP error 2). Uploads need --write; they go to a temporary name, renamed when "
        "complete (and of the announced tsize). Each transfer has its own port (TID) and "
        "thread.",
        epilog="exit codes: 0 stopped by SIGTERM, 1 the address is in use, 2 usage, 8 "
        "permission (port below 1024 without privilege), 9 DIR is not a directory, 130 "
        "Ctrl-C.",
        formatter_class=fmt,
    )
    serve.add_argument("directory", metavar="DIR")
    serve.add_argument(
        "-p", "--port", type=_port, default=69, help="UDP port (default 69; 0: any free port)"
    )
    serve.add_argument(
        "--bind",
        default="",
        metavar="ADDR",
        help="local address to listen on (default: every address, IPv4 and IPv6)",
    )
    serve.add_argument("--write", action="store_true", help="accept uploads (WRQ)")
    serve.add_argument(
        "--max-sessions",
        type=_SESSIONS,
        default=64,
        metavar="N",
        help="concurrent transfers (default 64); more are refused as busy",
    )
    serve.add_argument(
        "--max-sessions-per-ip",
        type=_SESSIONS,
        default=8,
        metavar="N",
        help="concurrent transfers from one address (default 8)",
    )
    _common(serve, server=True)


# --- output ---------------------------------------------------------------------------------


class _Events:
    """``--json`` lines, ``-v`` lines and the terminal progress line, all on stderr."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.json = bool(args.json)
        self.verbose = bool(args.verbose)
        self.tty = not self.json and _isatty(sys.stderr)
        self._lock = threading.Lock()
        self._progress_shown = False
        self._started = time.monotonic()

    def emit(self, name: str, text: str | None, **fields: Any) -> None:
        if self.json:
            record = {"event": name, "time": round(time.time(), 6), **fields}
            self._write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        elif text is not None and self.verbose:
            self._write(f"socketkit tftp: {text}\n")

    def progress(self, size: int, total: int | None) -> None:
        if self.json:
            self.emit("progress", None, bytes=size, total=total)
            return
        if not self.tty:
            return
        seconds = max(time.monotonic() - self._started, 1e-6)
        rate = size / seconds
        if total:
            line = f"{_mib(size)} / {_mib(total)}  {100 * size // max(total, 1):3d}%"
        else:
            line = _mib(size)
        self._progress_shown = True
        self._write(f"\r{line}  {rate / 1e6:.1f} MB/s \x1b[K")

    def say(self, line: str) -> None:
        """One ``socketkit tftp: ...`` line, whatever the output options."""
        self._write(f"socketkit tftp: {line}\n")

    def end_progress(self) -> None:
        if self._progress_shown:
            self._progress_shown = False
            self._write("\n")

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                sys.stderr.write(text)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError, AttributeError):
        return False


def _mib(size: int) -> str:
    return f"{size / 1048576:.1f} MiB"


# --- running ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        print(
            "socketkit tftp: an action is needed: get, put or serve\nsee 'socketkit tftp --help'",
            file=sys.stderr,
        )
        return ExitStatus.USAGE
    events = _Events(args)
    try:
        if args.action == "serve":
            return _serve(args, events)
        return _transfer(args, events)
    except Exception as exc:
        events.end_progress()
        if events.json:
            events.emit(
                "error", None, message=" ".join(str(exc).split()), exit_code=int(status_for(exc))
            )
        raise


def _transfer(args: argparse.Namespace, events: _Events) -> int:
    from ..proto.tftp import TransferInterrupted
    from ..tftp import get, put
    from ..tftp._client import parse_server

    parse_server(args.host)  # a bad HOST:PORT is a usage error before anything is opened
    if (
        args.action == "get"
        and args.output is None
        and not os.path.basename(args.remote.rstrip("/"))
    ):
        args.usage_error(f"REMOTE {args.remote!r} names no file to write here: give -o LOCAL")
    options = dict(
        blksize=args.blksize,
        windowsize=args.windowsize,
        timeout=args.timeout,
        retries=args.retries,
        mode=args.mode,
        progress=events.progress if (events.tty or events.json) else None,
    )
    events.emit(
        "start",
        None,
        action=args.action,
        server=args.host,
        file=args.remote or (os.path.basename(args.local) if args.action == "put" else None),
    )
    try:
        if args.action == "get":
            if args.output == "-":
                report = get(args.host, args.remote, sys.stdout.buffer, **options)
                sys.stdout.buffer.flush()
            else:
                report = get(args.host, args.remote, args.output, **options)
        else:
            if os.path.isdir(args.local):
                raise OSError(f"cannot read {args.local}: it is a directory")
            report = put(args.host, args.local, args.remote, **options)
    except TransferInterrupted as exc:  # Ctrl-C: the server was told (ERROR 0)
        events.end_progress()
        message = f"interrupted after {exc.size} bytes"
        events.emit("error", None, message=message, exit_code=int(ExitStatus.INTERRUPTED))
        events.say(message)
        return ExitStatus.INTERRUPTED
    events.end_progress()
    verb = "received" if args.action == "get" else "sent"
    events.emit(
        "done",
        f"{verb} {report.size} bytes in {report.seconds:.2f} s "
        f"({report.rate / 1e6:.1f} MB/s) {'from' if verb == 'received' else 'to'} "
        f"{report.server}, blksize {report.blksize}, windowsize {report.windowsize}, "
        f"{report.retransmits} retransmitted"
        + ("" if report.negotiated else " (the server ignored the options)"),
        action=args.action,
        file=report.remote,
        local=report.local,
        server=report.server,
        bytes=report.size,
        seconds=round(report.seconds, 6),
        blksize=report.blksize,
        windowsize=report.windowsize,
        tsize=report.tsize,
        negotiated=report.negotiated,
        retransmits=report.retransmits,
        duplicates=report.duplicates,
        mode=report.mode,
    )
    return ExitStatus.OK


def _serve(args: argparse.Namespace, events: _Events) -> int:
    from ..tftp import serve

    if not os.path.isdir(args.directory):
        raise OSError(f"cannot serve {args.directory}: not a directory")
    host = args.bind
    address = f"[{host}]:{args.port}" if ":" in host else f"{host}:{args.port}"

    def on_event(name: str, fields: dict[str, Any]) -> None:
        text = {
            "listening": lambda f: (
                f"serving {f['directory']} at {f['address']}"
                + (" (uploads allowed)" if f["write"] else "")
            ),
            "request": lambda f: f"{f['peer']}: {f['op']} {f['file']!r}",
            "refused": lambda f: f"{f['peer']}: refused (TFTP error {f['code']}): {f['message']}",
            "done": lambda f: (
                f"{f['peer']}: {f['op']} {f['file']!r} done, {f['size']} bytes "
                f"in {f['seconds']:.2f} s"
            ),
            "failed": lambda f: f"{f['peer']}: {f['file']!r} failed: {f['message']}",
        }[name](fields)
        events.emit(name, text, **fields)

    # SIGTERM ends the server cleanly (exit 0); installed before the socket is bound, so a
    # SIGTERM right after the "listening" event cannot kill the process instead.
    stopped = threading.Event()
    running: list[Any] = []

    def on_sigterm(_signum: int, _frame: object) -> None:
        stopped.set()
        for each in running:
            each.close()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server = serve(
            args.directory,
            address,
            write=args.write,
            max_sessions=args.max_sessions,
            max_sessions_per_ip=args.max_sessions_per_ip,
            max_blksize=args.blksize,
            timeout=args.timeout,
            retries=args.retries,
            on_event=on_event,
        )
    except SocketkitError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            shown = address if host else f"port {args.port}"
            raise SocketkitError(
                f"cannot serve on {shown}: address already in use (another socket is bound "
                "there: pick another port with -p)"
            ) from exc
        raise
    running.append(server)
    try:
        if not stopped.is_set():
            server.serve_forever()
    finally:
        server.close()
    events.emit("closed", "stopped", address=server.address)
    return ExitStatus.OK
