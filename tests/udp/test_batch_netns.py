"""Batched datagrams over real links between test namespaces (veth pairs).

What loopback cannot show: a path whose device cannot take GSO (no checksum offload: the
kernel answers a GSO message with EIO), a datagram over the link MTU (EINVAL for a GSO
segment; fragments for a plain one), and scoped IPv6 link-local senders (``fe80::1%eth0``).
Each peer is a Python process inside its namespace; every path is forced in turn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.netlab import Host, Lab
from support.procs import running

SRC = Path(__file__).resolve().parents[2] / "src"
PURE = bool(os.environ.get("SOCKETKIT_PURE"))
PATHS = ["ctypes", "plain"] if PURE else ["c", "ctypes", "plain"]
SK = [sys.executable, "-m", "socketkit"]

_COMMON = """
import json, select, socket, sys
from socketkit import _udp_batch as batch
path = sys.argv[1]
if path != "c":
    batch._c = None
batch.HAVE_MMSG = path != "plain"
"""

#: argv: path family bind-host; prints the port, then a JSON list of [data hex, address]
#: for the number of datagrams read from stdin's first line.
RECEIVER = (
    _COMMON
    + """
family = socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET
rx = socket.socket(family, socket.SOCK_DGRAM)
host = sys.argv[2]
if "%" in host:
    name, scope = host.split("%")
    rx.bind((name, 0, 0, socket.if_nametoindex(scope)))
else:
    rx.bind((host, 0))
print(rx.getsockname()[1], flush=True)
want = int(sys.stdin.readline())
got = []
while len(got) < want:
    if not select.select([rx], [], [], 20)[0]:
        break
    try:
        got += batch.receive_many(rx, 64, 65535)
    except BlockingIOError:
        pass
print(json.dumps([[d.data.hex(), list(d.address), d.truncated] for d in got]), flush=True)
"""
)

#: argv: path dest-host port sizes(comma) ; prints the sender's own address as JSON.
SENDER = (
    _COMMON
    + """
host, port = sys.argv[2], int(sys.argv[3])
sizes = [int(n) for n in sys.argv[4].split(",")]
if "%" in host:
    name, scope = host.split("%")
    dest = (name, port, 0, socket.if_nametoindex(scope))
    tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
else:
    dest = (host, port)
    tx = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
items = [bytes([n % 256]) * size for n, size in enumerate(sizes)]
sent = 0
while sent < len(items):
    try:
        sent += batch.send_many(tx, items[sent:], dest)
    except BlockingIOError:
        select.select([], [tx], [], 5)
print(json.dumps(list(tx.getsockname())), flush=True)
"""
)


def _python(host: Host, code: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    env = os.environ | {"PYTHONPATH": str(SRC)}
    return subprocess.Popen(
        host.cmd([sys.executable, "-c", code, *args]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=env, **kw,
    )  # type: ignore[call-overload,no-any-return]  # fmt: skip


def exchange(
    hosts: tuple[Host, Host], path: str, bind: str, dest: str, sizes: list[int]
) -> tuple[list[list[object]], list[object]]:
    """``hosts[1]`` receives while ``hosts[0]`` sends ``sizes``; (what was read, the sender's
    own address)."""
    a, b = hosts
    with _python(b, RECEIVER, path, bind) as rx:
        try:
            assert rx.stdout is not None and rx.stdin is not None and rx.stderr is not None
            port = rx.stdout.readline().strip()
            assert port, rx.stderr.read()
            rx.stdin.write(f"{len(sizes)}\n")
            rx.stdin.flush()
            with _python(a, SENDER, path, dest, port, ",".join(map(str, sizes))) as tx:
                out, err = tx.communicate(timeout=60)
            assert tx.returncode == 0, err
            got, rx_err = rx.communicate(timeout=60)
            assert rx.returncode == 0, rx_err
        finally:
            if rx.poll() is None:
                rx.kill()
    return json.loads(got), json.loads(out)


@pytest.mark.parametrize("path", PATHS)
def test_gso_over_a_device_without_checksum_offload(path: str) -> None:
    """No checksum offload on the link: a GSO message fails (EIO) and the run goes plainly;
    runs of one size, a shorter last one and datagrams over the MTU (fragmented) all arrive
    exactly."""
    sizes = [1000] * 20 + [300] + [1400] * 5 + [3000] * 4 + [1]
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b, "198.18.7.1/24", "198.18.7.2/24", offloads=False)
        got, sender = exchange((a, b), path, "198.18.7.2", "198.18.7.2", sizes)
    assert [(len(bytes.fromhex(d)), t) for d, _addr, t in got] == [(n, False) for n in sizes]
    assert [bytes.fromhex(d) for d, _a, _t in got] == [
        bytes([n % 256]) * size for n, size in enumerate(sizes)
    ]
    assert {tuple(addr) for _d, addr, _t in got} == {("198.18.7.1", sender[1])}


@pytest.mark.parametrize("path", PATHS)
def test_gso_segments_over_the_mtu_fall_back(path: str) -> None:
    """Datagrams longer than the link MTU cannot be GSO segments (EINVAL): they go plainly,
    as IP fragments, and arrive whole."""
    sizes = [2000] * 8 + [1200] * 8
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b, "198.18.8.1/24", "198.18.8.2/24")
        got, _sender = exchange((a, b), path, "198.18.8.2", "198.18.8.2", sizes)
    assert [bytes.fromhex(d) for d, _a, _t in got] == [
        bytes([n % 256]) * size for n, size in enumerate(sizes)
    ]


@pytest.mark.parametrize("path", PATHS)
def test_scoped_link_local_sender_is_named_like_recvfrom(path: str) -> None:
    """A link-local IPv6 sender comes back as recvfrom gives it: the address without a
    ``%iface`` suffix and the interface in scope_id (enough to send back to it)."""
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        ia, ib = lab.link(a, b, "fe80::a/64", "fe80::b/64")
        got, sender = exchange((a, b), path, f"fe80::b%{ib}", f"fe80::b%{ia}", [10, 10, 20])
        index = int(b.run(["cat", f"/sys/class/net/{ib}/ifindex"]).stdout)
    assert [len(bytes.fromhex(d)) for d, _a, _t in got] == [10, 10, 20]
    assert {tuple(addr) for _d, addr, _t in got} == {("fe80::a", sender[1], 0, index)}


def _wait_tcp_listening(host: Host, port: str) -> None:
    for _ in range(200):
        if host.run(["ss", "-ltnH", f"sport = :{port}"], check=False).stdout.strip():
            return
        host.run(["sleep", "0.05"])
    raise AssertionError("server did not start")


def test_bench_udp_longer_than_the_mtu_falls_back_from_gso() -> None:
    """socketkit bench -u -l 2000 over a 1500-byte MTU: the GSO sender (on by default when
    the server has GRO) is refused by the kernel, goes on with ordinary datagrams (IP
    fragments, as iperf3's), and every datagram arrives at its full length."""
    port = "5201"
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b, "198.18.9.1/24", "198.18.9.2/24")
        with running(
            b.cmd([*SK, "bench", "server", "-p", port, "-1"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ):  # fmt: skip
            _wait_tcp_listening(b, port)
            out = a.run(
                [*SK, "bench", "client", "198.18.9.2", "-p", port, "-u", "-b", "20M",
                 "-l", "2000", "-t", "1", "-J"],
                check=False, timeout=60,
            )  # fmt: skip
    assert (out.returncode, out.stderr) == (0, "")
    total = json.loads(out.stdout)["end"]["sum"]
    received = total["packets"] - total["lost_packets"]
    assert total["packets"] > 100
    assert json.loads(out.stdout)["end"]["sum_received"]["bytes"] == received * 2000
