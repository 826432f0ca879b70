"""``socketkit`` entry point: a table of subcommands, each imported only when used.

Every subcommand module has ``SUMMARY: str``, ``add_arguments(parser)`` and
``run(args) -> int``. Errors become one line on stderr and an exit status from
:mod:`socketkit.cli.exit_codes`; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from .exit_codes import ExitStatus, status_for

PROG = "socketkit"

#: subcommand -> (module, one-line summary). The summary is here so that ``--help`` imports
#: nothing else.
COMMANDS: dict[str, tuple[str, str]] = {
    "tour": ("socketkit.cli.tour", "walk the socket tutorial's flow on loopback, step by step"),
    "methods": ("socketkit.cli.methods", "the socket method table: returns, parameters, purpose"),
    "connect": ("socketkit.cli.connect", "connect to a TCP/UDP/Unix peer: stdin <-> socket"),
    "listen": ("socketkit.cli.listen", "listen for TCP/UDP/Unix peers: socket <-> stdout"),
    "sniff": ("socketkit.cli.sniff", "capture, filter, decode and save packets (like tcpdump)"),
    "ping": ("socketkit.cli.ping", "send ICMP echo requests (like ping)"),
    "traceroute": ("socketkit.cli.traceroute", "trace the route to a host (like traceroute)"),
    "bench": ("socketkit.cli.bench", "measure throughput, loss and latency (speaks iperf3)"),
    "tftp": ("socketkit.cli.tftp", "get and put files over TFTP, or serve a directory"),
    "help": ("socketkit.cli.help", "show a documentation page (cli, connect, sniff, design, ...)"),
}


def _version() -> str:
    from .. import __version__

    return __version__


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line, then where to read more.

    argparse prints the whole usage block before the message; a long block buries the one line
    that says what is wrong. Sub-parsers (``bench server``) are made of the same class.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # argparse reads "-1" as an option, not a value, once a parser has an option that looks
        # like a negative number (ping's -4 and -6): "-c -1" would say "expected one argument"
        # instead of what is wrong with -1. Registered options are matched before this check,
        # so -4 and -6 keep working.
        self._has_negative_number_optionals.clear()
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(
            ExitStatus.USAGE,
            f"{self.prog}: {' '.join(message.split())}\nsee '{self.prog} --help'\n",
        )


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<11} {summary}" for name, (_mod, summary) in COMMANDS.items()]
    parser = _Parser(
        prog=PROG,
        usage=f"{PROG} [--debug] [--version] COMMAND [ARGS...]",
        description="Sockets from the shell: TCP streams, UDP datagrams and raw packets.",
        epilog="commands:\n"
        + "\n".join(lines)
        + f"\n\nRun '{PROG} COMMAND --help' for a command's options, '{PROG} help' for the "
        f"documentation.\nExit codes ('{PROG} help cli'): 0 ok, 1 failure, 2 usage, "
        "3 resolve, 4 refused, 5 timeout, 6 TLS, 7 access denied, 8 permission, 9 I/O, "
        "10 protocol, 11 missing dependency, 70 internal, 130 interrupted, 141 stdout closed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and debug logging on errors"
    )
    parser.add_argument("command", metavar="COMMAND", choices=sorted(COMMANDS), nargs="?")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``socketkit`` command line with ``argv`` (default ``sys.argv[1:]``)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    split = _command_index(args_in)
    debug = "--debug" in args_in[:split] or bool(os.environ.get("SOCKETKIT_DEBUG"))
    top = _top_parser()
    ns = top.parse_args(args_in[: split + 1] if split < len(args_in) else args_in)
    if ns.command is None:
        sys.stderr.write(
            f"{PROG}: a command is needed: {', '.join(COMMANDS)}\nsee '{PROG} --help'\n"
        )
        return ExitStatus.USAGE
    module_name, summary = COMMANDS[ns.command]
    try:
        module = importlib.import_module(module_name)
        parser = _Parser(
            prog=f"{PROG} {ns.command}",
            description=getattr(module, "DESCRIPTION", summary),
            epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(parser)
        parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        rest = args_in[split + 1 :]
        rewrite = getattr(module, "rewrite_argv", None)  # another tool's spelling (bench -c)
        if rewrite is not None:
            rest = rewrite(rest)
        sub = parser.parse_args(rest)
        debug = debug or sub.debug
        sub.debug = debug
        return int(module.run(sub))
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # Our stdout went away (``socketkit sniff | head``): quiet, like the shell's SIGPIPE.
        _silence_stdout()
        return 141
    except Exception as exc:
        if debug:  # the traceback as well as the line; the exit status stays the documented one
            with contextlib.suppress(Exception):
                traceback.print_exc()
        _say(f"{PROG} {ns.command}: {_one_line(exc)}")
        status = status_for(exc)
        if status is ExitStatus.INTERNAL:
            _say(f"{PROG}: this is a bug; run with --debug for the traceback")
        return status


def _command_index(args: list[str]) -> int:
    """Index of the first argument that is not a top-level option (the subcommand)."""
    for index, arg in enumerate(args):
        if not arg.startswith("-"):
            return index
    return len(args)


def _say(line: str) -> None:
    """``line`` on stderr. A stderr that cannot be written (closed, a full disk) loses the
    line, not the exit status: it would otherwise turn every error into Python's exit 1."""
    if sys.stderr is None:  # started with fd 2 closed
        return
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        # What is still buffered cannot be written either; a stand-in keeps the interpreter's
        # own flush at exit from failing again (which would make the status 120).
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives until the process ends


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
