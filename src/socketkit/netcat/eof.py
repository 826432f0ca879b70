"""The end-of-file policy of a netcat session, as a small sans-I/O state machine.

A session has two directions: *up* (stdin -> peer) and *down* (peer -> stdout). Each ends
with an EOF: stdin's read returning ``b""``, or the peer's FIN. What a netcat does next is the
behaviour its users trip over most (nmap #894, #1413, #1779), so here it is
explicit: the relay reports events, the machine answers with actions, and nothing here does
I/O or reads a clock (the relay runs the quit timer).

Events are reported only once the direction is *drained*: every byte read before the EOF has
been written to the other side.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "PRESETS",
    "Action",
    "EofMachine",
    "EofPolicy",
    "OnPeerEof",
    "OnStdinEof",
    "preset",
]

OnStdinEof = Literal["shutdown", "close", "keep"]
OnPeerEof = Literal["exit", "stay"]


class Action(enum.Enum):
    """What the relay must do after an event."""

    #: shutdown(SHUT_WR): send our FIN, keep receiving.
    SHUTDOWN_WRITE = "shutdown-write"
    #: Stop reading stdin (whatever is still unread there is not sent).
    STOP_STDIN = "stop-stdin"
    #: Start the quit timer (``-q SECONDS``); report :meth:`EofMachine.quit_timer_expired`.
    ARM_QUIT_TIMER = "arm-quit-timer"
    #: The session is over: close the connection.
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class EofPolicy:
    """What to do at each EOF.

    Attributes:
        on_stdin_eof: ``shutdown`` sends a FIN and keeps receiving; ``close`` ends the session
            at once (unread peer data is discarded); ``keep`` leaves the connection open both
            ways (nc without ``-N``) and waits for the peer's EOF.
        on_peer_eof: ``exit`` ends the session when the peer's EOF has reached stdout, even if
            stdin is still open; ``stay`` keeps sending stdin to the half-closed peer and ends
            the session at stdin's EOF.
        quit_after: after stdin's EOF, end the session this many seconds later even if the
            peer has not closed (Debian nc ``-q``; socat ``-t``). ``None``: wait for the peer.
    """

    on_stdin_eof: OnStdinEof = "shutdown"
    on_peer_eof: OnPeerEof = "stay"
    quit_after: float | None = None

    def __post_init__(self) -> None:
        if self.on_stdin_eof not in ("shutdown", "close", "keep"):
            raise ValueError(f"on_stdin_eof must be shutdown, close or keep: {self.on_stdin_eof!r}")
        if self.on_peer_eof not in ("exit", "stay"):
            raise ValueError(f"on_peer_eof must be exit or stay: {self.on_peer_eof!r}")
        if self.quit_after is not None and self.quit_after < 0:
            raise ValueError(f"quit_after must be >= 0: {self.quit_after!r}")


#: Presets measured against the real programs (Debian nc.openbsd 1.219, ncat 7.93, socat
#: 1.7.4.4), for (connect, listen). See docs/connect.md for the table and how it was measured.
PRESETS: dict[str, tuple[EofPolicy, EofPolicy]] = {
    # nc -N: FIN at stdin EOF; a client keeps sending stdin after the server's FIN and exits at
    # stdin's EOF; a listener exits as soon as the client's FIN arrives.
    "nc": (EofPolicy("shutdown", "stay"), EofPolicy("shutdown", "exit")),
    # ncat: the same two observable rules (its own --recv-only quirk aside).
    "ncat": (EofPolicy("shutdown", "stay"), EofPolicy("shutdown", "exit")),
    # socat: FIN at either EOF, then at most -t 0.5 s for the other side, both modes.
    "socat": (EofPolicy("shutdown", "exit", 0.5), EofPolicy("shutdown", "exit", 0.5)),
}


def preset(name: str, *, listening: bool) -> EofPolicy:
    """The preset policy ``name`` (``nc``, ``ncat``, ``socat``) for connect or listen mode.

    Raises:
        KeyError: unknown preset name.
    """
    connect_policy, listen_policy = PRESETS[name]
    return listen_policy if listening else connect_policy


class EofMachine:
    """Tracks both directions of one session and answers each EOF with actions.

    Args:
        policy: the :class:`EofPolicy`.
        send_only: the peer direction is never read (``--send-only``): stdin's EOF ends the
            session once the policy's action is done.
        recv_only: stdin is never read (``--recv-only``): the session ends at the peer's EOF.
            Our side sends no FIN at start (a FIN would make some peers hang up).
    """

    def __init__(
        self, policy: EofPolicy, *, send_only: bool = False, recv_only: bool = False
    ) -> None:
        if send_only and recv_only:
            raise ValueError("send_only and recv_only exclude each other")
        self.policy = policy
        self.send_only = send_only
        self.recv_only = recv_only
        self.stdin_done = recv_only
        self.peer_done = False
        self.finished = False

    def _exit(self) -> list[Action]:
        self.finished = True
        return [Action.EXIT]

    def stdin_eof(self) -> list[Action]:
        """Stdin reached EOF and every byte of it was sent."""
        if self.finished or self.stdin_done:
            return []
        self.stdin_done = True
        mode = self.policy.on_stdin_eof
        if mode == "close":
            return self._exit()
        actions = [Action.SHUTDOWN_WRITE] if mode == "shutdown" else []
        if self.peer_done or self.send_only:
            return actions + self._exit()
        if self.policy.quit_after is not None:
            actions.append(Action.ARM_QUIT_TIMER)
        return actions

    def peer_eof(self) -> list[Action]:
        """The peer's EOF arrived and every byte before it was written to stdout."""
        if self.finished or self.peer_done:
            return []
        self.peer_done = True
        if self.stdin_done or self.recv_only:
            return self._exit()
        if self.policy.on_peer_eof == "exit":
            if self.policy.quit_after is not None:
                # socat -t: stdin keeps flowing for the grace period, then the session ends.
                return [Action.ARM_QUIT_TIMER]
            return [Action.STOP_STDIN, *self._exit()]
        return []

    def quit_timer_expired(self) -> list[Action]:
        """The timer armed by :attr:`Action.ARM_QUIT_TIMER` ran out."""
        if self.finished:
            return []
        return self._exit()
