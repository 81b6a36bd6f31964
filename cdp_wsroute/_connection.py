"""The CDP connection: the only place JSON-RPC is spoken.

Theory of operation
-------------------
One :class:`CDPConnection` per browser connection, with exactly two tasks in the
nursery of :func:`open_connection`:

* the **reader** takes whole messages off the transport, resolves the pending
  command a response answers (by ``id``), and hands events to the
  :class:`CDPSession` named by their flat ``sessionId`` (the browser's own
  session has none);
* the **writer** drains the queue of outgoing commands, writing everything
  queued in one go. Callers never write themselves, so a caller cancelled in the
  middle of a command can never leave half a message on the wire.

A session delivers an event two ways. Callbacks registered with
:meth:`CDPSession.on` run inline in the reader, in protocol order, get the raw
``params`` dict and must not block; the library's own bookkeeping uses them.
Listeners opened with :meth:`CDPSession.listen` get typed PyCDP events (or a
:class:`RawEvent` when PyCDP cannot parse one) through a bounded channel; a full
channel makes the reader wait (backpressure), so no event is ever dropped, and a
listener that stops reading stalls the connection until it leaves.

When ``Target.attachedToTarget`` arrives the child session exists before any of
its own messages can; when ``Target.detachedFromTarget`` arrives its pending
commands fail with TargetClosedError and its listeners' channels end. When the
transport ends, every pending command of every session fails at once with
ConnectionClosedError, and so does every later command.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import cdp.util
import trio

from ._errors import ConnectionClosedError, ProtocolError, TargetClosedError, UsageError
from ._events import open_service_nursery
from ._transport import Transport, TransportClosed

__all__ = ["CDPConnection", "CDPSession", "RawEvent", "open_connection"]

logger = logging.getLogger("cdp_wsroute.cdp")

T = TypeVar("T")
JSON = dict[str, Any]
EventCallback = Callable[[JSON], None]


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event PyCDP has no type for, or could not parse (newer protocol than PyCDP 0.4.0)."""

    method: str
    params: JSON
    session_id: str | None = None


def _event_method(kind: type | str) -> str:
    if isinstance(kind, str):
        return kind
    for method, cls in cdp.util._event_parsers.items():
        if cls is kind:
            return str(method)
    raise TypeError(f"{kind!r} is not a PyCDP event class")


def parse_event(method: str, params: JSON, session_id: str | None = None) -> object:
    """Parse an event into its PyCDP type, or a RawEvent if PyCDP cannot."""
    cls = cdp.util._event_parsers.get(method)
    if cls is not None:
        try:
            return cls.from_json(params)
        except Exception:  # drifted enums, missing fields: the protocol moved on
            logger.debug("PyCDP could not parse %s; delivering it raw", method, exc_info=True)
    return RawEvent(method, params, session_id)


class RawParams:
    """Command parameters that are JSON text already (an object, UTF-8, in pieces), sent as they are.

    For the library's own big commands, whose text it can build around their bulk
    without the scan and the copies of ``json.dumps`` (see ``_codec.batch_expression``).
    """

    __slots__ = ("parts",)

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    def __repr__(self) -> str:
        return f"RawParams({sum(map(len, self.parts))} bytes)"


def _serialise(message: JSON) -> str | bytes:
    """A command as JSON text the transport can send (checked here, in the caller's call).

    Raises:
        UsageError: a string in it is not valid Unicode (a lone surrogate).
    """
    params = message.get("params")
    if isinstance(params, RawParams):  # one join, the only copy of its bulk
        head = json.dumps({k: v for k, v in message.items() if k != "params"}, separators=(",", ":"))
        return b"".join([head[:-1].encode(), b',"params":', *params.parts, b"}"])
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    if not data.isascii():
        try:
            data.encode()
        except UnicodeEncodeError:
            raise UsageError(f"{message.get('method')}: a string in the parameters has a lone surrogate") from None
    return data


class _Pending:
    __slots__ = ("done", "error", "method", "on_reply", "result", "session_id")

    def __init__(self, method: str, session_id: str | None, on_reply: Callable[[], None] | None = None) -> None:
        self.method = method
        self.session_id = session_id
        self.done = trio.Event()
        self.result: JSON = {}
        self.error: Exception | None = None
        self.on_reply = on_reply  # for send_nowait: called once the answer (or a failure) is in

    def finish(self) -> None:
        self.done.set()
        if self.on_reply is not None:
            on_reply, self.on_reply = self.on_reply, None
            on_reply()


class _Listener:
    __slots__ = ("methods", "send_channel")

    def __init__(self, methods: frozenset[str] | None, send_channel: trio.MemorySendChannel[object]) -> None:
        self.methods = methods
        self.send_channel = send_channel


class CDPSession:
    """One attached target (or the browser itself, with ``session_id`` None).

    Attributes:
        session_id: the flat session id, None for the browser session.
        target_info: the ``targetInfo`` of ``Target.attachedToTarget`` (empty for the browser).
    """

    def __init__(self, connection: CDPConnection, session_id: str | None, target_info: JSON | None = None) -> None:
        self.connection = connection
        self.session_id = session_id
        self.target_info: JSON = target_info or {}
        self.closed_reason: str | None = None
        self._callbacks: dict[str, list[EventCallback]] = {}
        self._listeners: list[_Listener] = []

    def __repr__(self) -> str:
        kind = self.target_info.get("type", "browser")
        return f"<CDPSession {kind} {self.session_id or ''}>"

    @property
    def target_type(self) -> str:
        return str(self.target_info.get("type", "browser"))

    @property
    def target_id(self) -> str:
        return str(self.target_info.get("targetId", ""))

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    async def send(self, method: str, params: JSON | None = None) -> JSON:
        """Send a raw CDP command and return its ``result``.

        Raises:
            ProtocolError: the browser answered with an error.
            TargetClosedError: the session detached before the answer.
            ConnectionClosedError: the connection to the browser is gone.
        """
        return await self.connection.send(method, params, self.session_id)

    async def execute(self, command: Generator[JSON, JSON, T]) -> T:
        """Run a typed PyCDP command, e.g. ``await session.execute(cdp.page.navigate(url))``."""
        request = next(command)
        result = await self.send(request["method"], request.get("params"))
        try:
            command.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        raise RuntimeError(f"PyCDP command {request['method']} did not finish")  # pragma: no cover

    def on(self, method: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(params)`` inline in the reader for each ``method`` event.

        Returns a function that removes the callback. The callback must not block;
        an exception it raises ends the connection and propagates out of its owner.
        """
        callbacks = self._callbacks.setdefault(method, [])
        callbacks.append(callback)

        def remove() -> None:
            try:
                callbacks.remove(callback)
            except ValueError:
                pass

        return remove

    @asynccontextmanager
    async def listen(
        self, *events: type | str, buffer_size: int = 256
    ) -> AsyncIterator[trio.MemoryReceiveChannel[object]]:
        """Receive typed events (all of them when none are named) through a bounded channel.

        Events PyCDP cannot parse arrive as :class:`RawEvent`. The channel ends when
        the session detaches or the connection closes. While the channel is full
        the reader waits for you: read promptly, or leave the block.
        """
        methods = frozenset(_event_method(e) for e in events) if events else None
        send_channel, receive_channel = trio.open_memory_channel[object](buffer_size)
        listener = _Listener(methods, send_channel)
        if self.closed:
            send_channel.close()
        else:
            self._listeners.append(listener)
        try:
            async with receive_channel:
                yield receive_channel
        finally:
            if listener in self._listeners:
                self._listeners.remove(listener)
            send_channel.close()

    async def detach(self) -> None:
        """Detach from the target; the session's pending commands then fail."""
        if self.session_id is None or self.closed:
            return
        try:
            await self.connection.root.send("Target.detachFromTarget", {"sessionId": self.session_id})
        except (ProtocolError, TargetClosedError):
            pass

    async def _dispatch(self, method: str, params: JSON) -> None:
        callbacks = self._callbacks.get(method)
        if callbacks:
            for callback in tuple(callbacks):
                callback(params)
        if self._listeners:
            event: object = None
            for listener in tuple(self._listeners):
                if listener.methods is not None and method not in listener.methods:
                    continue
                if event is None:
                    event = parse_event(method, params, self.session_id)
                try:
                    await listener.send_channel.send(event)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    if listener in self._listeners:
                        self._listeners.remove(listener)

    def _close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        for listener in self._listeners:
            listener.send_channel.close()
        self._listeners.clear()


class CDPConnection:
    """A multiplexed CDP connection; see the module docstring for how it works."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._outgoing: list[str | bytes] = []
        self._writing = False  # the writer task is in transport.send()
        self._wake_writer = trio.Event()
        self._sessions: dict[str, CDPSession] = {}
        self.root = CDPSession(self, None)
        self.closed_reason: str | None = None
        self.closed_event = trio.Event()

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def session(self, session_id: str) -> CDPSession | None:
        """The attached session with this id, if it is still attached."""
        return self._sessions.get(session_id)

    async def send(self, method: str, params: JSON | None = None, session_id: str | None = None) -> JSON:
        """Send a command on a session (None: the browser) and wait for its result."""
        if self.closed_reason is not None:
            raise ConnectionClosedError(f"{method}: {self.closed_reason}")
        if session_id is not None:
            session = self._sessions.get(session_id)
            if session is None:
                raise TargetClosedError(f"{method}: the target has detached")
        msg_id = next(self._ids)
        message: JSON = {"id": msg_id, "method": method}
        if params:
            message["params"] = params
        if session_id is not None:
            message["sessionId"] = session_id
        data = _serialise(message)
        pending = _Pending(method, session_id)
        self._pending[msg_id] = pending
        self._queue(data)
        try:
            await pending.done.wait()
        finally:
            self._pending.pop(msg_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def send_nowait(
        self,
        method: str,
        params: JSON | RawParams | None = None,
        session_id: str | None = None,
        on_reply: Callable[[], None] | None = None,
    ) -> None:
        """Queue a command whose answer nobody waits for (an error answer is logged).

        ``on_reply`` is called (inline, in the reader) when the answer arrives or the
        command fails with its session or the connection; never if the connection is
        closed already.
        """
        if self.closed_reason is not None:
            return
        msg_id = next(self._ids)
        message: JSON = {"id": msg_id, "method": method}
        if params:
            message["params"] = params
        if session_id is not None:
            message["sessionId"] = session_id
        data = _serialise(message)
        if on_reply is not None:
            self._pending[msg_id] = _Pending(method, session_id, on_reply)
        self._queue(data)

    def _queue(self, data: str | bytes) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("SEND %s", data[:1000])
        # Straight to the transport when nothing is queued or being written before it.
        if not self._outgoing and not self._writing and self._transport.send_now(data):
            if self._transport.has_backlog:
                self._wake_writer.set()
            return
        self._outgoing.append(data)
        self._wake_writer.set()

    async def _writer(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer = trio.Event()
            if self.closed_reason is not None:
                return
            batch, self._outgoing = self._outgoing, []
            self._writing = True
            try:
                await self._transport.send(batch)
            except TransportClosed as exc:
                self._close(str(exc))
                return
            finally:
                self._writing = False

    async def _reader(self) -> None:
        transport = self._transport
        while True:
            try:
                data = await transport.receive()
            except TransportClosed as exc:
                self._close(str(exc))
                return
            try:
                message = json.loads(data)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except (ValueError, RecursionError):
                logger.warning("dropping a CDP message that is not a JSON object: %.200r", data)
                continue
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("RECV %.1000s", data)
            msg_id = message.get("id")
            if msg_id is not None:
                self._resolve(msg_id, message)
            else:
                await self._event(message)

    def _resolve(self, msg_id: object, message: JSON) -> None:
        pending = self._pending.pop(msg_id, None) if isinstance(msg_id, int) else None
        error = message.get("error")
        if pending is None or pending.on_reply is not None:
            if error is not None:
                logger.debug("unawaited command %s failed: %s", msg_id, error)
            if pending is not None:
                pending.finish()
            return
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            if isinstance(error, dict) and error.get("data"):
                text = f"{text} ({error['data']})"
            pending.error = ProtocolError(pending.method, code if type(code) is int else 0, str(text))
        else:
            result = message.get("result")
            pending.result = result if isinstance(result, dict) else {}
        pending.finish()

    async def _event(self, message: JSON) -> None:
        method = message.get("method")
        params = message.get("params")
        if not isinstance(method, str):
            return
        if not isinstance(params, dict):
            params = {}
        session_id = message.get("sessionId")
        session = self.root if session_id is None else self._sessions.get(session_id)
        if session is None:
            logger.debug("event %s for unknown session %s dropped", method, session_id)
            return
        if method == "Target.attachedToTarget":
            child_id = params.get("sessionId")
            if isinstance(child_id, str):
                self._sessions[child_id] = CDPSession(self, child_id, params.get("targetInfo"))
        await session._dispatch(method, params)
        if method == "Target.detachedFromTarget":
            child_id = params.get("sessionId")
            child = self._sessions.pop(child_id, None) if isinstance(child_id, str) else None
            if child is not None:
                self._close_session(child, "the target detached")

    def _close_session(self, session: CDPSession, reason: str) -> None:
        session._close(reason)
        self.fail_pending(session, reason)

    def fail_pending(self, session: CDPSession, reason: str) -> None:
        """Fail the session's unanswered commands with TargetClosedError (its target crashed or left)."""
        for msg_id, pending in list(self._pending.items()):
            if pending.session_id == session.session_id and not pending.done.is_set():
                if pending.on_reply is not None:
                    del self._pending[msg_id]  # nobody else removes an unawaited command
                pending.error = TargetClosedError(f"{pending.method}: {reason}")
                pending.finish()

    def _close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        pendings = list(self._pending.values())
        self._pending.clear()
        for pending in pendings:
            pending.error = ConnectionClosedError(f"{pending.method}: {reason}")
            pending.finish()
        for session in self._sessions.values():
            session._close(reason)
        self._sessions.clear()
        self.root._close(reason)
        self._wake_writer.set()
        self.closed_event.set()

    async def aclose(self) -> None:
        """Close the connection: pending commands fail, the transport closes. Idempotent."""
        self._close("the connection was closed by its owner")
        with trio.move_on_after(5):
            await self._transport.aclose()

    def sessions(self) -> Iterable[CDPSession]:
        return tuple(self._sessions.values())


@asynccontextmanager
async def open_connection(transport: Transport) -> AsyncIterator[CDPConnection]:
    """Run a CDP connection over ``transport`` for the duration of the block.

    Resource handling: the reader and writer tasks live in a service nursery owned
    by this context manager (shielded from the caller's cancellation, cancelled when
    the block ends); leaving the block closes the transport and fails whatever is
    still pending with ConnectionClosedError.
    """
    connection = CDPConnection(transport)
    try:
        # The reader and writer outlive a cancellation of the caller, so that its
        # (shielded) cleanup can still talk to the browser.
        async with open_service_nursery() as nursery:
            nursery.start_soon(connection._reader, name="cdp-reader")
            nursery.start_soon(connection._writer, name="cdp-writer")
            try:
                yield connection
            finally:
                connection._close("the connection was closed by its owner")
    finally:
        # Bounded: a WebSocket close waits for the peer's answer, which may never come.
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await transport.aclose()
