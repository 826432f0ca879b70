"""UDP receive statistics (socketkit.proto.bench_udp): duplicates told apart from late
datagrams, exactly, while out-of-order stays what iperf3 counts."""

from __future__ import annotations

import random

from socketkit.proto.bench_udp import MAX_MISSING, UdpReceiveStats


def _feed(seqs: list[int]) -> UdpReceiveStats:
    s = UdpReceiveStats()
    for seq in seqs:
        s.record(seq, 0.0, 0.0)
    return s


def _iperf3(seqs: list[int]) -> tuple[int, int, int]:
    """iperf_udp_recv's counting: (packet_count, cnt_error, outoforder_packets)."""
    count = errors = ooo = 0
    for seq in seqs:
        if seq >= count + 1:
            if seq > count + 1:
                errors += seq - 1 - count
            count = seq
        else:
            ooo += 1
            if errors > 0:
                errors -= 1
    return count, errors, ooo


def test_a_duplicate_is_not_taken_back_from_the_lost() -> None:
    # 3 is lost, 2 came twice: one lost, one duplicate, no late datagram.
    s = _feed([1, 2, 2, 4, 5])
    assert (s.errors, s.duplicates, s.late, s.out_of_order) == (1, 1, 0, 1)
    assert s.unique == 4


def test_late_and_duplicate_told_apart() -> None:
    s = _feed([1, 3, 2, 2, 3])  # 2 late; then 2 and 3 again
    assert (s.errors, s.late, s.duplicates, s.out_of_order) == (0, 1, 2, 3)


def test_a_run_then_late_and_repeated_datagrams() -> None:
    s = UdpReceiveStats()
    assert s.record_run(1, 3, 0.0, 0.0)
    assert s.record_run(6, 2, 0.0, 0.0)  # 4 and 5 missing
    s.record(4, 0.0, 0.0)  # late
    s.record(4, 0.0, 0.0)  # again
    s.record(7, 0.0, 0.0)  # again
    assert (s.packet_count, s.errors, s.late, s.duplicates) == (7, 1, 1, 2)


def test_datagrams_lost_after_the_last_arrival() -> None:
    s = _feed([1, 2, 4])
    assert s.trailing(7) == 3  # 5, 6, 7: no later arrival shows the gap
    assert s.trailing(4) == 0
    assert s.trailing(0) == 0


def test_random_paths_against_a_model() -> None:
    """Loss, duplication and reordering at random: exact lost / duplicates / late against a
    set-based model; out-of-order equal to iperf3's count, datagram for datagram."""
    rng = random.Random(4)
    for _ in range(200):
        n = rng.randrange(1, 400)
        arrivals: list[tuple[float, int]] = []
        for seq in range(1, n + 1):
            if rng.random() < 0.1:
                continue
            t = seq + (rng.random() * 8 if rng.random() < 0.25 else 0)
            arrivals.append((t, seq))
            if rng.random() < 0.05:
                arrivals.append((t + rng.random() * 3, seq))
        seqs = [seq for _t, seq in sorted(arrivals)]
        s = _feed(seqs)
        seen: set[int] = set()
        late = dups = highest = 0
        for seq in seqs:
            if seq in seen:
                dups += 1
                continue
            late += seq < highest
            highest = max(highest, seq)
            seen.add(seq)
        assert s.duplicates == dups
        assert s.late == late
        assert s.errors + s.trailing(n) == n - len(seen)
        assert s.unique == len(seen)
        count, _errors, ooo = _iperf3(seqs)
        assert (s.packet_count, s.out_of_order) == (count, ooo)
        if not dups:  # without duplicates the lost count is iperf3's too
            assert s.errors == _errors


def test_memory_is_bounded_and_old_datagrams_fall_back_to_iperf3s_rule() -> None:
    s = _feed([1, 3 + 3 * MAX_MISSING])  # a huge gap: only the newest gaps are remembered
    assert s.missing_count <= MAX_MISSING
    s.record(2, 0.0, 0.0)  # too old to tell: late, as iperf3 counts it
    assert (s.out_of_order, s.duplicates, s.errors) == (1, 0, 1 + 3 * MAX_MISSING - 1)
    s.record(3 * MAX_MISSING, 0.0, 0.0)  # recent: a late arrival, known exactly
    s.record(3 * MAX_MISSING, 0.0, 0.0)  # and its duplicate
    assert (s.late, s.duplicates) == (2, 1)


def test_many_gaps_cost_time_linear_in_the_datagrams() -> None:
    """Remembering missing numbers costs O(1) per gap, not a rescan of the forgotten ones:
    800 gaps of 1,000 lost datagrams each (a bench -u -b 0 run that overruns its receiver) took
    80 s of CPU when the oldest were dropped one by one from the front of a dict. Counted in
    operations, not seconds: the work of the bookkeeping is what must stay linear."""
    s = UdpReceiveStats()
    seq = 1
    for _ in range(800):
        s.record_run(seq, 64, 0.0, 0.0)
        seq += 64 + 1000
    assert s.errors == 799 * 1000
    assert s.missing_count == MAX_MISSING
    assert s.missing_runs <= MAX_MISSING // 1000 + 2  # ranges, not one entry per number
    # the newest gap (before the last run) is still known exactly: a late arrival in it is
    # late, then a duplicate
    late = seq - 1064 - 500
    s.record(late, 0.0, 0.0)
    s.record(late, 0.0, 0.0)
    assert (s.late, s.duplicates, s.errors) == (1, 1, 799 * 1000 - 1)


def test_late_arrivals_split_and_shrink_the_missing_ranges() -> None:
    s = _feed([1, 10])  # 2..9 missing
    for seq in (5, 2, 9, 3, 4, 8, 6, 7):
        s.record(seq, 0.0, 0.0)
    assert (s.errors, s.missing_count, s.missing_runs, s.duplicates) == (0, 0, 0, 0)
    for seq in (5, 2, 9):
        s.record(seq, 0.0, 0.0)
    assert s.duplicates == 3
