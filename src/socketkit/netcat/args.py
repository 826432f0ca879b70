"""Command-line options shared by ``socketkit connect`` and ``socketkit listen``, and their
translation into :class:`~socketkit.netcat.options.NetcatOptions`."""

from __future__ import annotations

import argparse
import math
import shlex

from .._addr import check_port
from .eof import EofPolicy, preset
from .limits import DEFAULT_MAX_CONNS, DEFAULT_MAX_PER_SOURCE
from .options import NetcatOptions, TlsOptions

__all__ = [
    "add_common_arguments",
    "add_multicast_arguments",
    "build_options",
    "multicast_group",
    "positive_int",
    "seconds",
]

EOF_TABLE = """\
end-of-file behaviour (defaults = OpenBSD nc -N; the full table: socketkit help connect):
  --on-stdin-eof shutdown  send FIN, keep receiving           (nc -N, ncat, socat)
  --on-stdin-eof close     close the connection at once
  --on-stdin-eof keep      send nothing, keep the connection  (nc without -N)
  --on-peer-eof stay       keep sending stdin, exit at its EOF (connect default: nc, ncat)
  --on-peer-eof exit       exit once the peer's data is out   (listen default: nc -l, ncat -l)
  --eof-preset nc|ncat|socat   all of the above at once; socat adds -q 0.5
"""


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM and SIGHUP (the terminal went away) unwind like an exception (sockets closed,
    Unix socket files removed) and exit with 128 + the signal's number (143, 129), the status
    a shell reports for a process killed by it."""
    import signal

    def _terminate(signum: int, _frame: object) -> None:
        # Once: the unwinding (ending sessions, their programs, their closed lines) must not
        # be cut short by the same signal again. ``timeout`` and a shell's job control send it
        # to the whole process group as well as to us, so a second one often follows at once.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup: stay ignored
        signal.signal(signal.SIGHUP, _terminate)


#: Longest time option: poll(2) takes its timeout as an int of milliseconds (2**31 - 1 ms is
#: 24.8 days), so anything longer cannot be waited for in one call.
MAX_SECONDS = 2_000_000


def seconds(text: str) -> float:
    """argparse ``type=`` for a time option: a finite number of seconds, 0 to MAX_SECONDS."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0 or value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"expected seconds from 0 to {MAX_SECONDS:,} (about 23 days): {text!r}"
        )
    return value


def positive_seconds(text: str) -> float:
    """argparse ``type=`` for a timeout: as :func:`seconds`, but more than 0 (a timeout of 0
    would end every connect, wait or session at once; ncat refuses it too)."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"a timeout must be more than 0 seconds: {text!r}")
    return value


def _dump_file(text: str) -> str:
    """``--hex-dump FILE``: a host or address in FILE's place is a mistake (``--hex-dump
    127.0.0.1 80`` would write a file named 127.0.0.1 and, for listen, bind every interface)."""
    import ipaddress
    import os

    if not text:
        raise argparse.ArgumentTypeError("needs a FILE ('-' for stderr), not an empty name")
    if text != "-" and not os.path.exists(text):
        try:
            ipaddress.ip_address(text.strip("[]"))
            looks_like_host = True
        except ValueError:
            looks_like_host = text == "localhost"
        if looks_like_host:
            raise argparse.ArgumentTypeError(
                f"takes a FILE ('-' for stderr), and {text!r} looks like a host: "
                f"write --hex-dump - {text} ..."
            )
    return text


def multicast_group(text: str) -> str:
    """argparse ``type=`` for ``--multicast``: an IPv4 or IPv6 multicast address (an IPv6
    one may carry its interface as a scope, ``ff02::1%eth0``)."""
    import ipaddress

    try:
        address = ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an IP address: {text!r} (a multicast group is an address such as "
            "239.1.2.3 or ff15::1)"
        ) from None
    if not address.is_multicast:
        raise argparse.ArgumentTypeError(
            f"{text} is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)"
        )
    return text.strip("[]")


def _ttl(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 255:
        raise argparse.ArgumentTypeError(f"expected a TTL from 0 to 255: {text!r}")
    return int(text)


def add_multicast_arguments(parser: argparse.ArgumentParser, *, listening: bool) -> None:
    """``--multicast`` options, named after socat's ``ip-add-membership`` family (OpenBSD nc
    and ncat have none)."""
    group = parser.add_argument_group("UDP multicast (with -u)")
    if listening:
        group.add_argument(
            "--multicast",
            dest="multicast_group",
            type=multicast_group,
            metavar="GROUP",
            help="join the multicast GROUP and receive its datagrams to PORT; HOST defaults "
            "to GROUP (socat ip-add-membership) (default: no group)",
        )
        group.add_argument(
            "--multicast-source",
            dest="multicast_sources",
            action="append",
            metavar="ADDR",
            help="only ADDR's datagrams to GROUP, source-specific (RFC 4607; socat "
            "ip-add-source-membership); repeatable (default: every sender)",
        )
        group.add_argument(
            "--multicast-interface",
            metavar="IFACE",
            help="join on IFACE: a name (eth0), an index or a local address (default: the "
            "interface of the route to GROUP)",
        )
        return
    group.add_argument(
        "--multicast-ttl",
        type=_ttl,
        metavar="N",
        help="TTL (IPv6: hop limit) of datagrams to a multicast HOST (socat "
        "ip-multicast-ttl) (default 1: this link only)",
    )
    group.add_argument(
        "--multicast-interface",
        metavar="IFACE",
        help="send multicast datagrams out of IFACE: a name, an index or a local address "
        "(socat ip-multicast-if) (default: the route's)",
    )
    group.add_argument(
        "--multicast-loop",
        choices=["on", "off"],
        help="whether members on this host get our multicast datagrams too (socat "
        "ip-multicast-loop) (default on)",
    )


def tls_pin(text: str) -> str:
    """``SHA256:AB:CD:…`` (or the hex alone, with or without colons) -> ``AB:CD:…``."""
    value = text.strip()
    for prefix in ("SHA256:", "SHA-256:", "SHA256 ", "SHA-256 "):
        if value[: len(prefix)].upper() == prefix:
            value = value[len(prefix) :].strip()
            break
    digits = value.replace(":", "").upper()
    if len(digits) != 64 or any(c not in "0123456789ABCDEF" for c in digits):
        raise argparse.ArgumentTypeError(
            f"bad fingerprint {text!r}: expected 64 hex digits, AB:CD:... as listen --tls "
            "prints them (SHA256: before them is optional)"
        )
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer: {text!r}")
    return int(text)


def add_common_arguments(parser: argparse.ArgumentParser, *, listening: bool) -> None:
    add = parser.add_argument
    fam = parser.add_mutually_exclusive_group()
    fam.add_argument(
        "-4",
        dest="family",
        action="store_const",
        const=4,
        default=0,
        help="IPv4 only (default: both IPv4 and IPv6)",
    )
    fam.add_argument(
        "-6", dest="family", action="store_const", const=6, help="IPv6 only (default: both)"
    )
    add("-u", "--udp", action="store_true", help="UDP instead of TCP (default TCP)")
    add(
        "-U",
        "--unix",
        metavar="PATH",
        help="Unix socket at PATH instead of HOST PORT (stream; datagram with -u); "
        "@NAME is the abstract socket NAME (no file) (default: none, use HOST PORT)",
    )
    add(
        "-n",
        "--numeric",
        action="store_true",
        help="numeric addresses only: no DNS lookups (default: names are resolved)",
    )
    add(
        "-v",
        "--verbose",
        action="store_true",
        help="report connections, TLS and byte counts on stderr (default: only errors)",
    )
    add(
        "--json",
        action="store_true",
        help="report events as JSON lines on stderr, instead of -v lines (schema: socketkit "
        "help connect)",
    )
    add(
        "-w",
        "--wait",
        dest="connect_timeout",
        type=positive_seconds,
        metavar="SECS",
        help=(
            "connect (and TLS handshake) timeout (default: the OS's connect timeout, about 2 "
            "min; a TLS handshake 30 s); exit 5"
            if not listening
            else "TLS handshake timeout (default 30 s); exit 5"
        ),
    )
    add(
        "-i",
        "--idle-timeout",
        type=positive_seconds,
        metavar="SECS",
        help="give up after SECS without data in either direction, exit 5 (default: no limit)",
    )
    add(
        "-q",
        "--quit-after",
        type=seconds,
        metavar="SECS",
        help="after stdin's EOF, end the session SECS later even if the peer has not closed "
        "(default: wait for the peer; --eof-preset socat: 0.5)",
    )
    add(
        "-C",
        "--crlf",
        action="store_true",
        help="send LF line endings as CRLF (default: bytes unchanged)",
    )
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument(
        "--send-only",
        action="store_true",
        help="only send; received data is not read (default: both directions)",
    )
    direction.add_argument(
        "--recv-only",
        action="store_true",
        help="only receive; stdin is never read (default: both directions)",
    )
    add(
        "--on-stdin-eof",
        choices=["shutdown", "close", "keep"],
        help="what stdin's EOF does (default shutdown)",
    )
    add(
        "--on-peer-eof",
        choices=["exit", "stay"],
        help=f"what the peer's EOF does (default {'exit' if listening else 'stay'})",
    )
    add(
        "--eof-preset",
        choices=["nc", "ncat", "socat"],
        help="all EOF settings of another netcat at once (default nc: OpenBSD nc -N)",
    )
    add(
        "--hex-dump",
        type=_dump_file,
        metavar="FILE",
        help="hex dump of both directions ('>' sent, '<' received), appended to FILE; "
        "FILE '-' is stderr (as ncat -x FILE) (default: no dump)",
    )
    add(
        "-o",
        "--output",
        metavar="FILE",
        help="append the session's bytes (both directions) to FILE (default: no log)",
    )
    ex = parser.add_mutually_exclusive_group()
    ex.add_argument(
        "-e",
        "--exec",
        dest="exec_cmd",
        metavar="CMD",
        help="run CMD (split like a shell, no shell) with stdin/stdout on the connection "
        "(default: relay our stdin/stdout)",
    )
    ex.add_argument(
        "-c",
        "--sh-exec",
        metavar="CMD",
        help="run CMD with /bin/sh -c, its stdin/stdout on the connection (default: relay our "
        "stdin/stdout)",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument(
        "--tls",
        "--ssl",
        action="store_true",
        help="TLS over TCP or a Unix stream socket (default: plain)",
    )
    tls.add_argument(
        "--tls-cert",
        "--ssl-cert",
        metavar="PEM",
        help="certificate (chain) to present (default: "
        + ("an ephemeral self-signed one)" if listening else "none)"),
    )
    tls.add_argument(
        "--tls-key",
        "--ssl-key",
        metavar="PEM",
        help="private key of --tls-cert (default: read from the --tls-cert file)",
    )
    tls.add_argument(
        "--alpn",
        "--ssl-alpn",
        metavar="PROTO[,PROTO]",
        help="ALPN protocols, most preferred first (default: none offered)",
    )
    if listening:
        tls.add_argument(
            "--tls-client-ca",
            metavar="PEM",
            help="require client certificates from this CA, mTLS (default: none asked for)",
        )
    else:
        tls.add_argument(
            "--tls-ca",
            "--ssl-trustfile",
            metavar="PEM",
            help="trust these CAs instead of the system store (default: the system store)",
        )
        tls.add_argument(
            "--tls-insecure",
            action="store_true",
            help="do not verify the certificate or name (default: both verified)",
        )
        tls.add_argument(
            "--tls-pin",
            metavar="SHA256:HEX",
            type=tls_pin,
            help="trust only the certificate with this SHA-256 fingerprint (what listen --tls "
            "prints for its ephemeral one), instead of a CA and the name (default: none)",
        )
        tls.add_argument(
            "--sni",
            "--ssl-servername",
            metavar="NAME",
            help="server name to send and verify (default: HOST)",
        )
    add(
        "-s",
        "--source",
        metavar="ADDR",
        help=(
            "local address to listen on, as HOST (default: every address)"
            if listening
            else "source address to connect from (default: the OS picks)"
        ),
    )
    if not listening:
        add(
            "-p",
            "--source-port",
            type=int,
            metavar="PORT",
            help="source port to connect from (default: the OS picks)",
        )
    add("--force-copy", action="store_true", help=argparse.SUPPRESS)
    add_multicast_arguments(parser, listening=listening)


def build_options(
    args: argparse.Namespace, *, listening: bool, host: str | None, port: int
) -> NetcatOptions:
    """Turn parsed arguments into options. Raises ``argparse.ArgumentTypeError``-style
    :class:`ValueError` messages for combinations that make no sense."""
    if args.eof_preset:
        base = preset(args.eof_preset, listening=listening)
    else:
        base = EofPolicy("shutdown", "exit" if listening else "stay")
    policy = EofPolicy(
        args.on_stdin_eof or base.on_stdin_eof,
        args.on_peer_eof or base.on_peer_eof,
        args.quit_after if args.quit_after is not None else base.quit_after,
    )
    tls = None
    if args.tls:
        if args.udp:
            raise ValueError(
                "--tls works over TCP and Unix sockets, not UDP (DTLS is not supported)"
            )
        tls = TlsOptions(
            ca_file=getattr(args, "tls_ca", None),
            insecure=getattr(args, "tls_insecure", False),
            sni=getattr(args, "sni", None),
            alpn=tuple(p for p in (args.alpn or "").split(",") if p),
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            client_ca_file=getattr(args, "tls_client_ca", None),
            pin=getattr(args, "tls_pin", None),
        )
        if listening and tls.key_file and not tls.cert_file:
            raise ValueError("--tls-key needs --tls-cert")
        if tls.pin is not None and (tls.ca_file is not None or tls.insecure):
            raise ValueError(
                "--tls-pin says which certificate to trust: give it without --tls-ca or "
                "--tls-insecure"
            )
    elif (
        args.tls_cert
        or args.tls_key
        or args.alpn
        or getattr(args, "tls_ca", None)
        or getattr(args, "tls_pin", None)
        or getattr(args, "sni", None)
    ):
        raise ValueError("TLS options need --tls (or --ssl)")
    exec_argv = None
    if args.exec_cmd is not None:
        exec_argv = tuple(shlex.split(args.exec_cmd))
        if not exec_argv:
            raise ValueError("--exec needs a command")
    source_port = getattr(args, "source_port", None)
    if source_port is not None:
        check_port(source_port, "source port")
    unix_path = args.unix
    if unix_path in {"", "@"}:
        raise ValueError("-U needs a path, or @NAME for an abstract socket")
    if unix_path is not None and unix_path.startswith("@"):
        unix_path = "\0" + unix_path[1:]  # Linux abstract name (unix(7)); ./@x is a file
    if unix_path is not None and (getattr(args, "allow", None) or getattr(args, "deny", None)):
        # Ignoring them would admit every peer a user meant to filter (ncat refuses them too).
        raise ValueError(
            "--allow/--deny filter IP addresses, and Unix socket peers have none: limit who "
            "may connect with the socket file's permissions (or an abstract name's namespace)"
        )
    group = getattr(args, "multicast_group", None)
    sources = tuple(getattr(args, "multicast_sources", None) or ())
    ttl = getattr(args, "multicast_ttl", None)
    loop = getattr(args, "multicast_loop", None)
    interface = getattr(args, "multicast_interface", None)
    given = [
        name
        for name, value in (
            ("--multicast", group),
            ("--multicast-source", sources),
            ("--multicast-interface", interface),
            ("--multicast-ttl", ttl),
            ("--multicast-loop", loop),
        )
        if value is not None and value != ()
    ]
    if given and (not args.udp or unix_path is not None):
        raise ValueError(f"{given[0]} needs -u with HOST PORT: multicast is UDP over IP")
    if listening and (sources or interface) and group is None:
        raise ValueError(f"{given[0]} needs --multicast GROUP")
    if group is not None and args.family in (4, 6):
        group_family = 6 if ":" in group else 4
        if group_family != args.family:
            raise ValueError(
                f"--multicast {group} is an IPv{group_family} group, but -{args.family} asks "
                f"for IPv{args.family} only: drop -{args.family} or use an IPv{args.family} group"
            )
    if group is not None and host is None:
        host = group  # bound to the group: only its datagrams to PORT, not unicast ones
    return NetcatOptions(
        host=host,
        port=port,
        unix_path=unix_path,
        udp=args.udp,
        family=args.family,
        numeric=args.numeric,
        source_host=None if listening else args.source,
        source_port=source_port,
        connect_timeout=args.connect_timeout,
        idle_timeout=args.idle_timeout,
        policy=policy,
        send_only=args.send_only,
        recv_only=args.recv_only,
        crlf=args.crlf,
        hex_dump=args.hex_dump,
        output=args.output,
        keep_open=getattr(args, "keep_open", False),
        max_conns=getattr(args, "max_conns", DEFAULT_MAX_CONNS),
        max_per_source=getattr(args, "max_per_source", DEFAULT_MAX_PER_SOURCE),
        allow=tuple(getattr(args, "allow", None) or ()),
        deny=tuple(getattr(args, "deny", None) or ()),
        broker=getattr(args, "broker", False),
        chat=getattr(args, "chat", False),
        exec_argv=exec_argv,
        sh_exec=args.sh_exec,
        tls=tls,
        verbose=args.verbose,
        json=args.json,
        udp_session_idle=getattr(args, "udp_session_idle", 60.0),
        multicast_group=group,
        multicast_sources=sources,
        multicast_interface=interface,
        multicast_ttl=ttl,
        multicast_loop=None if loop is None else loop == "on",
        force_copy=args.force_copy,
    )
