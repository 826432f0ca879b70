"""``socketkit tour``: every step printed with real values that agree with each other."""

from __future__ import annotations

import re
from typing import Any

import pytest

from support.privilege import require_root

from ._run import json_lines, socketkit_cli

NOBODY = 65534


def _steps(records: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    return [r for r in records if r["part"] == part and r["kind"] == "step"]


def _step(steps: list[dict[str, Any]], side: str, call: str) -> list[dict[str, Any]]:
    return [s for s in steps if s["side"] == side and s["call"].startswith(call)]


@pytest.fixture(scope="module", params=["127.0.0.1", "::1"])
def tour(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    proc = socketkit_cli("tour", "--json", "--host", request.param)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return json_lines(proc.stdout)


def test_tcp_steps_agree(tour: list[dict[str, Any]]) -> None:
    tcp = _steps(tour, "tcp")
    calls = [s["call"].split("(")[0] for s in tcp]
    for name in ("socket", "bind", "listen", "connect", "accept", "send", "recv", "shutdown"):
        assert name in calls
    assert calls.count("close") == 3  # accepted socket, client, listening socket
    assert [s["step"] for s in tcp] == list(range(1, len(tcp) + 1))
    port = _step(tcp, "server", "bind")[0]["values"]["port"]
    assert port > 0
    connect = _step(tcp, "client", "connect")[0]
    assert connect["values"]["port"] == port
    assert f", {port}))" in connect["call"]
    accept = _step(tcp, "server", "accept")[0]
    assert accept["values"]["peer_port"] == connect["values"]["local_port"]
    fds = [s["values"]["fd"] for s in tcp if "fd" in s["values"]]
    assert len(set(fds)) == 3  # listening, client and accepted sockets are three sockets
    sent = sum(s["values"]["bytes"] for s in _step(tcp, "client", "send("))
    received = [s for s in _step(tcp, "server", "recv(") if s["values"]["bytes"]]
    assert sum(s["values"]["bytes"] for s in received) == sent == 14
    assert "".join(s["values"]["data"] for s in received) == "Hello, server!"
    reply = _step(tcp, "server", "send(")[0]["values"]
    back = [s for s in _step(tcp, "client", "recv(") if s["values"]["bytes"]]
    assert sum(s["values"]["bytes"] for s in back) == reply["bytes"]
    assert "".join(s["values"]["data"] for s in back) == reply["data"]
    eofs = [s for s in tcp if s["call"].startswith("recv(") and s["values"]["bytes"] == 0]
    assert [s["side"] for s in eofs] == ["server", "client"]


def test_socketkit_line_is_a_real_exchange(tour: list[dict[str, Any]]) -> None:
    (line,) = [r for r in tour if r["kind"] == "socketkit" and r["part"] == "tcp"]
    assert line["data"] == "Hello, server!" and line["bytes"] == 14
    assert re.search(r":\d+$", line["address"]) and not line["address"].endswith(":0")


def test_udp_keeps_boundaries_and_truncates(tour: list[dict[str, Any]]) -> None:
    udp = _steps(tour, "udp")
    port = _step(udp, "server", "bind")[0]["values"]["port"]
    sent = [s["values"]["bytes"] for s in _step(udp, "client", "sendto(")]
    assert sent == [4, 12, 1000, 2000]
    assert all(f":{port})" in s["call"] for s in _step(udp, "client", "sendto("))
    got = _step(udp, "server", "recvfrom(")
    assert [s["values"]["bytes"] for s in got] == sent[:3]
    client_port = _step(udp, "client", "getsockname")[0]["values"]["port"]
    assert {s["values"]["from_port"] for s in got} == {client_port}
    pong = _step(udp, "client", "recvfrom(")[0]["values"]
    assert pong == {"bytes": 4, "from_port": port}
    trunc = _step(udp, "server", "recvmsg(")[0]
    assert trunc["values"] == {"bytes": 512, "truncated": True, "lost": 1488}
    assert "MSG_TRUNC" in trunc["result"]
    assert "BlockingIOError" in _step(udp, "server", "recv(")[0]["result"]


def test_capture_shows_the_handshake_data_and_fins(tour: list[dict[str, Any]]) -> None:
    require_root()
    port = _step(_steps(tour, "tcp"), "server", "bind")[0]["values"]["port"]
    client = _step(_steps(tour, "tcp"), "client", "connect")[0]["values"]["local_port"]
    packets = [r for r in tour if r["part"] == "capture" and r["kind"] == "packet"]
    labels = [p["label"] for p in packets]
    assert labels[:3] == ["SYN", "SYN-ACK", "ACK"]
    assert labels.count("FIN") == 2
    assert labels[-1] == "ACK"
    assert {"data 7", "data 30"} <= set(labels)
    for p in packets:
        assert {p["src_port"], p["dst_port"]} == {port, client}
        assert f".{port}" in p["summary"]
    assert packets[0]["direction"] == "client->server"
    assert packets[1]["direction"] == "server->client"
    assert not [r for r in tour if r.get("kind") == "hint"]


def test_text_output_is_readable() -> None:
    proc = socketkit_cli("tour", "--no-color")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b[" not in out
    bind = re.search(r"bind\(\('127\.0\.0\.1', 0\)\)\s+-> bound to 127\.0\.0\.1:(\d+)", out)
    assert bind, out
    port = bind.group(1)
    assert re.search(rf"connect\(\('127\.0\.0\.1', {port}\)\)\s+-> None \(connected from", out)
    assert re.search(r"^\s+\d+\s+server\s+accept\(\)\s+-> fd \d+, peer 127\.0\.0\.1:\d+", out, re.M)
    assert "b'Hello, server!' (14 bytes)" in out
    assert "512 bytes, msg_flags MSG_TRUNC" in out
    long_lines = [line for line in out.splitlines() if len(line) > 100]
    assert not long_lines


def test_without_privilege_prints_one_hint_and_goes_on() -> None:
    require_root()  # to become another user
    proc = socketkit_cli("tour", "--no-color", user=NOBODY)
    assert proc.returncode == 0, proc.stderr
    hints = [line for line in proc.stdout.splitlines() if "CAP_NET_RAW" in line]
    assert len(hints) == 1
    assert hints[0].strip() == (
        "(no packet capture: it needs CAP_NET_RAW; run as root: sudo socketkit tour; "
        "other ways: socketkit help tutorial)"
    )
    assert "setcap" not in proc.stdout  # never advise a capability on the system python3
    assert "SYN-ACK" not in proc.stdout
    assert "msg_flags MSG_TRUNC" in proc.stdout  # the UDP part still ran
    records = json_lines(socketkit_cli("tour", "--json", user=NOBODY).stdout)
    (hint,) = [r for r in records if r["kind"] == "hint"]
    assert hint["skipped"] is True
    assert len(_steps(records, "tcp")) >= 17


def test_cap_net_raw_alone_is_enough_for_the_capture() -> None:
    """What the hint promises: a non-root process with CAP_NET_RAW sees the packets."""
    require_root()  # to become another user
    proc = socketkit_cli("tour", "--json", user=NOBODY, caps="+net_raw")
    assert proc.returncode == 0, proc.stderr
    records = json_lines(proc.stdout)
    labels = [r["label"] for r in records if r["kind"] == "packet"]
    assert labels[:2] == ["SYN", "SYN-ACK"] and labels.count("FIN") == 2
    assert not [r for r in records if r["kind"] == "hint"]
