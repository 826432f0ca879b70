"""Run a connection's handler coroutine without an ``asyncio.Task``: the protocol resumes it.

Why: with a Task, every message costs a future, a done-callback, a ``call_soon`` and a task
step before the handler sees its bytes; a Task also holds about 450 bytes per idle connection
(itself plus its entry in asyncio's all-tasks set). Here the protocol that receives the bytes
resumes the handler on the spot (``coro.send``), the way ``data_received`` runs in a bare
``asyncio.Protocol`` server (``docs/design.md``; ``benchmarks/bench_echo.py``,
``bench_idle_memory.py``).

What stays as with a Task, so handlers are ordinary asyncio code:

* ``asyncio.current_task()`` inside the handler returns the :class:`HandlerDriver`, which has
  the Task methods asyncio's own helpers use (``cancel``/``cancelling``/``uncancel`` for
  ``asyncio.timeout`` and ``TaskGroup``, ``done``/``result``/``exception``, done-callbacks,
  names). It is not an ``asyncio.Task`` instance and is not in ``asyncio.all_tasks()``.
* Each handler runs in its own copy of the context (``contextvars`` do not leak between
  connections).
* Awaiting anything else (sleep, locks, other tasks, executors) works as in a Task: the driver
  waits on that future with a done-callback. Only the stream's own reads skip it: a
  ``receive_some`` awaited by the handler itself yields :data:`DRIVEN` (no future at all) and
  the protocol sends the bytes straight in (:meth:`HandlerDriver.send`); other reads wait on a
  future the protocol completes and then resumes (:meth:`HandlerDriver.resume`).
* Cancellation follows Task semantics: the future being awaited is cancelled, or the
  ``CancelledError`` is thrown in at the next suspension.
"""

from __future__ import annotations

import asyncio
import contextvars
from asyncio import tasks as _tasks
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

__all__ = ["DRIVEN", "RUNNING", "HandlerDriver"]

# asyncio's own bookkeeping for current_task() (C functions; any object is accepted).
_enter_task: Callable[[asyncio.AbstractEventLoop, object], None] = _tasks._enter_task  # type: ignore[assignment]
_leave_task: Callable[[asyncio.AbstractEventLoop, object], None] = _tasks._leave_task  # type: ignore[assignment]
_PENDING, _FINISHED, _CANCELLED = 0, 1, 2
#: The context our own loop callbacks run in. Never the handler's: a step enters that one
#: itself, and a context cannot be entered twice.
_OUTSIDE = contextvars.Context()


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: Yielded by a handler's own ``receive_some`` (and kept as the protocol's read waiter) while
#: it waits: the protocol then calls :meth:`HandlerDriver.send` with the bytes.
DRIVEN = _Marker("driven read")
#: ``HandlerDriver._waiting`` while the handler runs (reads may then use DRIVEN).
RUNNING = _Marker("running")
#: ... while a step is scheduled with ``call_soon``.
_SOON = _Marker("step scheduled")


class _Extra:
    __slots__ = ("callbacks", "cancel_message", "cancels")

    def __init__(self) -> None:
        self.callbacks: list[tuple[Callable[[Any], object], contextvars.Context]] = []
        self.cancels = 0
        self.cancel_message: str | None = None


class _Owner(Protocol):
    """The protocol the driver belongs to: it completes ``_read_waiter`` and resumes us, and
    hears when the handler has finished."""

    _read_waiter: object

    def cancel_driven_read(self) -> None: ...

    def handler_done(self, driver: HandlerDriver) -> None: ...


class HandlerDriver:
    """One handler coroutine, resumed directly by its connection's protocol."""

    __slots__ = (
        "_context",
        "_coro",
        "_extra",
        "_loop",
        "_must_cancel",
        "_outcome",
        "_owner",
        "_state",
        "_waiting",
    )

    name = "socketkit.aio handler"

    def __init__(
        self,
        coro: Coroutine[Any, Any, object],
        owner: _Owner,
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
    ) -> None:
        self._coro = coro
        self._owner = owner
        self._loop = loop
        self._context = context
        self._state = _PENDING
        # What the handler waits on: a future, DRIVEN, or RUNNING/_SOON/None (see above).
        self._waiting: object = None
        self._outcome: Any = None  # the result, or the exception
        self._must_cancel = False
        # Done-callbacks, cancel counts and message: rare, so kept out of the idle footprint.
        self._extra: _Extra | None = None

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the handler up to its first suspension (now, or soon if a task is running)."""
        self._step(None, None)

    def send(self, value: object) -> None:
        """The handler waits on :data:`DRIVEN`: continue it with ``value``."""
        self._step(value, None)

    def throw(self, exc: BaseException) -> None:
        """The handler waits on :data:`DRIVEN`: raise ``exc`` in it."""
        self._step(None, exc)

    def resume(self, waiter: object) -> None:
        """The owner completed ``waiter``: continue the handler if it is waiting on it."""
        if self._waiting is waiter:
            self._step(None, None)

    def _wakeup(self, future: asyncio.Future[Any]) -> None:
        if self._waiting is future:
            self._step(None, None)

    def _later(self, exc: BaseException | None) -> None:
        self._waiting = _SOON
        self._loop.call_soon(self._step, None, exc, context=_OUTSIDE)

    def _step(self, value: object, exc: BaseException | None) -> None:
        if self._state != _PENDING:
            return
        loop = self._loop
        try:
            _enter_task(loop, self)
        except RuntimeError:  # inside another task's step: go round the loop once
            if value is not None:  # bytes the protocol handed over: deliver them next
                loop.call_soon(self._step, value, exc, context=_OUTSIDE)
            else:
                if self._waiting is DRIVEN:
                    self._owner.cancel_driven_read()
                self._later(exc)
            return
        if value is None and self._waiting is DRIVEN:
            # Resumed by something other than the protocol's delivery (a scheduled cancel):
            # the protocol must stop sending bytes into this wait.
            self._owner.cancel_driven_read()
        self._waiting = RUNNING
        if self._must_cancel:
            self._must_cancel = False
            exc = asyncio.CancelledError(self._message())
        end, outcome, raised = _PENDING, None, False
        try:
            if exc is None:
                yielded = self._context.run(self._coro.send, value)
            else:
                yielded = self._context.run(self._coro.throw, exc)
        except StopIteration as stop:
            end, outcome = _FINISHED, stop.value
        except asyncio.CancelledError as cancelled:
            end, outcome, raised = _CANCELLED, cancelled, True
        except BaseException as error:
            end, outcome, raised = _FINISHED, error, True
        else:
            if yielded is DRIVEN and not self._must_cancel:
                self._waiting = DRIVEN
            else:
                self._suspend(yielded)
        finally:
            _leave_task(loop, self)
        if end != _PENDING:
            self._conclude(end, outcome, raised)

    def _conclude(self, state: int, outcome: Any, raised: bool) -> None:
        """The handler returned ``outcome`` or raised it (``raised``); ``state`` says which end.
        A KeyboardInterrupt or SystemExit goes on up, as out of a Task."""
        self._state, self._outcome = state, outcome
        self._waiting = None
        self._finished()
        if raised and isinstance(outcome, (KeyboardInterrupt, SystemExit)):
            raise outcome

    def _suspend(self, yielded: Any) -> None:
        if yielded is DRIVEN:  # a cancel arrived while the handler ran
            self._must_cancel = False
            self._owner.cancel_driven_read()
            self._later(asyncio.CancelledError(self._message()))
            return
        blocking = getattr(yielded, "_asyncio_future_blocking", None)
        if blocking:
            future: asyncio.Future[Any] = yielded
            future._asyncio_future_blocking = False
            self._waiting = future
            own = future is self._owner._read_waiter  # completed by the owner, who resumes us
            if not own:
                future.add_done_callback(self._wakeup, context=_OUTSIDE)
            if self._must_cancel and future.cancel(msg=self._message()):
                self._must_cancel = False
                if own:
                    self._loop.call_soon(self.resume, future, context=_OUTSIDE)
        elif yielded is None:  # a bare yield (asyncio.sleep(0)): run again next iteration
            self._later(None)
        else:
            self._later(
                RuntimeError(
                    f"bad yield {yielded!r}: await futures or awaitables, not raw yields"
                    if blocking is None
                    else f"yield was used instead of yield from in the handler: {yielded!r}"
                )
            )

    def _finished(self) -> None:
        self._coro = None  # type: ignore[assignment]  # drop the frame now
        self._owner.handler_done(self)
        callbacks = self._extra.callbacks if self._extra is not None else ()
        for callback, ctx in callbacks:
            self._loop.call_soon(callback, self, context=ctx)

    # -- the Task surface asyncio's helpers use ----------------------------------------------

    def cancel(self, msg: str | None = None) -> bool:
        """Request cancellation, as ``Task.cancel``."""
        if self._state != _PENDING:
            return False
        self._more().cancels += 1
        waiter = self._waiting
        if waiter is DRIVEN:
            self._owner.cancel_driven_read()
            self._later(asyncio.CancelledError(msg))
            return True
        if isinstance(waiter, asyncio.Future) and waiter.cancel(msg=msg):
            if waiter is self._owner._read_waiter:  # no callback on it: wake ourselves
                self._loop.call_soon(self.resume, waiter, context=_OUTSIDE)
            return True
        self._must_cancel = True
        self._more().cancel_message = msg
        return True

    def cancelling(self) -> int:
        return 0 if self._extra is None else self._extra.cancels

    def uncancel(self) -> int:
        extra = self._extra
        if extra is None:
            return 0
        if extra.cancels > 0:
            extra.cancels -= 1
        return extra.cancels

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def result(self) -> Any:
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the handler is still running")
        if self._state == _CANCELLED or isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def exception(self) -> BaseException | None:
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the handler is still running")
        if self._state == _CANCELLED:
            raise self._outcome
        return self._outcome if isinstance(self._outcome, BaseException) else None

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        ctx = contextvars.copy_context() if context is None else context
        if self._state != _PENDING:
            self._loop.call_soon(fn, self, context=ctx)
            return
        self._more().callbacks.append((fn, ctx))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        if self._extra is None:
            return 0
        kept = [(f, c) for f, c in self._extra.callbacks if f != fn]
        removed = len(self._extra.callbacks) - len(kept)
        self._extra.callbacks = kept
        return removed

    def _more(self) -> _Extra:
        if self._extra is None:
            self._extra = _Extra()
        return self._extra

    def _message(self) -> str | None:
        return None if self._extra is None else self._extra.cancel_message

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def get_coro(self) -> Coroutine[Any, Any, object] | None:
        return self._coro

    def get_context(self) -> contextvars.Context:
        return self._context

    def get_name(self) -> str:
        return self.name

    def set_name(self, value: object) -> None:
        pass  # one shared name: formatting a name per connection costs memory

    def __repr__(self) -> str:
        state = ("pending", "done", "cancelled")[self._state]
        return f"<HandlerDriver {state} coro={self._coro!r}>"
