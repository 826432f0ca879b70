"""UDP loss/order/jitter accounting (iperf3's rules) and the latency histogram."""

from __future__ import annotations

import random

from socketkit.bench.histogram import LatencyHistogram
from socketkit.proto.bench_udp import UdpReceiveStats, pack_header, unpack_header


def test_header_round_trip_32_and_64_bit() -> None:
    buf = bytearray(32)
    pack_header(buf, 0, 1700000000.25, 7, False)
    assert unpack_header(buf, 0, False) == (1700000000.25, 7)
    pack_header(buf, 8, 1.5, 2**40, True)
    assert unpack_header(buf, 8, True) == (1.5, 2**40)


def test_loss_and_reordering_like_iperf3() -> None:
    s = UdpReceiveStats()
    for seq in (1, 2, 4, 5, 3, 7):
        s.record(seq, 0.0, 0.0)
    # 3 arrived late (out of order, no longer lost); 6 is lost.
    assert (s.packet_count, s.errors, s.out_of_order, s.received) == (7, 1, 1, 6)


def test_duplicates_are_visible() -> None:
    s = UdpReceiveStats()
    for seq in (1, 2, 2, 3):
        s.record(seq, 0.0, 0.0)
    assert s.duplicates == 1 and s.packet_count == 3


def test_jitter_rfc1889() -> None:
    s = UdpReceiveStats()
    s.record(1, 0.0, 0.010)
    s.record(2, 0.0, 0.026)  # transit differs by 16 ms -> J = 1 ms
    assert abs(s.jitter - 0.001) < 1e-12


def test_record_run_matches_one_by_one() -> None:
    a, b = UdpReceiveStats(), UdpReceiveStats()
    a.record(1, 0.0, 0.0)
    b.record(1, 0.0, 0.0)
    assert a.record_run(5, 10, 0.0, 0.0)  # 2, 3, 4 lost
    for seq in range(5, 15):
        b.record(seq, 0.0, 0.0)
    assert (a.packet_count, a.errors, a.received) == (b.packet_count, b.errors, b.received)
    assert not a.record_run(3, 2, 0.0, 0.0)  # not a continuation: caller falls back


def test_histogram_percentiles_within_one_percent() -> None:
    h = LatencyHistogram()
    rng = random.Random(1)
    values = sorted(int(rng.lognormvariate(10, 1)) for _ in range(20000))
    for v in values:
        h.record(v)
    for pct in (50, 90, 99, 99.9):
        exact = values[min(len(values) - 1, int(len(values) * pct / 100))]
        assert abs(h.percentile(pct) - exact) <= exact * 0.01 + 1
    assert h.max == values[-1] and h.min == values[0]
    merged = LatencyHistogram().merge([h, h])
    assert merged.count == 2 * h.count and merged.percentile(50) == h.percentile(50)
