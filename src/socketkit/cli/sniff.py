"""``socketkit sniff``: capture, filter, decode and save packets (tcpdump's everyday jobs)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import IO, Any

from .._errors import MissingDependency, SocketkitError
from ._rawargs import int_range, seconds, usage_error
from .exit_codes import ExitStatus

SUMMARY = "capture, filter, decode and save packets (like tcpdump)"
DESCRIPTION = (
    "Capture packets on an interface (or 'any'), keep those matching a tcpdump-syntax FILTER "
    "(run in the kernel), and print one summary line per packet, or write them straight to a "
    "pcap/pcapng file without decoding. -r reads a capture file instead."
)
EPILOG = """examples:
  socketkit sniff -i lo tcp port 8080
  socketkit sniff -i eth0 -c 100 -w out.pcap 'udp and not port 53'
  socketkit sniff -r out.pcap -X icmp
  socketkit sniff -i any --json -c 10

exit codes: 0 ok (also after Ctrl-C), 1 other failure (e.g. no such interface), 2 usage or
bad filter, 8 no CAP_NET_RAW, 9 a file could not be read or written (e.g. full disk),
10 damaged capture file, 11 libpcap missing (Debian package libpcap0.8), 130 interrupted
before the capture started, 141 stdout closed. More: socketkit help sniff."""

#: tcpdump's default snap length; -s 0 means this as well.
DEFAULT_SNAPLEN = 262144
#: The largest -B: 1 GiB of ring memory (the kernel maps it all; more only delays the start).
MAX_BUFFER_KIB = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "filter",
        nargs="*",
        metavar="FILTER",
        help="tcpdump filter expression, run in the kernel (default: every packet)",
    )
    parser.add_argument(
        "-i",
        dest="interface",
        default="any",
        metavar="IFACE",
        help="interface to capture on (default: any, all of them)",
    )
    parser.add_argument(
        "-c",
        dest="count",
        type=int_range(1),
        metavar="N",
        help="stop after N packets (default: until Ctrl-C or --timeout)",
    )
    parser.add_argument(
        "-w",
        dest="write",
        metavar="FILE",
        help="write packets to FILE ('-' = stdout), no decoding (default: print summaries)",
    )
    parser.add_argument(
        "-r",
        dest="read",
        metavar="FILE",
        help="read packets from a pcap/pcapng file ('-' = stdin) (default: capture live)",
    )
    parser.add_argument(
        "-s",
        dest="snaplen",
        type=int_range(0, DEFAULT_SNAPLEN),
        default=DEFAULT_SNAPLEN,
        metavar="SNAPLEN",
        help=f"keep at most SNAPLEN bytes per packet, 0..{DEFAULT_SNAPLEN} "
        f"(default {DEFAULT_SNAPLEN}; 0 = {DEFAULT_SNAPLEN})",
    )
    parser.add_argument(
        "-B",
        dest="buffer_kib",
        type=int_range(64, MAX_BUFFER_KIB),
        default=32768,
        metavar="KIB",
        help=f"capture ring size in KiB, 64..{MAX_BUFFER_KIB} (default 32768)",
    )
    parser.add_argument(
        "-X",
        dest="hex",
        action="count",
        default=0,
        help="add a hex+ASCII dump from the network header; -XX from the link header, as "
        "tcpdump (default: none)",
    )
    parser.add_argument(
        "-x",
        dest="hex_plain",
        action="count",
        default=0,
        help="add a hex dump (no ASCII) from the network header; -xx from the link header, "
        "as tcpdump; -X wins over it (default: none)",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per packet line (default: text)"
    )
    parser.add_argument(
        "--pcapng", action="store_true", help="write pcapng instead of pcap (default: pcap)"
    )
    parser.add_argument(
        "--nano",
        action="store_true",
        help="nanosecond timestamps in -w files (default: microseconds)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="stop capturing after SECONDS (default: no limit)",
    )
    parser.add_argument(
        "--no-banner",
        dest="quiet",
        action="store_true",
        help="no 'listening on' line (default: print it; tcpdump's -q is quick output here too)",
    )
    tcpdump = parser.add_argument_group(
        "tcpdump's printing options (same meaning and output as tcpdump -nn)"
    )
    tcpdump.add_argument(
        "-n",
        dest="numeric",
        action="count",
        default=0,
        help="accepted, -n or -nn: addresses and ports are always printed as numbers",
    )
    tcpdump.add_argument(
        "-S",
        dest="absolute",
        action="store_true",
        help="absolute TCP sequence numbers (default: relative to each conversation's first, "
        "as tcpdump)",
    )
    tcpdump.add_argument(
        "-t",
        dest="stamps",
        action="count",
        default=0,
        help="-t no time stamp, -tt Unix seconds, -ttt delta since the previous packet, "
        "-tttt date and time, -ttttt delta since the first (default: local time of day)",
    )
    tcpdump.add_argument(
        "-e",
        dest="link",
        action="store_true",
        help="print the link-level header (Ethernet, Linux cooked v2) (default: not)",
    )
    tcpdump.add_argument(
        "-q",
        dest="quick",
        action="store_true",
        help="quick output: TCP as 'tcp LENGTH' (default: flags, numbers, options)",
    )
    tcpdump.add_argument(
        "-A",
        dest="ascii",
        action="store_true",
        help="print each packet from its network header as text, after its line (default: not)",
    )
    tcpdump.add_argument(
        "-v",
        dest="verbose",
        action="count",
        default=0,
        help="-v: IP header fields (tos, ttl, id, offset, flags, proto, length) and checksums "
        "as tcpdump; -vv: also UDP over IPv4 checked, TCP seq always (default: neither)",
    )
    tcpdump.add_argument(
        "-Q",
        dest="direction",
        choices=("in", "out", "inout"),
        default="inout",
        help="capture only packets received (in) or sent (out) by this host, selected in "
        "the kernel; on lo every packet is 'in' (default: inout)",
    )
    tcpdump.add_argument(
        "--print",
        dest="print_too",
        action="store_true",
        help="with -w: print the summary lines as well (default: only write)",
    )
    tcpdump.add_argument(
        "-C",
        dest="file_size",
        type=_file_size,
        metavar="SIZE",
        help="with -w FILE: start a new file when the current one is over SIZE millions of "
        "bytes (suffix k, m, g: KiB, MiB, GiB), named FILE, FILE1, FILE2... (with -W N: "
        "FILE0..FILE<N-1>, reused in turn), as tcpdump (default: one file)",
    )
    tcpdump.add_argument(
        "-G",
        dest="rotate_seconds",
        type=int_range(1),
        metavar="SECONDS",
        help="with -w FILE: start a new file every SECONDS (at the next packet), FILE "
        "formatted by strftime (e.g. 'cap-%%H%%M%%S.pcap'); with -W N stop after N files, as "
        "tcpdump (default: one file)",
    )
    tcpdump.add_argument(
        "-W",
        dest="file_count",
        type=int_range(1),
        metavar="N",
        help="with -C: keep N files, reused in turn; with -G: stop after N files "
        "(default: no limit)",
    )
    tcpdump.add_argument(
        "-D",
        dest="list_interfaces",
        action="store_true",
        help="list the interfaces to capture on, numbered and with their flags as tcpdump "
        "-D, and exit (libpcap's non-network sources are left out; -i takes names only)",
    )
    tcpdump.add_argument(
        "-l",
        dest="line_buffered",
        action="store_true",
        help="flush stdout after every line (default: when the capture has nothing pending)",
    )


def run(args: argparse.Namespace) -> int:
    from ..raw.bpf import FilterError

    expression = " ".join(args.filter).strip() or None
    snaplen = args.snaplen if args.snaplen > 0 else DEFAULT_SNAPLEN
    if args.list_interfaces:
        from ..raw.capture import interface_list

        for line in interface_list():
            print(line)
        return ExitStatus.OK
    rotating = args.file_size is not None or args.rotate_seconds is not None
    if rotating and (args.write is None or args.write == "-"):
        return usage_error("sniff", "-C and -G name files: they go with -w FILE")
    if rotating and args.read is not None:
        return usage_error("sniff", "-C and -G rotate the files of a live capture, not of -r")
    if args.file_count is not None and not rotating:
        return usage_error("sniff", "-W counts the files of -C or -G: give one of them")
    if args.print_too and args.write is None:
        return usage_error("sniff", "--print goes with -w (without -w the lines are printed)")
    if args.print_too and args.write == "-":
        return usage_error("sniff", "--print with -w -: the lines and the file would share stdout")
    stop = _install_sigterm()
    try:
        if args.read is not None:
            return _read_file(args, expression)
        return _live(args, expression, snaplen)
    except FilterError as exc:  # a usage error, as tcpdump's "can't parse filter expression"
        print(f"socketkit sniff: {exc}", file=sys.stderr, flush=True)
        return ExitStatus.USAGE
    finally:
        stop()


# --- live capture ------------------------------------------------------------


def _live(args: argparse.Namespace, expression: str | None, snaplen: int) -> int:
    from ..raw.capture import Capture, pcap_file_header

    fh: IO[bytes] | None = None
    rotation: _Rotation | None = None
    if args.write is not None:
        if args.file_size is not None or args.rotate_seconds is not None:
            rotation = _Rotation(args, snaplen)
        name = args.write if rotation is None else rotation.name()
        try:  # before the capture starts: a path that cannot be written is one line, no stats
            fh = _open_output(name)
        except OSError as exc:
            return _io_error(name, exc)
    try:
        cap = Capture(
            args.interface,
            filter=expression,
            count=args.count,
            timeout=args.timeout,
            snaplen=snaplen,
            buffer_size=args.buffer_kib * 1024,
            direction=args.direction,
        )
    except BaseException:
        if fh is not None:
            _close_output(fh)
        raise
    status: int = ExitStatus.OK  # also after Ctrl-C, like tcpdump; the statistics are printed
    writer: Callable[[int, bytes, int, int], None] | None = None
    quiet_end = False
    if fh is not None:
        # The file header goes out (flushed) before "listening": a full disk or a broken
        # output is one line before the capture, not a surprise at the first packet.
        try:
            if rotation is not None:
                writer = rotation.start(fh, cap)
            elif args.pcapng or args.print_too:
                writer = _writer(fh, cap.linktype, snaplen, args)
            else:
                fh.write(pcap_file_header(cap.linktype, snaplen, nanosecond=args.nano))
            fh.flush()
        except OSError as exc:
            cap.close()
            _close_output(fh)
            if isinstance(exc, BrokenPipeError):
                raise
            return _io_error(args.write, exc)
    try:
        if not args.quiet:
            name = {1: "EN10MB (Ethernet)", 276: "LINUX_SLL2 (Linux cooked v2)"}.get(
                cap.linktype, str(cap.linktype)
            )
            print(
                f"listening on {args.interface}, link-type {name}, snapshot length {snaplen} bytes",
                file=sys.stderr,
                flush=True,
            )
        if fh is not None:
            out_fh = fh
            try:
                if writer is not None and args.print_too:
                    write_one = writer
                    out = sys.stdout
                    line_buffered = args.line_buffered

                    def pump() -> None:
                        for pkt in cap:
                            write_one(pkt.ts_ns, pkt.data, pkt.orig_len, pkt.linktype)
                            out.write(
                                _format(
                                    pkt.data, pkt.linktype, pkt.ts_ns, pkt.orig_len, args,
                                    pkt.ifindex,
                                )
                            )  # fmt: skip
                            if line_buffered or not cap.buffered:
                                out.flush()
                                _current(rotation, out_fh).flush()

                elif writer is not None:
                    write_ng = writer

                    def pump() -> None:
                        for pkt in cap:
                            write_ng(pkt.ts_ns, pkt.data, pkt.orig_len, pkt.linktype)
                else:

                    def pump() -> None:
                        cap.write_pcap(out_fh, nanosecond=args.nano)

                _until_interrupted(cap, pump)
                _current(rotation, out_fh).flush()
                sys.stdout.flush()
            except BrokenPipeError:
                raise
            except OSError as exc:
                status = _io_error(args.write if rotation is None else rotation.current, exc)
        else:
            out = sys.stdout
            line_buffered = args.line_buffered

            def pump() -> None:
                for pkt in cap:
                    out.write(
                        _format(pkt.data, pkt.linktype, pkt.ts_ns, pkt.orig_len, args, pkt.ifindex)
                    )
                    if line_buffered or not cap.buffered:
                        out.flush()

            _until_interrupted(cap, pump)
            out.flush()
    except BrokenPipeError:
        quiet_end = True  # the reader left (| head): quiet, as tcpdump ended by SIGPIPE
        raise
    finally:
        if rotation is not None:
            rotation.close()
        elif fh is not None:
            _close_output(fh)
        cap.close()
        if not quiet_end:
            stats = cap.stats()
            print(
                f"{stats.captured} packets captured, {stats.dropped} dropped by kernel",
                file=sys.stderr,
                flush=True,
            )
    return status


def _until_interrupted(cap: Any, pump: Callable[[], None]) -> None:
    """Run ``pump``. The first Ctrl-C/SIGTERM only stops the capture: what the kernel already
    captured is still written (no exception can cut a ring block in half); a second one
    interrupts at once."""
    stops = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:
            raise KeyboardInterrupt
        cap.stop()

    try:
        old_int = signal.signal(signal.SIGINT, handler)
        old_term = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: plain Ctrl-C behaviour
        pump()
        return
    try:
        pump()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


# --- reading a file ------------------------------------------------------------


def _read_file(args: argparse.Namespace, expression: str | None) -> int:
    from ..raw import bpf

    packet = _packet_api()
    filters: dict[int, bpf.OfflineFilter] = {}
    count = 0
    out = sys.stdout
    fh_out: IO[bytes] | None = None
    writer: Callable[[int, bytes, int, int], None] | None = None
    try:
        with contextlib.ExitStack() as stack:
            if args.read == "-":
                source: Any = sys.stdin.buffer
            else:
                try:
                    source = stack.enter_context(open(args.read, "rb"))
                except OSError as exc:
                    return _io_error(args.read, exc)
            if args.write is not None:
                if _same_file(args.read, args.write):
                    return usage_error(
                        "sniff",
                        f"-r and -w name the same file ({args.write}): writing would "
                        "destroy what is being read",
                    )
                try:  # before reading: a path that cannot be written is one line
                    fh_out = _open_output(args.write)
                except OSError as exc:
                    return _io_error(args.write, exc)
                stack.callback(_close_output, fh_out)
            try:
                capture = packet.open_capture_file(source)
            except BrokenPipeError:
                raise
            except OSError as exc:
                return _io_error(args.read, exc)
            plain = expression is None and args.count is None and args.write is None
            if (
                plain
                and not args.json
                and not args.hex
                and not args.hex_plain
                and not _printing_options(args)
                and capture.linktype != packet.LINKTYPE_LINUX_SLL2  # lines name the interface
            ):
                # Just the summary lines: the fused reader formats whole blocks at a time.
                from ..packet.printer import TcpSequences

                try:
                    capture.write_summaries(
                        out, sequences=None if args.absolute else TcpSequences()
                    )
                except BrokenPipeError:
                    raise
                except OSError as exc:
                    return _io_error(args.read, exc)
                finally:
                    out.flush()
                return ExitStatus.OK
            try:
                if expression is not None:  # compiled before any output: a bad one is usage
                    filters[capture.linktype] = bpf.OfflineFilter(expression, capture.linktype)
                if fh_out is not None:
                    writer = _writer(
                        fh_out, capture.linktype, capture.snaplen or DEFAULT_SNAPLEN, args
                    )
                for rec in capture:
                    if args.count is not None and count >= args.count:
                        break
                    if expression is not None:
                        flt = filters.get(rec.linktype)
                        if flt is None:
                            flt = filters[rec.linktype] = bpf.OfflineFilter(
                                expression, rec.linktype
                            )
                        if not flt.matches(rec.data, rec.orig_len):
                            continue
                    count += 1
                    if writer is not None and args.print_too:
                        out.write(_format(rec.data, rec.linktype, rec.ts_ns, rec.orig_len, args))
                    if writer is not None:
                        try:
                            writer(rec.ts_ns, rec.data, rec.orig_len, rec.linktype)
                        except OSError as exc:
                            return _io_error(args.write, exc)
                        except _MixedLinkTypes as exc:
                            if fh_out is not None and args.write != "-":
                                _close_output(fh_out)  # no partial copy left behind
                                with contextlib.suppress(OSError):
                                    os.unlink(args.write)
                            print(
                                f"socketkit sniff: {args.write}: a pcap file holds one link "
                                f"type, and this input has {exc.first} and {exc.other}: write "
                                "pcapng (--pcapng)",
                                file=sys.stderr,
                                flush=True,
                            )
                            return ExitStatus.USAGE
                    else:
                        out.write(_format(rec.data, rec.linktype, rec.ts_ns, rec.orig_len, args))
                out.flush()
                if fh_out is not None:
                    try:
                        fh_out.flush()
                    except OSError as exc:
                        return _io_error(args.write, exc)
            except SocketkitError:
                out.flush()
                raise
            except BrokenPipeError:
                raise
            except OSError as exc:
                return _io_error(args.read, exc)
    except KeyboardInterrupt:
        out.flush()
    return ExitStatus.OK


# --- helpers ------------------------------------------------------------


def _packet_api() -> Any:
    try:
        from .. import packet
    except ImportError as exc:  # pragma: no cover - part of the package
        raise MissingDependency(f"socketkit.packet is not available: {exc}") from exc
    return packet


def _printing_options(args: argparse.Namespace) -> bool:
    """Whether a tcpdump printing option changes the summary lines beyond relative
    sequence numbers (which the fused reader does itself)."""
    return bool(args.stamps or args.link or args.quick or args.ascii or args.verbose)


def _printer(args: argparse.Namespace) -> Any:
    """The :class:`~socketkit.packet.printer.LinePrinter` of the run, made once."""
    printer = getattr(args, "_printer", None)
    if printer is None:
        from ..packet.printer import LinePrinter

        printer = args._printer = LinePrinter(
            relative=not args.absolute,
            stamps=args.stamps,
            link=args.link,
            quick=args.quick,
            ascii=args.ascii and not args.json,  # a JSON record is one line: no text dump
            verbose=args.verbose,
            interface_name=_interface_name,
        )
    return printer


def _interface_name(ifindex: int) -> str:
    """tcpdump's name for a cooked v2 packet's interface: looked up here, ``?`` if none."""
    import socket

    try:
        return socket.if_indextoname(ifindex)
    except (OSError, OverflowError, ValueError):
        return "?"


def _format(  # noqa: PLR0917
    data: bytes,
    linktype: int,
    ts_ns: int,
    orig_len: int,
    args: argparse.Namespace,
    ifindex: int | None = None,
) -> str:
    packet = _packet_api()
    line: str = _printer(args).line(data, linktype, ts_ns, orig_len)
    if args.json:
        record: dict[str, object] = {
            "ts_ns": ts_ns,
            "time": ts_ns / 1e9,
            "linktype": linktype,
            "caplen": len(data),
            "len": orig_len,
            "summary": line,
        }
        if ifindex is not None:
            record["ifindex"] = ifindex
        if args.hex or args.hex_plain:
            record["hex"] = _dumped(data, linktype, args.hex or args.hex_plain).hex()
        return json.dumps(record, separators=(",", ":")) + "\n"
    if args.hex or args.hex_plain:
        dump = packet.hexdump(
            _dumped(data, linktype, args.hex or args.hex_plain), ascii=bool(args.hex)
        )
        return f"{line}\n{dump}\n" if dump else line + "\n"
    return line + "\n"


def _dumped(data: bytes, linktype: int, level: int) -> bytes:
    """The bytes tcpdump dumps: -X from the network header, -XX the whole frame."""
    if level > 1:
        return data
    from ..packet.hexdump import network_offset

    return data[network_offset(data, linktype) :]


def _open_output(path: str) -> IO[bytes]:
    """The -w output: stdout for '-', else FILE opened (created or truncated) for writing."""
    if path == "-":
        return sys.stdout.buffer
    return open(path, "wb")


def _close_output(fh: IO[bytes]) -> None:
    """Close the -w output (stdout is only flushed). A write error was reported where it
    happened; the data still buffered cannot be written either, so closing stays quiet."""
    with contextlib.suppress(OSError):
        if fh is sys.stdout.buffer:
            fh.flush()
        else:
            fh.close()


def _same_file(read: str, write: str) -> bool:
    """Whether -r and -w name one file (``-`` is never the same as anything)."""
    if "-" in (read, write):
        return False
    try:
        return os.path.samefile(read, write)
    except OSError:
        return False  # the output does not exist yet (or the input cannot be read: said later)


class _MixedLinkTypes(Exception):
    """A pcap output cannot hold a record of another link type than its header's."""

    def __init__(self, first: int, other: int) -> None:
        super().__init__(first, other)
        self.first, self.other = first, other


def _writer(
    fh: IO[bytes], linktype: int, snaplen: int, args: argparse.Namespace
) -> Callable[[int, bytes, int, int], None]:
    """``write(ts_ns, data, orig_len, linktype)`` to the -w output. pcapng gets one interface
    per link type met (a pcapng input with several keeps them); a pcap file holds one link
    type, so a record of another raises :class:`_MixedLinkTypes`."""
    packet = _packet_api()
    if args.pcapng:
        w = packet.PcapngWriter(fh, linktype)
        interfaces = {linktype: 0}

        def write_ng(ts_ns: int, data: bytes, orig_len: int, rec_linktype: int) -> None:
            index = interfaces.get(rec_linktype)
            if index is None:
                index = interfaces[rec_linktype] = w.add_interface(rec_linktype)
            w.write(ts_ns, data, orig_len, index)

        return write_ng
    wp = packet.PcapWriter(fh, linktype, snaplen=snaplen, nanosecond=args.nano)

    def write(ts_ns: int, data: bytes, orig_len: int, rec_linktype: int) -> None:
        if rec_linktype != linktype:
            raise _MixedLinkTypes(linktype, rec_linktype)
        wp.write(ts_ns, data, orig_len)

    return write


def _current(rotation: _Rotation | None, fh: IO[bytes]) -> IO[bytes]:
    """The -w file being written: the rotation's latest, or the one file."""
    return fh if rotation is None or rotation.fh is None else rotation.fh


def _file_size(text: str) -> int:
    """-C: millions of bytes as tcpdump, or with a k/m/g suffix KiB/MiB/GiB; in bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    scale = units.get(text[-1:].lower())
    number = text[:-1] if scale else text
    try:
        value = int(number, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a file size") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: out of range: value >= 1")
    return value * (scale or 1_000_000)


class _StopWriting(Exception):
    """-G with -W: the last file is full; tcpdump exits there."""


class _Rotation:
    """The -w files of -C / -G / -W, named as tcpdump names them (MakeFilename in tcpdump.c):
    with -C a number after the name (none on the first file without -W; with -W N all of
    them, padded to the digits of N-1), with -G the name through strftime."""

    def __init__(self, args: argparse.Namespace, snaplen: int) -> None:
        self.args = args
        self.snaplen = snaplen
        self.limit: int | None = args.file_size
        self.seconds: int | None = args.rotate_seconds
        self.count: int | None = args.file_count
        self.width = len(str(self.count - 1)) if self.count and self.count > 1 else 0
        self.index = 0
        self.files = 1
        self.current = ""
        self.started = 0.0
        self.fh: IO[bytes] | None = None
        self.cap: Any = None
        self.write_one: Callable[[int, bytes, int, int], None] | None = None
        self.done = False

    def name(self) -> str:
        import time

        base: str = self.args.write
        if self.seconds is not None:
            base = time.strftime(base)
        if self.limit is not None and (self.index or self.width):
            base = f"{base}{self.index:0{self.width}d}"
        self.current = base
        return base

    def start(self, fh: IO[bytes], cap: Any) -> Callable[[int, bytes, int, int], None]:
        import time

        self.fh, self.cap = fh, cap
        self.write_one = _writer(fh, cap.linktype, self.snaplen, self.args)
        self.started = time.monotonic()
        return self.write

    def write(self, ts_ns: int, data: bytes, orig_len: int, linktype: int) -> None:
        import time

        if self.done:
            return
        assert self.fh is not None and self.write_one is not None
        now = time.monotonic()
        if self.seconds is not None and now - self.started >= self.seconds:
            if self.count is not None and self.limit is None and self.files >= self.count:
                self.done = True
                self.cap.stop()
                return
            self.started = now
            self.index = 0
            self._next()
        elif self.limit is not None and self.fh.tell() > self.limit:
            self.index += 1
            if self.count is not None and self.index >= self.count:
                self.index = 0
            self._next()
        self.write_one(ts_ns, data, orig_len, linktype)

    def _next(self) -> None:
        assert self.fh is not None
        self.fh.close()
        self.files += 1
        self.fh = _open_output(self.name())
        self.write_one = _writer(self.fh, self.cap.linktype, self.snaplen, self.args)

    def close(self) -> None:
        if self.fh is not None:
            _close_output(self.fh)


def _io_error(path: str, exc: OSError) -> int:
    reason = exc.strerror or str(exc)
    print(f"socketkit sniff: {path}: {reason}", file=sys.stderr, flush=True)
    return ExitStatus.IO


def _install_sigterm() -> Callable[[], None]:
    """Treat SIGTERM like Ctrl-C (print statistics, close the file), as tcpdump does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return lambda: None

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
