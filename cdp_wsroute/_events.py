"""Small shared machinery: Playwright-style event emitters, change notification, deadlines."""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Generic, TypeVar

import trio

from ._errors import TimeoutError, UsageError

__all__ = [
    "DEFAULT_TIMEOUT",
    "Changes",
    "EventEmitter",
    "EventInfo",
    "deadline",
    "open_service_nursery",
    "timeout_seconds",
]

DEFAULT_TIMEOUT = 30.0
T = TypeVar("T")


def timeout_seconds(timeout: float | None) -> float:
    """A ``timeout=`` argument in seconds (None: the 30 s default; 0 stays 0, no limit).

    Raises:
        UsageError: a negative, NaN or non-numeric timeout.
    """
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise UsageError(f"timeout must be a number of seconds >= 0 (0: no limit), not {timeout!r}")
    return float(timeout)


@contextmanager
def deadline(timeout: float | None, what: str) -> Iterator[trio.CancelScope]:
    """Run the block within ``timeout`` seconds (None: the 30 s default; 0: no limit).

    Raises:
        TimeoutError: naming ``what`` was waited for.
    """
    seconds = timeout_seconds(timeout)
    limit = math.inf if seconds == 0 else seconds
    with trio.move_on_after(limit) as scope:
        yield scope
    if scope.cancelled_caught:
        raise TimeoutError(f"Timeout {seconds * 1000:.0f}ms exceeded while {what}")


class Changes:
    """Wakes everyone waiting for some state to change; they re-check their condition."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true; it is checked after every change."""
        while not predicate():
            await self._event.wait()


Listener = Callable[..., Any]


class EventEmitter:
    """``on`` / ``once`` / ``remove_listener`` as in Playwright.

    Sync listeners run inline, in order; async listeners are started as tasks in
    the owner's nursery. A listener's exception is not swallowed: it propagates
    out of the ``launch()``/``connect()`` block that owns the object.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._listener_nursery = nursery
        self._listeners: dict[str, list[tuple[Listener, bool]]] = {}

    def on(self, event: str, callback: Listener) -> None:
        """Call ``callback`` every time ``event`` happens."""
        self._listeners.setdefault(event, []).append((callback, False))

    def once(self, event: str, callback: Listener) -> None:
        """Call ``callback`` the next time ``event`` happens, then forget it."""
        self._listeners.setdefault(event, []).append((callback, True))

    def remove_listener(self, event: str, callback: Listener) -> None:
        """Stop calling ``callback`` for ``event`` (all registrations of it)."""
        listeners = self._listeners.get(event)
        if listeners:
            # == rather than `is`: a bound method is a new object at each access.
            listeners[:] = [entry for entry in listeners if entry[0] != callback]

    def _has_listeners(self, event: str) -> bool:
        return bool(self._listeners.get(event))

    def _emit(self, event: str, *args: Any) -> None:
        listeners = self._listeners.get(event)
        if not listeners:
            return
        for entry in tuple(listeners):
            callback, once = entry
            if once and entry in listeners:
                listeners.remove(entry)
            if inspect.iscoroutinefunction(callback):
                self._listener_nursery.start_soon(callback, *args)
            else:
                result = callback(*args)
                if inspect.isawaitable(result):
                    self._listener_nursery.start_soon(_await, result)


async def _await(awaitable: Any) -> None:
    await awaitable


class EventInfo(Generic[T]):
    """What ``async with x.expect_...() as info`` gives: ``await info.value`` for the result.

    The deadline runs from the start of the ``async with`` block.
    """

    def __init__(self, timeout: float | None, what: str) -> None:
        seconds = timeout_seconds(timeout)
        self._seconds = seconds
        self._deadline = math.inf if seconds == 0 else trio.current_time() + seconds
        self._what = what
        self._done = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._on_settled: list[Callable[[], None]] = []

    @property
    def is_done(self) -> bool:
        return self._done.is_set()

    def _set(self, value: T) -> None:
        if not self._done.is_set():
            self._value = value
            self._settle()

    def _fail(self, error: BaseException) -> None:
        if not self._done.is_set():
            self._error = error
            self._settle()

    def _settle(self) -> None:
        self._done.set()
        for callback in self._on_settled:
            callback()
        self._on_settled.clear()

    @property
    def value(self) -> Awaitable[T]:
        """Awaitable: the value, or the error (TimeoutError naming what was awaited)."""
        return self._wait()

    async def _wait(self) -> T:
        with trio.move_on_at(self._deadline):
            await self._done.wait()
        if not self._done.is_set():
            self._fail(TimeoutError(f"Timeout {self._seconds * 1000:.0f}ms exceeded while {self._what}"))
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@asynccontextmanager
async def open_service_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for background service tasks that the caller's cancellation does not reach.

    The tasks (a connection's reader and writer, say) keep running while a
    cancelled caller cleans up, shielded, through them; leaving the block cancels
    them explicitly. Without this, a cancelled ``async with launch()`` could not
    even send its own ``Browser.close``.
    """
    async with trio.open_nursery() as outer:

        async def host(task_status: trio.TaskStatus[tuple[trio.Nursery, trio.CancelScope]]) -> None:
            with trio.CancelScope(shield=True) as scope:
                async with trio.open_nursery() as inner:
                    task_status.started((inner, scope))
                    await trio.sleep_forever()

        inner, scope = await outer.start(host)
        try:
            yield inner
        finally:
            scope.cancel(reason="service nursery closing")
