"""Beyond iperf3: several tests at once on one server port, bounded by --max-tests."""

from __future__ import annotations

import subprocess
import threading
import time

from socketkit import AccessDenied
from socketkit.bench import BenchServer, run
from socketkit.bench.server import ServerTestReport
from support.procs import running

from .helpers import SK, free_port, run_json, wait_listening


def test_three_clients_at_once_each_get_their_own_results() -> None:
    reports: list[ServerTestReport] = []
    with BenchServer("127.0.0.1", 0, on_report=reports.append) as server:
        server.start()
        results = {}
        errors: list[BaseException] = []
        modes = {
            "tcp": {},
            "reverse": {"reverse": True},
            "udp": {"udp": True, "bandwidth": 20_000_000},
        }

        def client(name: str) -> None:
            try:
                results[name] = run(
                    "127.0.0.1", port=server.port, time=2, interval=0, **modes[name]
                )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client, args=(n,)) for n in modes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        # A client has its results before the server has heard its last message (IPERF_DONE)
        # and reported: wait for the reports before the server closes.
        deadline = time.monotonic() + 10
        while len(reports) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert set(results) == set(modes)
    # Each client's figures are its own test's: what it sent is what the server received
    # for that test (exact for TCP; UDP at 20 Mbit/s on loopback loses nothing).
    assert results["tcp"].sum_sent.bytes == results["tcp"].sum_received.bytes > 0
    assert results["reverse"].sum_sent.bytes == results["reverse"].sum_received.bytes > 0
    assert results["udp"].sum_received.lost_packets == 0
    assert 18e6 < results["udp"].sum_received.bits_per_second < 22e6
    assert len(reports) == 3 and all(not r.error for r in reports)
    server_bytes = sorted(sum(s.bytes for s in r.local.streams) for r in reports if r.local)
    client_bytes = sorted(
        r.sum_received.bytes if r.params.reverse else r.sum_sent.bytes for r in results.values()
    )
    assert server_bytes == client_bytes


def test_max_tests_bounds_concurrency_with_access_denied() -> None:
    port = free_port()
    argv = [*SK, "bench", "server", "-p", str(port), "--max-tests", "1"]
    with running(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as srv:
        wait_listening(port)
        first: dict[str, object] = {}

        def long_test() -> None:
            first["rc"] = run_json(
                [*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-t", "3", "-J"]
            )[0]

        t = threading.Thread(target=long_test)
        t.start()
        try:
            import time

            time.sleep(1.0)
            proc = subprocess.run(
                [*SK, "bench", "client", "127.0.0.1", "-p", str(port), "-t", "1"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert proc.returncode == 7, proc.stderr
            assert "busy" in proc.stderr
        finally:
            t.join(60)
        assert first["rc"] == 0
        srv.terminate()
        _, log = srv.communicate(timeout=10)
    assert b"refused a test from 127.0.0.1" in log


def test_library_raises_access_denied() -> None:
    with BenchServer("127.0.0.1", 0, max_tests=0) as server:
        server.start()
        try:
            run("127.0.0.1", port=server.port, time=1)
        except AccessDenied:
            pass
        else:
            raise AssertionError("expected AccessDenied")
