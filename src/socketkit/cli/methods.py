"""``socketkit methods``: the socket tutorial's method table, generated from the code.

Every public method of Python's ``socket.socket`` and of socketkit's public API (the names
``socketkit`` and ``socketkit.aio`` export), each with its return value, its number of
parameters and a one-line description. Nothing is typed in by hand except the tiny
:data:`RETURNS_FALLBACK` table and :data:`SOCKET_DESCRIPTIONS` (``socket.socket``'s
descriptions in our words: CPython rewords its docstrings between versions, and the page must
be the same on every supported one):

* Python functions: :func:`inspect.signature` gives the parameters, the return annotation
  the return value, the docstring's first sentence the description.
* ``socket.socket``'s C methods have no signature object; their docstrings start with one
  (``recv(buffersize[, flags]) -> data``), which is parsed: names inside ``[...]`` are
  optional, the text after ``->`` is the return value, no ``->`` means ``None`` (CPython's
  docstring convention).

``python -m socketkit.cli.methods --write docs/reference.md`` regenerates the reference page.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import socket
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from itertools import zip_longest
from typing import Any

from .exit_codes import ExitStatus
from .outputs import cannot_write, check_writable

SUMMARY = "the socket method table: returns, parameters, purpose"
DESCRIPTION = """\
The socket tutorial's method table, filled in: every public method of Python's
socket.socket and of socketkit's public API, with its return value, number of parameters
and a one-line description, read from the code (signatures, annotations, docstrings; the
socket module's descriptions are socketkit's own, the same on every Python version)."""
EPILOG = """examples:
  socketkit methods
  socketkit methods --filter recv
  socketkit methods --markdown > table.md
  socketkit methods --json | jq '.[] | select(.name == "send_all")'

PARAMS counts parameters without self: '1-2' = 1 required, 2 in all; '+' = also *args/**kwargs.
exit codes: 0 ok (also when --filter matches nothing), 2 usage, 9 --write failed.
More: socketkit help methods (and socketkit help reference for the whole page)."""

#: Return values of ``socket.socket`` methods whose docstring names none although they return
#: something (checked against CPython 3.11's socketmodule.c and socket.py). Everything else
#: comes from the code.
RETURNS_FALLBACK: dict[str, str] = {
    "getblocking": "bool",
    "get_inheritable": "bool",
    "sendmsg_afalg": "count",
}

#: ``socket.socket``'s methods described in socketkit's own words. The docstrings of the C
#: methods change between Python versions (3.13 reworded ``makefile``), and the reference page
#: must be the same on every supported version; a method missing here (new in a later Python)
#: falls back to its docstring's first sentence.
SOCKET_DESCRIPTIONS: dict[str, str] = {
    "accept": "Wait for a client; a new connected socket and the client's address.",
    "bind": "Give the socket a local address (host, port) or a Unix path.",
    "close": "Release the socket; pending data may be discarded.",
    "connect": "Connect to a remote address; raises on failure.",
    "connect_ex": "Like connect, but returns the errno value instead of raising.",
    "detach": "Give up the file descriptor without closing it; returns it.",
    "dup": "A new socket object on a duplicate of the file descriptor.",
    "fileno": "The socket's file descriptor (-1 once closed).",
    "get_inheritable": "Whether the descriptor is inherited by child processes.",
    "getblocking": "True if the socket blocks (no timeout set and not non-blocking).",
    "getpeername": "The remote endpoint's address.",
    "getsockname": "The socket's own local address.",
    "getsockopt": "Read a socket option (an int, or bytes when a buffer length is given).",
    "gettimeout": "The timeout in seconds, or None when the socket blocks without one.",
    "listen": "Start accepting connections, with a backlog of waiting clients.",
    "makefile": "A file object (text or binary) that reads and writes the socket.",
    "recv": "Receive up to bufsize bytes; b'' means the peer closed its side.",
    "recv_into": "Receive into a caller's buffer; the number of bytes written.",
    "recvfrom": "Receive data and the sender's address (datagram sockets).",
    "recvfrom_into": "Receive into a buffer; the byte count and the sender's address.",
    "recvmsg": "Receive data, ancillary data (control messages) and flags.",
    "recvmsg_into": "Receive into several buffers, with ancillary data and flags.",
    "send": "Send some of the data; the number of bytes the kernel took.",
    "sendall": "Send all of the data, looping until every byte is taken.",
    "sendfile": "Send a file's contents with os.sendfile where possible; bytes sent.",
    "sendmsg": "Send data from several buffers with ancillary data (e.g. descriptors).",
    "sendmsg_afalg": "Send to a Linux kernel crypto (AF_ALG) socket, with its options.",
    "sendto": "Send a datagram to the given address.",
    "set_inheritable": "Set whether the descriptor is inherited by child processes.",
    "setblocking": "Make the socket blocking (True) or non-blocking (False).",
    "setsockopt": "Set a socket option.",
    "settimeout": "Set a timeout for blocking calls (None: block; 0: non-blocking).",
    "shutdown": "Shut down reading (SHUT_RD), writing (SHUT_WR) or both (SHUT_RDWR).",
}

#: Width the text table is laid out for.
WIDTH = 100
REFERENCE_COMMAND = "python -m socketkit.cli.methods --write docs/reference.md"


@dataclass(frozen=True)
class Row:
    """One method, function or property of the table."""

    owner: str
    name: str
    kind: str  # method | async method | property | function | async function
    returns: str
    min_params: int
    max_params: int
    varargs: bool
    description: str
    signature: str

    @property
    def params(self) -> str:
        if self.kind == "property":
            return "-"
        text = str(self.min_params)
        if self.max_params != self.min_params:
            text += f"-{self.max_params}"
        return text + ("+" if self.varargs else "")


# --- collecting --------------------------------------------------------------------------


def collect() -> list[Row]:
    """Every row: ``socket.socket`` first, then socketkit's functions and classes, then aio."""
    import socketkit
    from socketkit import aio

    rows = list(_class_rows(socket.socket, "socket.socket", c_docstrings=True))
    exports = {name: getattr(socketkit, name) for name in socketkit._EXPORTS}
    rows += _namespace_rows(exports, "socketkit")
    rows += _namespace_rows({name: getattr(aio, name) for name in aio.__all__}, "socketkit.aio")
    return rows


def _namespace_rows(names: dict[str, Any], prefix: str) -> list[Row]:
    rows: list[Row] = []
    classes: list[tuple[str, type]] = []
    for name in sorted(names):
        obj = names[name]
        if inspect.isclass(obj):
            if not issubclass(obj, BaseException):
                classes.append((name, obj))
        elif inspect.isfunction(obj):
            rows.append(_function_row(prefix, name, obj, method=False))
    for name, cls in classes:
        rows += _class_rows(cls, f"{prefix}.{name}", c_docstrings=False)
    return rows


def _class_rows(cls: type, owner: str, *, c_docstrings: bool) -> Iterator[Row]:
    seen: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        # socket.socket's methods live in socket.py and _socket; socketkit's own classes
        # show only what socketkit defines (not Enum's, tuple's or object's members).
        ours = klass.__module__.startswith("socketkit")
        if klass is not object and (c_docstrings or ours):
            seen.update(vars(klass))
    for name in sorted(seen):
        if name.startswith("_"):
            continue
        raw = seen[name]
        if isinstance(raw, property):
            if not c_docstrings:
                yield _property_row(owner, name, raw)
            continue
        if isinstance(raw, (staticmethod, classmethod)):
            yield _function_row(owner, name, raw.__func__, method=isinstance(raw, classmethod))
            continue
        func = getattr(cls, name, None)
        if func is None or not callable(func) or inspect.isclass(func):
            continue
        # A C fast path (socketkit._accel) documents the Python method it stands in front of.
        func = getattr(func, "__wrapped__", func)
        if inspect.isfunction(func):
            row = _function_row(owner, name, func, method=True)
            if c_docstrings:
                row = _with_docstring_returns(row, func)
        elif c_docstrings:
            row = _c_row(owner, name, func)
        else:
            continue
        if c_docstrings and name in SOCKET_DESCRIPTIONS:
            row = replace(row, description=SOCKET_DESCRIPTIONS[name])
        yield row


def _function_row(owner: str, name: str, func: Callable[..., Any], *, method: bool) -> Row:
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if method and params:
        params = params[1:]
    sig = sig.replace(parameters=params)
    plain = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    required = [p for p in plain if p.default is p.empty]
    returns = _annotation(sig.return_annotation)
    is_async = inspect.iscoroutinefunction(func)
    if returns.startswith("Awaitable[") and returns.endswith("]"):  # awaited like a coroutine
        is_async, returns = True, returns[len("Awaitable[") : -1]
    kind = ("async " if is_async else "") + ("method" if method else "function")
    return Row(
        owner=owner,
        name=name,
        kind=kind,
        returns=returns,
        min_params=len(required),
        max_params=len(plain),
        varargs=len(plain) != len(params),
        description=first_sentence(inspect.getdoc(func)),
        signature=f"{name}{_signature_text(sig)}",
    )


def _property_row(owner: str, name: str, prop: property) -> Row:
    getter = prop.fget
    returns = "?"
    if getter is not None:
        returns = _annotation(inspect.signature(getter).return_annotation)
    return Row(owner, name, "property", returns, 0, 0, False, first_sentence(prop.__doc__), name)


def _annotation(value: Any) -> str:
    if value is inspect.Signature.empty:
        return "?"
    if isinstance(value, str):
        return value
    return inspect.formatannotation(value)


def _signature_text(sig: inspect.Signature) -> str:
    """``(count, *, timeout)``: the parameter names and markers, without defaults or types."""
    parts: list[str] = []
    star_done = False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
            parts.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        else:
            parts.append(p.name if p.default is p.empty else f"{p.name}=…")
    return "(" + ", ".join(parts) + ")"


# --- socket.socket's C methods: parse the docstring ----------------------------------------

_DOC_SIG = re.compile(r"^(\w+)\(([^()]*)\)(?:\s*->\s*(.+))?$")


def _c_row(owner: str, name: str, func: Any) -> Row:
    doc = inspect.getdoc(func) or ""
    forms, rest = _doc_signatures(name, doc)
    if forms:
        counts = [_count_params(args) for _sig, args, _ret in forms]
        low, high = min(c[0] for c in counts), max(c[1] for c in counts)
        returns = next((ret for _sig, _args, ret in forms if ret), None)
        signature = " | ".join(sig for sig, _args, _ret in forms)
    else:
        low = high = 0
        returns = None
        signature = f"{name}(...)"
    returns = returns or RETURNS_FALLBACK.get(name, "None")
    return Row(owner, name, "method", returns, low, high, False, first_sentence(rest), signature)


def _with_docstring_returns(row: Row, func: Any) -> Row:
    """socket.py's Python methods are unannotated: take the return from the docstring."""
    forms, rest = _doc_signatures(row.name, inspect.getdoc(func) or "")
    returns = next((ret for _sig, _args, ret in forms if ret), None)
    if returns is None:
        returns = RETURNS_FALLBACK.get(row.name, "None" if forms else row.returns)
    description = first_sentence(rest) if forms else row.description
    if returns == "?":
        returns = "None"
    return Row(**{**asdict(row), "returns": returns, "description": description})


def _doc_signatures(name: str, doc: str) -> tuple[list[tuple[str, str, str | None]], str]:
    """The leading ``name(args) -> ret`` lines of a docstring, and the text after them."""
    lines = doc.splitlines()
    forms: list[tuple[str, str, str | None]] = []
    while lines:
        match = _DOC_SIG.match(lines[0].strip())
        if not match or match.group(1) != name:
            break
        forms.append((lines[0].strip(), match.group(2), match.group(3)))
        lines.pop(0)
    return forms, "\n".join(lines)


def _count_params(args: str) -> tuple[int, int]:
    """(required, total) for ``buffer, [nbytes[, flags]]`` or ``[msg], *, op[, iv]``."""
    if args.strip() in {"", "..."}:
        return (0, 0)
    required = total = 0
    depth = 0
    for token in re.findall(r"\[|\]|[A-Za-z_]\w*(?:\s*:\s*\w+)?(?:=\w+)?", args):
        if token == "[":
            depth += 1
        elif token == "]":
            depth -= 1
        else:
            total += 1
            required += depth == 0
    return (required, total)


# --- text helpers --------------------------------------------------------------------------

_ROLES = re.compile(r":(?:meth|func|class|attr|data|mod|exc):`~?([^`]+)`")


def first_sentence(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, reST roles turned into plain text."""
    if not doc:
        return "(no docstring)"
    paragraph = doc.strip().split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    text = _ROLES.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text).replace("``", "`")
    match = re.search(r"(?<!\be\.g)(?<!\bi\.e)\.(\s|$)", text)
    if match:
        text = text[: match.start() + 1]
    return text[:-1] if text.endswith("::") else text


def _matches(row: Row, word: str) -> bool:
    word = word.lower()
    return any(word in field.lower() for field in (row.owner, row.name, row.description))


def _groups(rows: Iterable[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.owner, []).append(row)
    return groups


def _owner_title(owner: str) -> str:
    if owner == "socket.socket":
        return "socket.socket (Python's socket module)"
    if owner == "socketkit":
        return "socketkit (functions)"
    if owner == "socketkit.aio":
        return "socketkit.aio (asyncio functions)"
    return owner


# --- output --------------------------------------------------------------------------------

_COLUMNS = (("METHOD", 21), ("RETURNS", 21), ("PARAMS", 6))


def render_text(rows: list[Row]) -> str:
    desc_width = WIDTH - 2 - sum(width + 1 for _title, width in _COLUMNS) - 1
    out: list[str] = []
    header = "  " + " ".join(f"{t:<{w}}" for t, w in _COLUMNS) + " DESCRIPTION"
    for owner, members in _groups(rows).items():
        out += ["", _owner_title(owner), header]
        for row in members:
            name = ("async " if row.kind.startswith("async") else "") + row.name
            if row.kind == "property":
                name += " (property)"
            cells = [
                textwrap.wrap(name, 21, break_on_hyphens=False) or [""],
                textwrap.wrap(row.returns, 21, break_on_hyphens=False) or [""],
                [row.params],
                textwrap.wrap(row.description, desc_width) or [""],
            ]
            for parts in zip_longest(*cells, fillvalue=""):
                line = "  " + " ".join(
                    f"{part:<{width}}" for part, (_t, width) in zip(parts, _COLUMNS, strict=False)
                )
                out.append(f"{line} {parts[3]}".rstrip())
    return "\n".join(out[1:]) + "\n" if out else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(rows: list[Row], *, title: bool = True) -> str:
    out: list[str] = []
    if title:
        out += [
            "# Reference: socket methods and the socketkit API",
            "",
            f"Generated from the code by `{REFERENCE_COMMAND}` (the same table as "
            "`socketkit methods --markdown`); do not edit by hand: `tests/seed/"
            "test_reference.py` fails when this page is out of date.",
            "",
            "**Params** counts parameters without `self`: `1-2` means 1 required and 2 in all, "
            "`+` that `*args`/`**kwargs` are accepted too. **Returns** is the return annotation "
            "(socketkit) or the docstring's `-> value` (the `socket` module's C methods; `None` "
            "when the docstring names no value).",
        ]
    for owner, members in _groups(rows).items():
        out += ["", f"## {_owner_title(owner)}", ""]
        out += ["| Method | Returns | Params | Description |", "|---|---|---|---|"]
        for row in members:
            name = f"`{row.name}`"
            if row.kind not in {"method", "function"}:
                name += f" ({row.kind})"
            out.append(
                f"| {name} | `{_cell(row.returns)}` | {row.params} | {_cell(row.description)} |"
            )
    return "\n".join(out).lstrip("\n") + "\n"


def render_json(rows: list[Row]) -> str:
    return json.dumps([{**asdict(row), "params": row.params} for row in rows], indent=1) + "\n"


# --- command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="Markdown tables")
    form.add_argument("--json", action="store_true", help="a JSON array, one object per row")
    parser.add_argument(
        "--filter", metavar="WORD", help="only rows whose owner, name or description has WORD"
    )
    parser.add_argument(
        "--write",
        metavar="FILE",
        help="write the reference page (the full Markdown, with its title) to FILE ('-': stdout)",
    )


def run(args: argparse.Namespace) -> int:
    if args.write is not None:
        check_writable(args.write)  # before the work: a wrong path costs nothing
    rows = collect()
    if args.filter:
        rows = [row for row in rows if _matches(row, args.filter)]
    if args.write == "-":
        sys.stdout.write(render_markdown(rows))
        return ExitStatus.OK
    if args.write is not None:
        text = render_markdown(rows)
        try:
            with open(args.write, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise cannot_write(args.write, exc) from exc
        print(f"wrote {len(rows)} rows to {args.write}", file=sys.stderr)
        return ExitStatus.OK
    if args.json:
        sys.stdout.write(render_json(rows))
    elif args.markdown:
        sys.stdout.write(render_markdown(rows, title=False))
    else:
        sys.stdout.write(render_text(rows))
    return ExitStatus.OK


if __name__ == "__main__":  # python -m socketkit.cli.methods --write docs/reference.md
    from .main import main as _cli_main

    raise SystemExit(_cli_main(["methods", *sys.argv[1:]]))
