"""``socketkit tour``: the socket tutorial's flow, live on loopback, one real call at a time.

TCP (socket -> bind -> listen -> accept -> recv/send -> close on the server, socket -> connect
-> send/recv -> close on the client) and UDP (message boundaries, truncation) are walked with
the bare :mod:`socket` module so every call and its real result are visible; one line after
each then shows the same job done with socketkit (``serve``/``connect``, ``udp``). With
CAP_NET_RAW the TCP exchange is also captured on ``lo`` and its packets (handshake, data,
FIN) are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import SocketkitError
from .exit_codes import ExitStatus

if TYPE_CHECKING:
    from ..raw.capture import Capture

SUMMARY = "walk the socket tutorial's flow on loopback, step by step"
DESCRIPTION = """\
Walk the socket tutorial's flow on loopback and print every call with its real result:
a TCP exchange (socket, bind, listen, connect, accept, send/recv, shutdown, close), the
same job with socketkit's API, and a UDP exchange showing that datagrams keep their
boundaries and are cut to the receive buffer, then the same with socketkit.udp. With
CAP_NET_RAW (root) the TCP exchange is also captured on lo and its packets are printed."""
EPILOG = """examples:
  socketkit tour
  socketkit tour --host ::1
  socketkit tour --json | jq -c 'select(.part == "capture")'

exit codes: 0 ok (also without CAP_NET_RAW: the capture is skipped with a hint),
1 a step failed (the message says which; a socketkit error has its own code,
e.g. 5 timeout), 2 usage. More: socketkit help tour."""

#: Seconds the capture waits for the TCP exchange's packets before giving up (the exchange
#: itself takes milliseconds; this bounds the tour's run time if a packet never shows up).
CAPTURE_WAIT = 1.5
#: Receive size used by the tour's recv calls: larger than anything it sends over TCP.
RECV_SIZE = 1024
#: The UDP receive buffer that is too small on purpose, to show MSG_TRUNC.
SMALL_BUFFER = 512
#: Seconds any one socket call may block: loopback answers in microseconds, so hitting this
#: means something is badly wrong, and the tour says so instead of hanging.
CALL_TIMEOUT = 2.0
#: Terminal width the text output is laid out for.
WIDTH = 100
#: Longest bytes value shown in full; longer ones are shown as start + "... (N bytes)".
SHOW_BYTES = 40

#: Where a user without CAP_NET_RAW learns the safe ways to get it (not a setcap on the system
#: python3, which would hand raw sockets to every Python program on the host).
_CAPTURE_HINT = (
    "(no packet capture: it needs CAP_NET_RAW; run as root: sudo socketkit tour; "
    "other ways: socketkit help tutorial)"
)
_COLORS = {"server": "36", "client": "35", "result": "32", "note": "2", "head": "1", "warn": "33"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        choices=["127.0.0.1", "::1"],
        help="loopback address to use (default 127.0.0.1)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per step")
    parser.add_argument("--no-color", action="store_true", help="plain text, no ANSI colours")


def run(args: argparse.Namespace) -> int:
    color = not (args.no_color or args.json or os.environ.get("NO_COLOR")) and sys.stdout.isatty()
    out = _Printer(json_mode=args.json, color=color)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    tour = _Tour(out, args.host, family)
    try:
        tour.tcp()
        tour.udp()
    except BrokenPipeError:
        raise  # our stdout went away (``| head``): main() exits quietly
    except OSError as exc:
        raise SocketkitError(f"step {out.step + 1} failed: {exc}") from exc
    out.flush()
    return ExitStatus.OK


# --- output ------------------------------------------------------------------------------


@dataclass
class _Printer:
    json_mode: bool
    color: bool
    step: int = 0

    def _paint(self, text: str, what: str) -> str:
        return f"\x1b[{_COLORS[what]}m{text}\x1b[0m" if self.color else text

    def _emit(self, line: str) -> None:
        print(line, flush=True)

    def flush(self) -> None:
        sys.stdout.flush()

    def heading(self, part: str, title: str, text: str) -> None:
        if self.json_mode:
            self._emit(json.dumps({"part": part, "kind": "heading", "title": title, "text": text}))
            return
        self._emit("")
        self._emit(self._paint(title, "head"))
        for line in _wrap(text, 96):
            self._emit(f"  {line}")

    def call(
        self, part: str, side: str, call: str, result: str, note: str = "", **values: Any
    ) -> None:
        self.step += 1
        if self.json_mode:
            record = {"part": part, "kind": "step", "step": self.step, "side": side}
            record |= {"call": call, "result": result, "note": note, "values": values}
            self._emit(json.dumps(record))
            return
        who = self._paint(f"{side:<6}", side)
        arrow = f"-> {self._paint(result, 'result')}"
        if 13 + max(34, len(call)) + 4 + len(result) <= WIDTH:
            self._emit(f"{self.step:>3}  {who}  {call:<34} {arrow}")
        else:  # too wide for the terminal: the result goes on its own line
            self._emit(f"{self.step:>3}  {who}  {call}")
            self._emit(" " * 15 + arrow)
        for piece in _wrap(note, 86):
            self._emit(" " * 13 + self._paint(piece, "note"))

    def line(self, part: str, kind: str, text: str, **values: Any) -> None:
        if self.json_mode:
            self._emit(json.dumps({"part": part, "kind": kind, "text": text, **values}))
            return
        if kind in {"packet", "hint"}:  # one line each, never wrapped
            self._emit("     " + (self._paint(text, "warn") if kind == "hint" else text))
            return
        paint = "note" if kind == "note" else "result"
        for number, piece in enumerate(_wrap(text, 92)):
            self._emit((" " * (5 if number == 0 else 7)) + self._paint(piece, paint))


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current] if current else lines


def _show(data: bytes) -> str:
    """A Python expression for ``data``, short: ``b'x' * 1000`` or ``b'abc...'...``."""
    if len(data) <= SHOW_BYTES:
        return repr(data)
    if data == data[:1] * len(data):
        return f"{data[:1]!r} * {len(data)}"
    return f"{data[:12]!r}..."


def _addr(sockaddr: Any) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- the tour ------------------------------------------------------------------------------


class _Tour:
    def __init__(self, out: _Printer, host: str, family: socket.AddressFamily) -> None:
        self.out = out
        self.host = host
        self.family = family
        self.fam = "AF_INET6" if family == socket.AF_INET6 else "AF_INET"

    # TCP -----------------------------------------------------------------------------------

    def tcp(self) -> None:
        out, host = self.out, self.host
        out.heading(
            "tcp",
            f"TCP: stream sockets on {host}",
            "A connection between exactly two sockets; bytes arrive in order and complete, "
            "but a stream has no message boundaries.",
        )
        with ExitStack() as stack:
            srv = stack.enter_context(socket.socket(self.family, socket.SOCK_STREAM))
            srv.settimeout(CALL_TIMEOUT)
            out.call(
                "tcp",
                "server",
                f"socket({self.fam}, SOCK_STREAM)",
                f"fd {srv.fileno()}",
                "a new TCP socket: a file descriptor, no address yet",
                fd=srv.fileno(),
            )
            srv.bind((host, 0))
            bound = srv.getsockname()
            port = int(bound[1])
            out.call(
                "tcp",
                "server",
                f"bind(({host!r}, 0))",
                f"bound to {_addr(bound)}",
                f"port 0 asks the kernel for a free port: it chose {port}",
                host=host,
                port=port,
            )
            cap = stack.enter_context(self._capture(port))
            srv.listen(8)
            out.call(
                "tcp",
                "server",
                "listen(8)",
                "None",
                "now a listening socket: clients can connect, up to 8 wait in the queue",
                backlog=8,
            )
            cli = stack.enter_context(socket.socket(self.family, socket.SOCK_STREAM))
            cli.settimeout(CALL_TIMEOUT)
            out.call(
                "tcp",
                "client",
                f"socket({self.fam}, SOCK_STREAM)",
                f"fd {cli.fileno()}",
                fd=cli.fileno(),
            )
            cli.connect((host, port))
            local = cli.getsockname()
            out.call(
                "tcp",
                "client",
                f"connect(({host!r}, {port}))",
                f"None (connected from {_addr(local)})",
                "the three-way handshake is done; the kernel picked the client's port",
                port=port,
                local_port=int(local[1]),
            )
            conn, peer = srv.accept()
            stack.enter_context(conn)
            conn.settimeout(CALL_TIMEOUT)
            out.call(
                "tcp",
                "server",
                "accept()",
                f"fd {conn.fileno()}, peer {_addr(peer)}",
                f"a NEW socket for this client; fd {srv.fileno()} keeps listening",
                fd=conn.fileno(),
                peer_port=int(peer[1]),
            )
            cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            total = 0
            for piece in (b"Hello, ", b"server!"):
                sent = cli.send(piece)
                total += sent
                out.call(
                    "tcp",
                    "client",
                    f"send({piece!r})",
                    f"{sent} (bytes sent)",
                    bytes=sent,
                    data=piece.decode(),
                )
            self._recv_all(conn, "server", total, "two sends, one recv: no message boundaries")
            reply = f"Hello, client! I got {total} bytes.".encode()
            sent = conn.send(reply)
            out.call(
                "tcp",
                "server",
                f"send({_show(reply)})",
                f"{sent} (bytes sent)",
                bytes=sent,
                data=reply.decode(),
            )
            self._recv_all(cli, "client", sent, "")
            cli.shutdown(socket.SHUT_WR)
            out.call(
                "tcp",
                "client",
                "shutdown(SHUT_WR)",
                "None",
                "half-close: sends FIN, 'I will send no more'; it can still receive",
            )
            eof = conn.recv(RECV_SIZE)
            out.call(
                "tcp",
                "server",
                f"recv({RECV_SIZE})",
                f"{eof!r} (0 bytes)",
                "an empty result means end of stream: the client shut its side",
                bytes=len(eof),
            )
            conn.close()
            out.call(
                "tcp",
                "server",
                "close()   # the accepted socket",
                "None",
                "the server's FIN; the connection is finished",
            )
            eof = cli.recv(RECV_SIZE)
            out.call(
                "tcp",
                "client",
                f"recv({RECV_SIZE})",
                f"{eof!r} (0 bytes)",
                "end of stream from the server too",
                bytes=len(eof),
            )
            cli.close()
            out.call("tcp", "client", "close()", "None")
            srv.close()
            out.call(
                "tcp",
                "server",
                "close()   # the listening socket",
                "None",
                f"port {port} is free again",
            )
            self.with_socketkit()
            if cap is not None:
                self._show_packets(cap, port)

    def _recv_all(self, sock: socket.socket, side: str, expected: int, note: str) -> None:
        """recv until ``expected`` bytes came; one printed step per recv call (usually one)."""
        got = 0
        while got < expected:
            data = sock.recv(RECV_SIZE)
            if not data:
                raise SocketkitError(f"the peer closed after {got} of {expected} bytes")
            got += len(data)
            out_note = note if got >= expected else "part of the bytes; recv again for the rest"
            self.out.call(
                "tcp",
                side,
                f"recv({RECV_SIZE})",
                f"{_show(data)} ({len(data)} bytes)",
                out_note,
                bytes=len(data),
                data=data.decode(),
            )

    def with_socketkit(self) -> None:
        """The same exchange with socketkit's API, run for real: one line."""
        from .._sync.connect import connect
        from .._sync.server import serve
        from .._sync.stream import Stream

        def echo(stream: Stream) -> None:
            for chunk in iter(stream.receive_some, b""):
                stream.send_all(chunk)

        message = b"Hello, server!"
        listen_on = f"[{self.host}]:0" if ":" in self.host else f"{self.host}:0"
        with (
            serve(echo, listen_on) as server,
            connect(server.address, timeout=2.0) as stream,
        ):
            stream.send_all(message)
            back = stream.receive_exactly(len(message), timeout=2.0)
            local = stream.local_address
            address = str(server.address)
        text = (
            f"the same with socketkit: serve(echo, '{listen_on}') -> {address}; connect(...) "
            f"from {local}; send_all({message!r}); receive_exactly({len(message)}) -> "
            f"{back!r}"
        )
        self.out.line(
            "tcp",
            "socketkit",
            text,
            address=address,
            bytes=len(back),
            data=back.decode(),
        )

    # UDP -----------------------------------------------------------------------------------

    def udp(self) -> None:
        out, host = self.out, self.host
        out.heading(
            "udp",
            f"UDP: datagram sockets on {host}",
            "No connection: each sendto is one message (a datagram) that arrives whole or not "
            "at all. Messages may be lost or reordered on a real network, and each is "
            "size-limited; in exchange UDP is fast and simple.",
        )
        with (
            socket.socket(self.family, socket.SOCK_DGRAM) as srv,
            socket.socket(self.family, socket.SOCK_DGRAM) as cli,
        ):
            srv.settimeout(CALL_TIMEOUT)
            cli.settimeout(CALL_TIMEOUT)
            out.call(
                "udp",
                "server",
                f"socket({self.fam}, SOCK_DGRAM)",
                f"fd {srv.fileno()}",
                fd=srv.fileno(),
            )
            srv.bind((host, 0))
            port = int(srv.getsockname()[1])
            out.call(
                "udp",
                "server",
                f"bind(({host!r}, 0))",
                f"bound to {_addr(srv.getsockname())}",
                "no listen() and no accept(): it just receives datagrams",
                port=port,
            )
            out.call(
                "udp",
                "client",
                f"socket({self.fam}, SOCK_DGRAM)",
                f"fd {cli.fileno()}",
                "no connect() needed: every sendto names its destination",
                fd=cli.fileno(),
            )
            messages = [b"ping", b"a longer one", b"x" * 1000]
            for msg in messages:
                sent = cli.sendto(msg, (host, port))
                out.call(
                    "udp", "client", f"sendto({_show(msg)}, :{port})", f"{sent} (bytes)", bytes=sent
                )
            local = cli.getsockname()
            out.call(
                "udp",
                "client",
                "getsockname()",
                _addr(local),
                "the first sendto bound the client to a free port",
                port=int(local[1]),
            )
            for _ in messages:
                data, sender = srv.recvfrom(65535)
                out.call(
                    "udp",
                    "server",
                    "recvfrom(65535)",
                    f"{_show(data)} ({len(data)} bytes) from {_addr(sender)}",
                    "one recvfrom = one whole datagram: the boundaries are kept",
                    bytes=len(data),
                    from_port=int(sender[1]),
                )
            sent = srv.sendto(b"pong", sender)
            out.call(
                "udp",
                "server",
                f"sendto(b'pong', {_addr(sender)})",
                f"{sent} (bytes)",
                "the reply goes to the address recvfrom reported",
                bytes=sent,
            )
            data, sender = cli.recvfrom(65535)
            out.call(
                "udp",
                "client",
                "recvfrom(65535)",
                f"{data!r} ({len(data)} bytes) from {_addr(sender)}",
                bytes=len(data),
                from_port=int(sender[1]),
            )
            big = b"y" * 2000
            sent = cli.sendto(big, (host, port))
            out.call(
                "udp", "client", f"sendto({_show(big)}, :{port})", f"{sent} (bytes)", bytes=sent
            )
            data, _anc, flags, _src = srv.recvmsg(SMALL_BUFFER)
            truncated = bool(flags & socket.MSG_TRUNC)
            out.call(
                "udp",
                "server",
                f"recvmsg({SMALL_BUFFER})",
                f"{len(data)} bytes, msg_flags {'MSG_TRUNC' if truncated else flags}",
                f"size-limited: {len(data)} bytes fit; the other {sent - len(data)} bytes "
                "of that datagram are dropped",
                bytes=len(data),
                truncated=truncated,
                lost=sent - len(data),
            )
            srv.setblocking(False)
            try:
                rest = srv.recv(65535)
                result = f"{_show(rest)} ({len(rest)} bytes)"
            except BlockingIOError:
                result = "BlockingIOError (nothing queued)"
            out.call(
                "udp",
                "server",
                "recv(65535)   # non-blocking",
                result,
                "the rest of a truncated datagram is gone for good",
            )
        out.call("udp", "both", "close()", "None", "nothing to shut down: there was no connection")
        self.udp_with_socketkit()

    def udp_with_socketkit(self) -> None:
        """The same datagram exchange with socketkit's API, run for real: one line."""
        from .._sync.udp import udp

        bind_to = f"[{self.host}]:0" if ":" in self.host else f"{self.host}:0"
        with (
            udp(bind_to, max_size=SMALL_BUFFER) as server,
            udp(remote=server.local) as client,
        ):
            client.send(b"ping", timeout=CALL_TIMEOUT)
            got = server.receive(timeout=CALL_TIMEOUT)
            server.send(b"pong", got.address, timeout=CALL_TIMEOUT)
            back = client.receive(timeout=CALL_TIMEOUT)
            client.send(b"y" * 2000, timeout=CALL_TIMEOUT)
            cut = server.receive(timeout=CALL_TIMEOUT)
            address = server.local
        text = (
            f"the same with socketkit: server = udp('{bind_to}', max_size={SMALL_BUFFER}) -> "
            f"{address}; client = udp(remote=server.local); client.send(b'ping'); "
            f"server.receive() -> {got.data!r} from {got.peer}; server.send(b'pong', "
            f"datagram.address); client.receive() -> {back.data!r}; a 2000-byte datagram -> "
            f"{len(cut.data)} bytes, truncated={cut.truncated} (reported, never silent)"
        )
        self.out.line(
            "udp",
            "socketkit",
            text,
            address=address,
            data=got.data.decode(),
            reply=back.data.decode(),
            bytes=len(cut.data),
            truncated=cut.truncated,
        )

    # capture -------------------------------------------------------------------------------

    @contextmanager
    def _capture(self, port: int) -> Iterator[Capture | None]:
        """A capture of the tour's TCP port on ``lo``, or None with a printed hint."""
        try:
            from ..raw.capture import capture

            cap = capture("lo", filter=f"tcp port {port}", timeout=CAPTURE_WAIT)
        except (SocketkitError, ImportError, OSError) as exc:
            if isinstance(exc, PermissionError):
                text = _CAPTURE_HINT
            else:
                text = f"(no packet capture: {exc})"
            self.out.line("capture", "hint", text, skipped=True)
            yield None
            return
        self.out.line("capture", "note", f"(capturing tcp port {port} on lo; packets below)")
        try:
            yield cap
        finally:
            cap.close()

    def _show_packets(self, cap: Capture, port: int) -> None:
        from ..packet.summary import summary

        self.out.heading(
            "capture",
            f"The same TCP exchange on the wire (lo, tcp port {port})",
            "What the kernel sent for those calls: the handshake (connect/accept), "
            "the data with its ACKs, and the FINs (shutdown/close). Client port -> server port; "
            "seq/ack numbers relative to each side's first one, as tcpdump shows them.",
        )
        fins = 0
        start: int | None = None
        isn: dict[int, int] = {}
        for number, pkt in enumerate(cap, 1):
            line = summary(pkt.data, pkt.linktype)
            flags = _FLAGS.search(line)
            label = _label(flags.group(1) if flags else "", line)
            ends = _ENDS.match(line)
            src_port, dst_port = (int(ends.group(1)), int(ends.group(2))) if ends else (0, 0)
            direction = "server->client" if src_port == port else "client->server"
            start = pkt.ts_ns if start is None else start
            ms = (pkt.ts_ns - start) / 1e6
            short = _relative(ends.group(3) if ends else line, src_port, dst_port, isn)
            self.out.line(
                "capture",
                "packet",
                f"{number:>2} {ms:7.3f} ms  {src_port:>5} > {dst_port:<5}  {label:<8} {short}",
                number=number,
                label=label,
                direction=direction,
                summary=line,
                src_port=src_port,
                dst_port=dst_port,
            )
            fins += "F" in (flags.group(1) if flags else "")
            if (fins >= 2 and label == "ACK") or label == "RST":
                break
        else:
            self.out.line("capture", "note", f"(capture ended after {CAPTURE_WAIT} s)")
        stats = cap.stats()
        self.out.line(
            "capture",
            "note",
            f"({stats.captured} packets captured, {stats.dropped} dropped by kernel)",
            captured=stats.captured,
            dropped=stats.dropped,
        )


_FLAGS = re.compile(r"Flags \[([^\]]*)\]")
_ENDS = re.compile(r"^IP6? \S+\.(\d+) > \S+\.(\d+): (.*)$")
_TRIM = re.compile(r", (?:win \d+|options \[[^\]]*\])|Flags ")
_SEQ = re.compile(r"\b(seq|ack) (\d+)(?::(\d+))?")
_LENGTH = re.compile(r"length (\d+)")
_NAMES = {"S": "SYN", "S.": "SYN-ACK", ".": "ACK", "F.": "FIN", "F": "FIN", "R": "RST", "R.": "RST"}


def _relative(text: str, src: int, dst: int, isn: dict[int, int]) -> str:
    """tcpdump's default view: seq/ack relative to each side's first sequence number."""

    def rel(match: re.Match[str]) -> str:
        kind, first, last = match.group(1), int(match.group(2)), match.group(3)
        side = src if kind == "seq" else dst
        base = isn.setdefault(side, first if kind == "seq" else first - 1)
        shown = str((first - base) % 2**32)
        return f"{kind} {shown}:{(int(last) - base) % 2**32}" if last else f"{kind} {shown}"

    return _SEQ.sub(rel, _TRIM.sub("", text))


def _label(flags: str, line: str) -> str:
    match = _LENGTH.search(line)
    length = int(match.group(1)) if match else 0
    if length and "F" not in flags:
        return f"data {length}"
    return _NAMES.get(flags.replace("P", ""), flags or "?")


def main() -> int:  # pragma: no cover - convenience for ``python -m socketkit.cli.tour``
    from .main import main as cli_main

    return cli_main(["tour", *sys.argv[1:]])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
