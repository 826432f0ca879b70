"""``socketkit bench`` on the command line: self-check, JSON schema, streams, plots, errors."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from socketkit import AddressError
from socketkit.bench.units import parse_rate, parse_size
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    argv = [*SK, "bench", "server", "-p", str(port)]
    with running(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        wait_listening(port)
        yield port


def _client(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SK, "bench", "client", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_units() -> None:
    assert parse_rate("50M") == 50_000_000 and parse_rate("1.5k") == 1500
    assert parse_size("128K") == 131072 and parse_size("2m") == 2 << 20
    with pytest.raises(AddressError):
        parse_rate("fast")


def test_self_check() -> None:
    proc = subprocess.run([*SK, "bench"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TCP, 1 stream" in proc.stdout and "UDP, 1400 B" in proc.stdout
    assert "p99" in proc.stdout and proc.stdout.rstrip().endswith("self-check: OK")


def test_json_has_iperf3_fields(port: int) -> None:
    rc, doc, err = run_json(
        [*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-t", "1.5", "-i", "0.5", "-J"]
    )
    assert rc == 0, err
    assert {"start", "intervals", "end"} <= set(doc)
    assert doc["start"]["test_start"]["protocol"] == "TCP"
    assert len(doc["intervals"]) >= 2
    assert doc["intervals"][0]["sum"]["bits_per_second"] > 0
    end = doc["end"]
    for key in ("sum_sent", "sum_received"):
        assert end[key]["bytes"] > 0 and end[key]["bits_per_second"] > 0
    assert end["streams"][0]["sender"]["bytes"] == end["sum_sent"]["bytes"]
    assert set(end["cpu_utilization_percent"]) >= {"host_total", "remote_total"}
    assert doc["socketkit"]["local_tcp_rtt_us"] > 0 and doc["socketkit"]["remote_tcp_rtt_us"] > 0


def test_udp_json_fields(port: int) -> None:
    rc, doc, err = run_json(
        [
            *SK,
            "bench",
            "client",
            "127.0.0.1",
            "-p",
            str(port),
            "-u",
            "-b",
            "20M",
            "-t",
            "1",
            "-J",
            "--no-gso",
        ]
    )
    assert rc == 0, err
    s = doc["end"]["streams"][0]["udp"]
    for key in (
        "bytes",
        "bits_per_second",
        "jitter_ms",
        "lost_packets",
        "lost_percent",
        "out_of_order",
        "packets",
    ):
        assert key in s
    assert doc["end"]["sum"]["lost_packets"] == 0
    assert doc["socketkit"]["kernel_drops"] == [0]


def test_json_stream_lines(port: int) -> None:
    proc = _client(port, "-t", "1", "-i", "0.25", "--json-stream")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("interval") >= 3
    assert events[-1]["data"]["sum_received"]["bytes"] > 0


def test_latency_percentiles(port: int) -> None:
    proc = _client(port, "--latency", "-l", "64", "-P", "2", "-t", "1", "-J")
    assert proc.returncode == 0, proc.stderr
    lat = json.loads(proc.stdout)["socketkit"]["latency"]
    assert lat["count"] > 100
    assert 0 < lat["p50_us"] <= lat["p90_us"] <= lat["p99_us"] <= lat["p99_9_us"] <= lat["max_us"]
    text = _client(port, "--latency", "-t", "0.5").stdout
    assert "p99.9" in text


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_plot(port: int, tmp_path: object, suffix: str) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / f"plot{suffix}"
    proc = _client(port, "-t", "1", "-i", "0.2", "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<polyline" in data


def test_zerocopy_sender(port: int) -> None:
    for extra in ([], ["-R"]):
        proc = _client(port, "-t", "0.5", "-Z", "-J", *extra)
        assert proc.returncode == 0, proc.stderr
        end = json.loads(proc.stdout)["end"]
        assert end["sum_sent"]["bytes"] == end["sum_received"]["bytes"] > 0


def test_plain_output_lines(port: int) -> None:
    proc = _client(port, "-t", "1", "-P", "2", "-i", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "[  1]" in proc.stdout and "[  3]" in proc.stdout and "[SUM]" in proc.stdout
    assert "sender" in proc.stdout and "receiver" in proc.stdout


def test_refused_and_usage_exit_codes() -> None:
    closed = free_port()
    proc = subprocess.run(
        [*SK, "bench", "client", "127.0.0.1", "-p", str(closed), "-t", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 4 and "refused" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    bad = subprocess.run(
        [*SK, "bench", "client", "127.0.0.1", "-P", "0"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2
    bad_rate = subprocess.run(
        [*SK, "bench", "client", "127.0.0.1", "-b", "fast"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad_rate.returncode == 2
    unknown = subprocess.run(
        [*SK, "bench", "client", "nosuchhost.invalid", "-t", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 3 and "resolve" in unknown.stderr
