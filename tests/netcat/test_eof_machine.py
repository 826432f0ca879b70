"""The EOF policy state machine, without sockets: every row of the docs' table."""

from __future__ import annotations

import pytest

from socketkit.netcat.eof import PRESETS, Action, EofMachine, EofPolicy, preset

SHUT, STOP, ARM, EXIT = (
    Action.SHUTDOWN_WRITE,
    Action.STOP_STDIN,
    Action.ARM_QUIT_TIMER,
    Action.EXIT,
)


@pytest.mark.parametrize(
    ("policy", "first", "actions_first", "actions_second"),
    [
        # stdin ends first
        (EofPolicy("shutdown", "stay"), "stdin", [SHUT], [EXIT]),
        (EofPolicy("shutdown", "exit"), "stdin", [SHUT], [EXIT]),
        (EofPolicy("close", "stay"), "stdin", [EXIT], []),
        (EofPolicy("keep", "stay"), "stdin", [], [EXIT]),
        (EofPolicy("shutdown", "stay", 0.5), "stdin", [SHUT, ARM], [EXIT]),
        # the peer ends first
        (EofPolicy("shutdown", "stay"), "peer", [], [SHUT, EXIT]),
        (EofPolicy("keep", "stay"), "peer", [], [EXIT]),
        (EofPolicy("shutdown", "exit"), "peer", [STOP, EXIT], []),
        (EofPolicy("shutdown", "exit", 0.5), "peer", [ARM], [SHUT, EXIT]),
    ],
)
def test_table(
    policy: EofPolicy, first: str, actions_first: list[Action], actions_second: list[Action]
) -> None:
    machine = EofMachine(policy)
    one, two = (machine.stdin_eof, machine.peer_eof)
    if first == "peer":
        one, two = two, one
    assert one() == actions_first
    assert two() == actions_second
    assert machine.finished


def test_quit_timer_ends_the_session() -> None:
    machine = EofMachine(EofPolicy("shutdown", "stay", 1.0))
    assert machine.stdin_eof() == [SHUT, ARM]
    assert not machine.finished
    assert machine.quit_timer_expired() == [EXIT]
    assert machine.finished
    assert machine.peer_eof() == []  # nothing after the end


def test_send_only_ends_at_stdin_eof() -> None:
    machine = EofMachine(EofPolicy("shutdown", "stay"), send_only=True)
    assert machine.stdin_eof() == [SHUT, EXIT]


def test_recv_only_never_shuts_down_and_ends_at_peer_eof() -> None:
    machine = EofMachine(EofPolicy("shutdown", "stay"), recv_only=True)
    assert machine.stdin_eof() == []  # stdin is not ours to end: no FIN at start
    assert machine.peer_eof() == [EXIT]


def test_events_are_idempotent() -> None:
    machine = EofMachine(EofPolicy())
    assert machine.stdin_eof() == [SHUT]
    assert machine.stdin_eof() == []


def test_presets() -> None:
    assert set(PRESETS) == {"nc", "ncat", "socat"}
    assert preset("nc", listening=False) == EofPolicy("shutdown", "stay")
    assert preset("nc", listening=True) == EofPolicy("shutdown", "exit")
    assert preset("socat", listening=False).quit_after == 0.5


def test_bad_policy_values() -> None:
    with pytest.raises(ValueError):
        EofPolicy("half", "stay")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EofPolicy("shutdown", "linger")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EofMachine(EofPolicy(), send_only=True, recv_only=True)
