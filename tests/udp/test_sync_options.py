"""Options and opening errors of socketkit.udp: broadcast, reuse_port, a privileged port, an
address that is not local; WriteTimeout.sent of send_many; the asyncio aclose."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

import socketkit
import socketkit.aio as skio
from seed._run import env
from support.privilege import require_root

from .test_aio import LOOPS, run

NOBODY = 65534
#: The loopback's broadcast address (Linux's local routing table): traffic stays on lo.
LOOPBACK_BROADCAST = "127.255.255.255"


def test_broadcast_needs_the_option() -> None:
    with socketkit.udp(":0", family=socket.AF_INET) as listener:
        port = listener.socket.getsockname()[1]
        with socketkit.udp("127.0.0.1:0") as plain:
            with pytest.raises(socketkit.PermissionDenied) as info:
                plain.send(b"x", f"{LOOPBACK_BROADCAST}:{port}")
            assert str(info.value) == (
                f"send ({LOOPBACK_BROADCAST}:{port}): permission denied: a broadcast address "
                "needs a socket opened with broadcast=True"
            )
        with socketkit.udp("127.0.0.1:0", broadcast=True) as sender:
            assert sender.send(b"to everyone", f"{LOOPBACK_BROADCAST}:{port}") == 11
            got = listener.receive(timeout=10)
            assert got.data == b"to everyone" and got.peer == sender.local


def test_reuse_port_spreads_senders_over_the_sockets() -> None:
    first = socketkit.udp("127.0.0.1:0", reuse_port=True)
    with first, socketkit.udp(first.local, reuse_port=True) as second:
        senders = [socketkit.udp(remote=first.local) for _ in range(24)]
        try:
            for n, sender in enumerate(senders):
                for k in range(3):
                    sender.send(b"%d.%d" % (n, k))
            got: dict[str, set[bytes]] = {"first": set(), "second": set()}
            for name, sock in (("first", first), ("second", second)):
                while True:
                    try:
                        got[name].add(sock.receive(timeout=0.3).data)
                    except socketkit.ReadTimeout:
                        break
        finally:
            for sender in senders:
                sender.close()
        every = {b"%d.%d" % (n, k) for n in range(24) for k in range(3)}
        assert got["first"] | got["second"] == every
        assert not got["first"] & got["second"]
        for received in got.values():  # all of one sender's datagrams went to one socket
            senders_seen = {d.split(b".")[0] for d in received}
            assert received == {s + b".%d" % k for s in senders_seen for k in range(3)}
        # 24 senders all hashed to one socket: 2 in 2**24
        assert got["first"] and got["second"]


def test_privileged_port_without_the_privilege() -> None:
    require_root()  # to become another user
    code = (
        "import socketkit\n"
        "try:\n"
        "    socketkit.udp('127.0.0.1:80')\n"
        "except socketkit.PermissionDenied as exc:\n"
        "    print(exc)\n"
    )
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            sys.executable, "-c", code]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, env=env(), cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "cannot bind to 127.0.0.1:80: permission denied (ports below 1024 need root or "
        "CAP_NET_BIND_SERVICE; pick a port >= 1024)\n"
    )


def test_address_not_of_this_machine() -> None:
    with pytest.raises(socketkit.AddressError) as info:
        socketkit.udp("198.51.100.7:0")  # TEST-NET-2 (RFC 5737): never local here
    assert str(info.value) == "cannot bind to 198.51.100.7:0: not an address of this machine"


def test_send_many_write_timeout_counts_datagrams(tmp_path: Path) -> None:
    """A Unix receiver that does not read: send_many stops at the full queue, and
    WriteTimeout.sent is how many of the items went (exactly those arrive)."""
    path = tmp_path / "full.sock"
    with socketkit.udp(f"unix:{path}") as server, socketkit.udp(remote=f"unix:{path}") as client:
        items = [b"%d" % n for n in range(500)]
        with pytest.raises(socketkit.WriteTimeout) as info:
            client.send_many(items, timeout=0.2)
        sent = info.value.sent
        assert 0 < sent < len(items)
        assert str(info.value) == f"send_many timed out after {sent} of 500 datagrams"
        assert [server.receive(timeout=10).data for _ in range(sent)] == items[:sent]
        with pytest.raises(socketkit.ReadTimeout):
            server.receive(timeout=0.1)


@pytest.mark.parametrize("loop", LOOPS)
def test_aio_aclose_and_fileno(loop: str) -> None:
    async def main() -> None:
        sock = await skio.udp("127.0.0.1:0")
        assert sock.fileno() == sock.socket.fileno() >= 0
        await sock.aclose()
        await sock.aclose()
        assert sock.closed and sock.fileno() == -1

    run(loop, main())


def test_sync_fileno_after_close() -> None:
    sock = socketkit.udp("127.0.0.1:0")
    assert sock.fileno() >= 0
    sock.close()
    assert sock.fileno() == -1
