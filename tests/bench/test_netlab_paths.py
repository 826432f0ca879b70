"""Over real paths between test namespaces: UDP loss against an nftables drop rule's own
counter, and TCP through a 10 Mbit/s token bucket against the rate and against iperf3."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from support.netlab import Host, Lab
from support.privilege import require_root, require_tool
from support.procs import running

from .helpers import SK

pytestmark = [pytest.mark.root, pytest.mark.slow]

PORT = "5201"
CLIENT, SERVER = "198.18.7.1", "198.18.7.2"


def _serve(host: Host, argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(host.cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_listening(host: Host) -> None:
    for _ in range(200):
        out = host.run(["ss", "-ltnH", f"sport = :{PORT}"], check=False).stdout
        if out.strip():
            return
        host.run(["sleep", "0.05"])
    raise AssertionError("server did not start")


def _client_json(host: Host, argv: list[str]) -> dict[str, object]:
    proc = host.run(argv, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_udp_loss_matches_nftables_counter() -> None:
    require_root()
    require_tool("nft")
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, b, f"{CLIENT}/24", f"{SERVER}/24", offloads=False)
        b.run(["nft", "add", "table", "inet", "imp"])
        b.run(["nft", "add chain inet imp in { type filter hook input priority 0; }"])
        # Data datagrams only (the 4-byte connect handshake is spared): 2 % at random.
        b.run(
            [
                "nft",
                f"add rule inet imp in ip saddr {CLIENT} udp dport {PORT} udp length > 100 "
                "numgen random mod 100 < 2 counter drop",
            ]
        )
        with running(b.cmd([*SK, "bench", "server", "-p", PORT, "-1"])):
            _wait_listening(b)
            doc = _client_json(
                a,
                [
                    *SK,
                    "bench",
                    "client",
                    SERVER,
                    "-p",
                    PORT,
                    "-u",
                    "-b",
                    "60M",
                    "-l",
                    "1400",
                    "-t",
                    "4",
                    "--no-gso",
                    "-J",
                ],
            )
        rules = b.run(["nft", "list", "chain", "inet", "imp", "in"]).stdout
    dropped = int(re.search(r"counter packets (\d+)", rules).group(1))  # type: ignore[union-attr]
    end = doc["end"]  # type: ignore[index]
    sent = end["sum"]["packets"]
    assert sent >= 20000, sent  # enough datagrams for a fair comparison
    rule_percent = 100.0 * dropped / sent
    reported = end["sum"]["lost_percent"]
    print(f"UDP: reported loss {reported:.3f} %, rule {rule_percent:.3f} % ({dropped}/{sent})")
    assert 1.0 < rule_percent < 3.0
    assert abs(reported - rule_percent) <= 0.5, (reported, rule_percent, dropped, sent)
    # Nothing was lost in the receiving kernel, so the application loss is all the rule's.
    assert doc["socketkit"]["kernel_drops"] == [0]  # type: ignore[index]


def test_tcp_through_tbf_10mbit_matches_rate_and_iperf3() -> None:
    require_root()
    iperf3 = require_tool("iperf3")
    with Lab() as lab:
        a, b = lab.host("a"), lab.host("b")
        ia, _ = lab.link(a, b, f"{CLIENT}/24", f"{SERVER}/24")
        a.run(
            [
                "tc",
                "qdisc",
                "add",
                "dev",
                ia,
                "root",
                "tbf",
                "rate",
                "10mbit",
                "burst",
                "32kbit",
                "latency",
                "400ms",
            ]
        )
        # Without TCP timestamps the 10 Mbit/s of frames carry 1460/1514 payload.
        for host in (a, b):
            host.sysctl("net.ipv4.tcp_timestamps", "0")
        with running(b.cmd([*SK, "bench", "server", "-p", PORT, "-1"])):
            _wait_listening(b)
            ours = _client_json(a, [*SK, "bench", "client", SERVER, "-p", PORT, "-t", "5", "-J"])
        with running(b.cmd([iperf3, "-s", "-1", "-p", PORT])):
            _wait_listening(b)
            theirs = _client_json(a, [iperf3, "-c", SERVER, "-p", PORT, "-t", "5", "-J"])
    mine = ours["end"]["sum_received"]["bits_per_second"]  # type: ignore[index]
    iperf = theirs["end"]["sum_received"]["bits_per_second"]  # type: ignore[index]
    print(f"TCP through tbf 10mbit: socketkit {mine / 1e6:.3f} Mbit/s, iperf3 {iperf / 1e6:.3f}")
    assert abs(mine - 10e6) <= 0.05 * 10e6, mine
    assert abs(mine - iperf) <= 0.05 * iperf, (mine, iperf)
