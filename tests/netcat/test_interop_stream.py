"""100 MiB of random bytes between socketkit and the real nc.openbsd, ncat and socat, over
TCP/IPv4, TCP/IPv6 and Unix sockets, in both roles and both data directions; every program
must exit by itself (status 0) when the other side closes, as docs/connect.md documents."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.privilege import require_tool

from .nctools import LOOP, SK, finish, free_port, sha256_file, started, wait_bound

SIZE = 100 * 1024 * 1024
PEERS = ["nc.openbsd", "ncat", "socat"]
TRANSPORTS = ["tcp4", "tcp6", "unix"]


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("payload") / "random.bin"
    with path.open("wb") as fh:
        for _ in range(SIZE // (1 << 20)):
            fh.write(os.urandom(1 << 20))
    return path, sha256_file(path)


def _addr(prog: str, transport: str, where: str | int, *, server: bool) -> list[str]:
    """Address arguments for ``prog`` (socat gets a whole address string)."""
    if transport == "unix":
        assert isinstance(where, str)
        if prog == "socat":
            return [f"UNIX-LISTEN:{where}" if server else f"UNIX-CONNECT:{where}"]
        return ["-U", where]
    family = 6 if transport == "tcp6" else 4
    host = LOOP[family]
    if prog == "socat":
        if server:
            bind = f"[{host}]" if family == 6 else host
            return [f"TCP{family}-LISTEN:{where},bind={bind},reuseaddr"]
        shown = f"[{host}]" if family == 6 else host
        return [f"TCP{family}:{shown}:{where}"]
    return [f"-{family}", host, str(where)]


def command(
    prog: str, transport: str, where: str | int, *, server: bool, sender: bool
) -> list[str]:
    """The natural command line for each role (sender reads stdin; receiver writes stdout)."""
    addr = _addr(prog, transport, where, server=server)
    if prog == "socketkit":
        if server:
            # listen takes [HOST] PORT; -4/-6 are implied by the host.
            args = addr[1:] if addr[0] in ("-4", "-6") else addr
            return [*SK, "listen", *args]
        return [*SK, "connect", *([] if sender else ["--recv-only"]), *addr]
    if prog == "nc.openbsd":
        return ["nc.openbsd", *(["-l"] if server else []), "-N" if sender else "-d", *addr]
    if prog == "ncat":
        return [
            "ncat",
            *(["-l"] if server else []),
            "--send-only" if sender else "--recv-only",
            *addr,
        ]
    if prog == "socat":
        return ["socat", "-u", "-", *addr] if sender else ["socat", "-u", *addr, "-"]
    raise AssertionError(prog)


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize(
    "case", ["client-sends", "client-receives", "server-sends", "server-receives"]
)
def test_bulk_transfer(
    payload: tuple[Path, str], tmp_path: Path, transport: str, peer: str, case: str
) -> None:
    """``case`` is socketkit's role and what it does with the 100 MiB."""
    sk_role, flow = case.split("-")
    require_tool(peer)
    data, digest = payload
    where: str | int = (
        str(tmp_path / "sock")
        if transport == "unix"
        else free_port(family=6 if transport == "tcp6" else 4)
    )
    sk_sends = flow == "sends"
    server_prog = "socketkit" if sk_role == "server" else peer
    client_prog = peer if sk_role == "server" else "socketkit"
    server_sends = sk_sends == (sk_role == "server")
    out = tmp_path / "received.bin"
    server_argv = command(server_prog, transport, where, server=True, sender=server_sends)
    client_argv = command(client_prog, transport, where, server=False, sender=not server_sends)

    def io(sender: bool) -> dict[str, object]:
        if sender:
            return {"stdin": data.open("rb"), "stdout": subprocess.DEVNULL}
        # Receivers get a stdin that stays open (ncat 7.93 closes on its stdin's EOF).
        return {"stdin": subprocess.PIPE, "stdout": out.open("wb")}

    server_io = io(server_sends)
    client_io = io(not server_sends)
    with started(server_argv, stderr=subprocess.PIPE, **server_io) as server:
        wait_bound(where)
        with started(client_argv, stderr=subprocess.PIPE, **client_io) as client:
            client_rc = finish(client)
            server_rc = finish(server)
            client_err = client.stderr.read().decode() if client.stderr else ""
            server_err = server.stderr.read().decode() if server.stderr else ""
    for handle in (*server_io.values(), *client_io.values()):
        if hasattr(handle, "close"):
            handle.close()  # type: ignore[union-attr]
    assert (client_rc, server_rc) == (0, 0), (client_err, server_err)
    assert out.stat().st_size == SIZE
    assert sha256_file(out) == digest
