"""``socketkit bench -s`` and ``socketkit bench -c HOST``, typed as iperf3 users type them,
against iperf3 itself on the other end."""

from __future__ import annotations

import subprocess

import pytest

from socketkit.cli.bench import rewrite_argv
from support.privilege import require_tool
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        (["-s"], ["server"]),
        (["-s", "-1", "-p", "5202"], ["server", "-1", "-p", "5202"]),
        (["-p", "5202", "-s"], ["server", "-p", "5202"]),
        (["-c", "h", "-R"], ["client", "h", "-R"]),
        (["-t", "3", "-c", "h"], ["client", "h", "-t", "3"]),
        (["-ch", "-u"], ["client", "h", "-u"]),
        (["--client=h"], ["client", "h"]),
        (["--client", "h", "-P", "2"], ["client", "h", "-P", "2"]),
        (["client", "h", "-C", "cubic"], ["client", "h", "-C", "cubic"]),  # left alone
        (["server", "-p", "1"], ["server", "-p", "1"]),
        ([], []),
    ],
)
def test_iperf3_spelling_means_the_subcommand(typed: list[str], meant: list[str]) -> None:
    assert rewrite_argv(typed) == meant


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "-c", "h"], "give one of -s (server) and -c HOST (client)"),
        (["-c"], "-c needs the server's HOST (-c HOST)"),
        (["-c", "-t", "1"], "-c needs the server's HOST (-c HOST)"),
    ],
)
def test_spelling_mistakes_are_usage_errors(args: list[str], message: str) -> None:
    proc = subprocess.run([*SK, "bench", *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"socketkit bench: {message}",
        "see 'socketkit bench --help'",
    ]


def test_bench_dash_s_serves_iperf3_dash_c() -> None:
    iperf3 = require_tool("iperf3")
    port = free_port()
    with running([*SK, "bench", "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL) as srv:
        wait_listening(port)
        status, doc, err = run_json([iperf3, "-c", "127.0.0.1", "-p", str(port), "-t", "1", "-J"])
        assert status == 0, err
        assert doc["end"]["sum_received"]["bytes"] > 0
        assert srv.wait(30) == 0  # -1: one test, then exit


def test_bench_dash_c_runs_against_iperf3_dash_s() -> None:
    iperf3 = require_tool("iperf3")
    port = free_port()
    with running([iperf3, "-s", "-1", "-p", str(port)], stdout=subprocess.DEVNULL):
        wait_listening(port)
        status, doc, err = run_json(
            [*SK, "bench", "-p", str(port), "-c127.0.0.1", "-t", "1", "-R", "-J"]
        )
    assert status == 0, err
    assert doc["start"]["test_start"]["reverse"] == 1
    assert doc["end"]["sum_received"]["bytes"] > 0
