"""Multicast against a real peer: socat (Debian's socat 1.7.4) joins and sends, socketkit the
other side, between the namespaces of tests/udp/multicast_lab.py.

socat 1.7.4 joins IPv4 groups only (``ip-add-membership``; Debian's build refuses
``ip-add-source-membership`` as an unknown option); for IPv6 it is the sender
(``UDP6-DATAGRAM``, its interface fixed with ``so-bindtodevice``).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import pytest

import socketkit

from .multicast_lab import Net, inside, multicast_net

pytestmark = pytest.mark.timeout(60)

GROUP4, GROUP6 = "239.1.2.3", "ff1e::1:2:3"
PORT = 5000
#: How long a peer may take to start and join, polled every 20 ms.
READY_WITHIN = 10.0


@pytest.fixture
def net() -> Iterator[Net]:
    with multicast_net() as n:
        yield n


def _wait_joined(net: Net, group: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until r's interface is in ``group`` and a socket listens on ``port`` (socat is ready)."""
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"socat exited early: {proc.returncode}"
        groups = net.r.run(["ip", "maddr", "show", "dev", net.r_if]).stdout
        listening = net.r.run(["ss", "-Hlun", f"sport = :{port}"]).stdout
        if re.search(rf"\binet\s+{re.escape(group)}\b", groups) and listening.strip():
            return
        time.sleep(0.02)
    raise AssertionError(f"socat did not join {group} and bind port {port} in {READY_WITHIN} s")


def _socat_in(net: Net, *address: str) -> subprocess.Popen[bytes]:
    return net.r.popen(
        ["socat", "-u", *address, "STDOUT"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _stop(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    if proc.poll() is None:
        proc.terminate()
    out, err = proc.communicate(timeout=10)
    return out, err


def test_socat_receives_from_socketkit(net: Net) -> None:
    socat = _socat_in(net, f"UDP4-RECV:{PORT},ip-add-membership={GROUP4}:{net.r_if}")
    try:
        _wait_joined(net, GROUP4, PORT, socat)
        with inside(net.s):
            tx = socketkit.udp("198.18.1.1:0")
        with tx:
            tx.set_multicast(interface=net.s_to_r)
            for line in (b"alpha\n", b"beta\n", b"gamma\n"):
                tx.send(line, f"{GROUP4}:{PORT}")
            # socat writes each datagram as it comes; wait for all three, bounded.
            assert socat.stdout is not None
            got = b""
            while got.count(b"\n") < 3:
                chunk = socat.stdout.read1(4096)
                assert chunk, "socat closed its output early"
                got += chunk
    finally:
        out, err = _stop(socat)
    assert got + out == b"alpha\nbeta\ngamma\n", err


def _socat_send(net: Net, data: str, *address: str) -> None:
    done = net.s.run(["socat", "-u", "STDIN", ",".join(address)], input=data)
    assert done.returncode == 0, done.stderr


def test_socketkit_receives_from_socat_ipv4(net: Net) -> None:
    with inside(net.r):
        rx = socketkit.udp(f"{GROUP4}:{PORT}")
    with rx:
        rx.join(GROUP4, interface=net.r_if)
        _socat_send(
            net,
            "hello from socat",
            f"UDP4-DATAGRAM:{GROUP4}:{PORT}",
            "ip-multicast-if=198.18.1.1",
            "bind=198.18.1.1",
        )
        got = rx.receive(timeout=10)
    assert got.data == b"hello from socat"
    assert got.address[0] == "198.18.1.1"


def test_socketkit_receives_from_socat_ipv6(net: Net) -> None:
    with inside(net.r):
        rx = socketkit.udp(f"[{GROUP6}]:{PORT}")
    with rx:
        rx.join(GROUP6, interface=net.r_if)
        _socat_send(
            net,
            "hello over IPv6",
            f"UDP6-DATAGRAM:[{GROUP6}]:{PORT}",
            f"so-bindtodevice={net.s_to_r}",
            "bind=[fd00:5e:1::1]",
        )
        got = rx.receive(timeout=10)
    assert got.data == b"hello over IPv6"
    assert got.peer.startswith("[fd00:5e:1::1]:")
