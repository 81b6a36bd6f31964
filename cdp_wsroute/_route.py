"""WebSocketRoute: the Python side of one routed page WebSocket.

``_RoutedSocket`` carries out what the state machine (``_wsstate.RouteState``)
decides. Events from the page arrive inline from the CDP reader and events from
the upstream from its task; both go through the state machine at once, in
arrival order. Only user code is deferred: handlers run in order per socket —
a sync handler inline when nothing is queued before it, otherwise (and every
``async def`` handler) in a short-lived runner task that drains the queue. Until
the route handler has returned, events are held back so that the handlers it
installs see every message.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11
import trio
import trio_websocket
import wsproto.utilities
from wsproto.frame_protocol import CloseReason

from ._codec import check_websocket_url, is_protocol_token
from ._errors import Error, UpstreamError, UsageError, WebSocketClosedError
from ._events import DEFAULT_TIMEOUT
from ._proxy import ProxySettings, open_via_proxy
from ._urlmatch import UrlMatcher, to_websocket_url
from ._wsstate import (
    Action,
    CallCloseHandler,
    CallMessageHandler,
    PageClose,
    PageError,
    PageOpen,
    PageSend,
    RouteState,
    ServerClose,
    ServerConnect,
    ServerSend,
    Side,
)

if TYPE_CHECKING:
    from ._tunnel import Document, Tunnel

__all__ = ["RouteEntry", "WebSocketRoute"]

logger = logging.getLogger("cdp_wsroute.route")

Message = str | bytes
MessageHandler = Callable[[Message], Any]
CloseHandler = Callable[[int | None, str | None], Any]
RouteHandler = Callable[["WebSocketRoute"], Any]

# trio-websocket's close codes that mean the connection failed rather than closed.
_PROTOCOL_FAILURES = {1002, 1003, 1007, 1009, 1010}
# How long a close handshake may take before the connection counts as dropped.
_CLOSE_TIMEOUT = 10.0


class WebSocketRoute:
    """One side of a routed WebSocket: the page side, or the server side from ``connect_to_server()``.

    By default, a routed WebSocket does not connect to the server, so you can
    mock the entire conversation: ``on_message`` sees what the page sends and
    ``send`` answers. Call ``connect_to_server()`` to open the real connection;
    messages and closes are then forwarded both ways unless you take over a side
    with ``on_message`` / ``on_close`` (or ``receive()``) on that side's route.
    """

    def __init__(self, socket: _RoutedSocket, side: Side) -> None:
        self._socket = socket
        self._side = side

    def __repr__(self) -> str:
        return f"<WebSocketRoute {self._side.value} url={self.url!r}>"

    @property
    def url(self) -> str:
        """The URL the page asked for, normalised (absolute, ws:// or wss://)."""
        return self._socket.url

    def protocols(self) -> list[str]:
        """The subprotocols the page requested, in its order."""
        return list(self._socket.protocols)

    @property
    def protocol(self) -> str | None:
        """Server side: the subprotocol the server selected, once connected (None before)."""
        return self._socket.server_protocol

    @property
    def error(self) -> UpstreamError | None:
        """Server side: why the upstream failed, if it did."""
        return self._socket.upstream_error

    @property
    def response(self) -> HandshakeResponse | None:
        """Server side: the server's handshake answer (also a rejection), None before it came."""
        return self._socket.response

    def send(self, message: Message) -> None:
        """Send a message: to the page (page-side route) or to the server (server-side route).

        Never blocks; messages go out in the order sent. After the side closed
        (or the page went away) the message is dropped, as Playwright does.
        """
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise UsageError(f"send() takes str or bytes, not {type(message).__name__}")
        if not isinstance(message, str):
            message = bytes(message)
        self._socket.route_send(self._side, message)

    def on_message(self, handler: MessageHandler) -> None:
        """Handle messages from this side's peer (the page, or the server) yourself.

        ``handler(message)`` may be sync or ``async def``; it is awaited, in order.
        Once set, messages from that peer are no longer forwarded. Setting it again
        replaces the handler.
        """
        self._socket.set_message_handler(self._side, handler)

    def on_close(self, handler: CloseHandler) -> None:
        """Handle the close of this side: ``handler(code, reason)``, sync or ``async def``.

        Once set, the close is no longer forwarded to the other side; the handler
        decides (e.g. by calling ``close()``). When the document goes away both
        sides' handlers get ``(None, None)``.
        """
        self._socket.set_close_handler(self._side, handler)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close this side: the page sees a clean close with ``code`` (1005 if None) and ``reason``.

        Raises:
            UsageError: ``code`` is not 1000 or 3000-4999, or ``reason`` is over 123 UTF-8 bytes.
        """
        if code is not None and not _valid_close_code(code, self._side):
            allowed = "1000-4999" if self._side is Side.SERVER else "1000 or in 3000-4999"
            raise UsageError(f"close code must be {allowed}, not {code!r}")
        if reason is not None and len(reason.encode()) > 123:
            raise UsageError("close reason must not be longer than 123 UTF-8 bytes")
        self._socket.route_close(self._side, code, reason or "")
        await trio.lowlevel.checkpoint()

    def connect_to_server(
        self,
        *,
        url: str | None = None,
        headers: Mapping[str, str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_message_size: int | None = None,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
    ) -> WebSocketRoute:
        """Open the real connection (sync) and return the server-side route.

        By default the handshake carries what the browser's own would: the page's
        subprotocols, the document's Origin, the context's cookies for the URL, the
        browser's User-Agent and Accept-Language, and the context's extra headers.

        Args:
            url: connect here instead of the URL the page asked for (ws:// or wss://).
            headers: add or replace handshake headers; a value of None removes one
                (``{"Origin": None}``).
            subprotocols: offer these instead of the page's.
            timeout: seconds for the opening and for the closing handshake
                (default 30 s to open, 10 s to close).
            ssl_context: for wss://, instead of the default (which honours the
                context's ``ignore_https_errors``).
            max_message_size: largest message accepted from the server (default 256 MiB);
                a larger one fails the connection (1009).
            ping_interval: send a ping this often (seconds; default: never). Pings from
                the server are always answered.
            ping_timeout: a pong must come within this many seconds (default: the
                interval), else the upstream counts as dead: it is dropped and the page
                sees a network failure (error, then close 1006).

        Raises:
            Error: "Already connected to the server" on a second call.
            UsageError: called on the server-side route, or an invalid option.
        """
        if self._side is Side.SERVER:
            raise UsageError("connect_to_server() must be called on the page-side WebSocketRoute")
        if url is not None:
            url = to_websocket_url(url)
            try:
                check_websocket_url(url)
            except ValueError as exc:
                raise UsageError(f"connect_to_server(url=...): {exc}: {url!r}") from None
        if subprotocols is not None and (
            isinstance(subprotocols, str) or not all(is_protocol_token(p) for p in subprotocols)
        ):
            raise UsageError(f"subprotocols must be a list of protocol tokens, not {subprotocols!r}")
        if timeout is not None and timeout <= 0:
            raise UsageError("timeout must be positive")
        if max_message_size is not None and max_message_size <= 0:
            raise UsageError("max_message_size must be positive")
        if ping_interval is not None and ping_interval <= 0:
            raise UsageError("ping_interval must be positive")
        if ping_timeout is not None and ping_timeout <= 0:
            raise UsageError("ping_timeout must be positive")
        options = ConnectOptions(
            url=url,
            headers=dict(headers or {}),
            subprotocols=list(subprotocols) if subprotocols is not None else None,
            timeout=timeout,
            ssl_context=ssl_context,
            max_message_size=max_message_size or 256 * 1024 * 1024,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        return self._socket.connect(options)

    async def receive(self, *, timeout: float | None = None) -> Message:
        """The next message from this side's peer; takes the place of ``on_message``.

        Raises:
            WebSocketClosedError: the side closed and nothing is left to read.
            TimeoutError: nothing arrived in ``timeout`` seconds (default 30; 0 waits forever).
        """
        return await self._socket.receive(self._side, timeout)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self._socket.receive(self._side, 0)
            except WebSocketClosedError:
                return


@dataclass(frozen=True)
class HandshakeResponse:
    """The server's answer to the upstream handshake (``server_route.response``).

    Attributes:
        status: 101 when the server accepted, else the HTTP status it rejected with.
        headers: the response headers, names lower-cased, in the order received.
        subprotocol: the subprotocol the server selected, None if none.
    """

    status: int
    headers: list[tuple[str, str]]
    subprotocol: str | None

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), None if absent."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


@dataclass(frozen=True)
class ConnectOptions:
    """What ``connect_to_server(...)`` may change about the upstream connection."""

    url: str | None = None
    headers: Mapping[str, str | None] = field(default_factory=dict)
    subprotocols: Sequence[str] | None = None
    timeout: float | None = None
    ssl_context: ssl.SSLContext | None = None
    max_message_size: int = 256 * 1024 * 1024
    ping_interval: float | None = None
    ping_timeout: float | None = None

    @property
    def connect_timeout(self) -> float:
        return DEFAULT_TIMEOUT if self.timeout is None else self.timeout

    @property
    def close_timeout(self) -> float:
        return _CLOSE_TIMEOUT if self.timeout is None else self.timeout


@dataclass(eq=False)
class RouteEntry:
    """A registered ``route_web_socket``: newest first in its page's or context's list."""

    matcher: UrlMatcher
    handler: RouteHandler
    pull: bool = False  # messages from the page queue for receive() from the start
    remaining: int | None = None  # routes this many sockets, then retires


class _Pull:
    """The queue behind ``receive()`` for one side."""

    def __init__(self) -> None:
        self.messages: deque[Message] = deque()
        self.changed = trio.Event()
        self.closed: tuple[int | None, str | None] | None = None

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class _RoutedSocket:
    """The runtime of one routed socket (see the module docstring)."""

    def __init__(
        self,
        document: Document,
        socket_id: int,
        url: str,
        protocols: tuple[str, ...],
        handler: RouteHandler,
        *,
        pull: bool = False,
    ) -> None:
        self.document = document
        self.socket_id = socket_id
        self.url = url
        self.protocols = protocols
        self.state = RouteState(protocols)
        self.page_route = WebSocketRoute(self, Side.PAGE)
        self.server_route: WebSocketRoute | None = None
        self.server_protocol: str | None = None
        self.upstream_error: UpstreamError | None = None
        self.response: HandshakeResponse | None = None
        self.options = ConnectOptions()
        self.trace = _trace_for(url)
        self._route_handler = handler
        self._message_handlers: dict[Side, MessageHandler | None] = {Side.PAGE: None, Side.SERVER: None}
        self._close_handlers: dict[Side, CloseHandler | None] = {Side.PAGE: None, Side.SERVER: None}
        self._pull: dict[Side, _Pull | None] = {Side.PAGE: _Pull() if pull else None, Side.SERVER: None}
        if pull:
            self.state.message_handler[Side.PAGE] = True
        self._calls: deque[Callable[[], Any]] = deque()  # user code waiting to run, in order
        self._runner_active = False
        self._held: list[Callable[[], list[Action]]] | None = []  # events held until the handler returns
        self._upstream_out: deque[Message | ServerClose] = deque()
        self._upstream_wake = trio.Event()
        self._upstream_cancel: trio.CancelScope | None = None
        self._closing_upstream = False
        self._upstream_open = False

    # -- events from the page (inline in the CDP reader) ---------------------------------------

    def start(self) -> None:
        """Run the route handler, then let held events through."""
        self._call_user(self._route_handler, (self.page_route,), then=self._handler_returned)

    def _handler_returned(self) -> None:
        held, self._held = self._held, None
        self._execute(self.state.handler_returned())
        for event in held or ():
            self._execute(event())

    def _event(self, event: Callable[[], list[Action]]) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            self._execute(event())

    def page_message(self, data: Message) -> None:
        if self.trace.isEnabledFor(logging.DEBUG):
            _trace_frame(self.trace, "page -> route", data)
        if self._held is None:
            self._execute(self.state.page_message(data))
        else:
            self._held.append(lambda: self.state.page_message(data))

    def page_close(self, code: int | None, reason: str, connecting: bool) -> None:
        # The page's own close is never held: its socket is CLOSING already.
        self._execute(self.state.page_close(code, reason, connecting=connecting))
        self._wake_pull(Side.PAGE, code, reason)

    def page_lost(self) -> None:
        self._execute(self.state.page_lost())
        self._wake_pull(Side.PAGE, None, None)

    def lifecycle_closed(self) -> None:
        self._held = None
        self._execute(self.state.lifecycle_closed())
        self._wake_pull(Side.PAGE, None, None)
        self._wake_pull(Side.SERVER, None, None)
        if self._upstream_cancel is not None and not self._upstream_open:
            # Still connecting: abandon the handshake. An open upstream gets its 1001 close frame.
            self._upstream_cancel.cancel(reason="the page's document went away")

    # -- the route's own calls --------------------------------------------------------------------

    def route_send(self, side: Side, data: Message) -> None:
        self._execute(self.state.route_send(side, data))

    def route_close(self, side: Side, code: int | None, reason: str) -> None:
        self._execute(self.state.route_close(side, code, reason))
        if side is Side.PAGE:
            self._wake_pull(Side.PAGE, code, reason)

    def connect(self, options: ConnectOptions) -> WebSocketRoute:
        if self.server_route is not None:
            raise Error("Already connected to the server")
        self.options = options
        self.server_route = WebSocketRoute(self, Side.SERVER)
        self._execute(self.state.connect())
        return self.server_route

    def set_message_handler(self, side: Side, handler: MessageHandler) -> None:
        if not callable(handler):
            raise UsageError("on_message() takes a callable")
        self._message_handlers[side] = handler
        self.state.message_handler[side] = True

    def set_close_handler(self, side: Side, handler: CloseHandler) -> None:
        if not callable(handler):
            raise UsageError("on_close() takes a callable")
        self._close_handlers[side] = handler
        self.state.close_handler[side] = True

    async def receive(self, side: Side, timeout: float | None) -> Message:
        if side is Side.SERVER and self.server_route is None:
            raise UsageError("receive() on the server side needs connect_to_server() first")
        if self._runner_active and trio.lowlevel.current_task() is self._runner_task:
            raise UsageError("receive() cannot wait inside a handler of the same socket: it would wait for itself")
        pull = self._pull[side]
        if pull is None:
            pull = self._pull[side] = _Pull()
            self.state.message_handler[side] = True
            closed_side = self.state.page if side is Side.PAGE else self.state.server
            if closed_side.value in ("closed", "closing"):
                pull.closed = (None, None)
        seconds = DEFAULT_TIMEOUT if timeout is None else timeout
        with trio.move_on_after(seconds if seconds else float("inf")) as scope:
            while not pull.messages:
                if pull.closed is not None:
                    code, reason = pull.closed
                    raise WebSocketClosedError(f"the {side.value} side of {self.url} is closed", code, reason)
                await pull.changed.wait()
            return pull.messages.popleft()
        from ._errors import TimeoutError

        assert scope.cancelled_caught
        raise TimeoutError(f"Timeout {seconds * 1000:.0f}ms exceeded while waiting for a message from the {side.value}")

    def _wake_pull(self, side: Side, code: int | None, reason: str | None) -> None:
        pull = self._pull[side]
        if pull is not None and pull.closed is None:
            pull.closed = (code, reason)
            pull.wake()

    # -- carrying out the state machine's actions ---------------------------------------------

    def _execute(self, actions: list[Action]) -> None:
        tunnel = self.document.tunnel
        for action in actions:
            if isinstance(action, PageSend):
                if self.trace.isEnabledFor(logging.DEBUG):
                    _trace_frame(self.trace, "route -> page", action.data)
                tunnel.send_to_page(self.document, self.socket_id, action.data)
            elif isinstance(action, ServerSend):
                self._upstream_out.append(action.data)
                self._upstream_wake.set()
            elif isinstance(action, CallMessageHandler):
                pull = self._pull[action.side]
                if pull is not None:
                    pull.messages.append(action.data)
                    pull.wake()
                else:
                    handler = self._message_handlers[action.side]
                    if handler is not None:
                        self._call_user(handler, (action.data,))
            elif isinstance(action, CallCloseHandler):
                close_handler = self._close_handlers[action.side]
                if close_handler is not None:
                    self._call_user(close_handler, (action.code, action.reason))
                if action.side is Side.SERVER:
                    self._wake_pull(Side.SERVER, action.code, action.reason)
            elif isinstance(action, PageOpen):
                tunnel.open_page(self.document, self.socket_id, action.protocol, action.extensions)
            elif isinstance(action, PageClose):
                tunnel.close_page(self.document, self.socket_id, action.code, action.reason, action.was_clean)
                self._wake_pull(Side.PAGE, action.code, action.reason)
                self._finish_if_done()
            elif isinstance(action, PageError):
                tunnel.error_page(self.document, self.socket_id)
            elif isinstance(action, ServerClose):
                self._upstream_out.append(action)
                self._upstream_wake.set()
            elif isinstance(action, ServerConnect):
                self.document.tunnel.nursery.start_soon(self._run_upstream, name=f"upstream {self.url}")

    def _finish_if_done(self) -> None:
        if self.state.finished:
            self.document.sockets.pop(self.socket_id, None)

    # -- running user code in order ------------------------------------------------------------

    _runner_task: trio.lowlevel.Task | None = None

    def _call_user(self, fn: Callable[..., Any], args: tuple[Any, ...], then: Callable[[], None] | None = None) -> None:
        """Run user code now if nothing is queued before it and it is sync; else queue it."""

        def call() -> Any:
            return fn(*args)

        if not self._calls and not self._runner_active and not inspect.iscoroutinefunction(fn):
            try:
                result = call()
            except Exception as exc:
                self._handler_failed(exc)
                return
            if inspect.isawaitable(result):
                self._calls.append(lambda: result)
                if then is not None:
                    self._calls.append(then)
                self._start_runner()
                return
            if then is not None:
                then()
            return
        self._calls.append(call)
        if then is not None:
            self._calls.append(then)
        self._start_runner()

    def _start_runner(self) -> None:
        if not self._runner_active:
            self._runner_active = True
            self.document.tunnel.nursery.start_soon(self._run_calls, name=f"handlers {self.url}")

    async def _run_calls(self) -> None:
        self._runner_task = trio.lowlevel.current_task()
        try:
            while self._calls:
                call = self._calls.popleft()
                try:
                    result = call()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    self._calls.clear()
                    self._handler_failed(exc)
                    return
        finally:
            self._runner_active = False
            self._runner_task = None

    def _handler_failed(self, exc: Exception) -> None:
        """A handler raised: close the socket (1011) and let the exception fail the owner."""
        logger.error("a WebSocket route handler for %s raised %r", self.url, exc)
        self._held = None
        self._calls.clear()
        self._execute(self.state.handler_failed())
        self.document.tunnel.fail(exc)

    # -- the upstream connection ---------------------------------------------------------------

    async def _run_upstream(self) -> None:
        tunnel = self.document.tunnel
        stream: trio.abc.Stream | None = None
        with trio.CancelScope() as scope:
            self._upstream_cancel = scope
            try:
                # trio-websocket's reader task lives in this nursery; a rejected handshake
                # is raised from there, so failures are caught around the whole nursery.
                async with trio.open_nursery() as nursery:
                    options = self.options
                    url = options.url or self.url
                    headers = _merge_headers(await tunnel.upstream_headers(self.document, url), options.headers)
                    subprotocols = list(self.protocols if options.subprotocols is None else options.subprotocols)
                    if self.trace.isEnabledFor(logging.DEBUG):
                        _trace_request(self.trace, url, subprotocols, headers)
                    with trio.fail_after(options.connect_timeout):
                        context = options.ssl_context or _ssl_context(url, tunnel)
                        stream = await _open_stream(url, context, tunnel.page._context._proxy)
                        ws = await _handshake(nursery, stream, url, subprotocols, headers, options.max_message_size)
                    self.response = HandshakeResponse(
                        101,
                        [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in ws.handshake_headers],
                        ws.subprotocol,
                    )
                    if self.trace.isEnabledFor(logging.DEBUG):
                        _trace_response(self.trace, self.response)
                    await self._pump_upstream(ws)
                    nursery.cancel_scope.cancel(reason="upstream finished")
            except* _CONNECT_FAILURES as group:
                failure = _first_leaf(group)
                if isinstance(failure, trio_websocket.ConnectionRejected):
                    self.response = HandshakeResponse(
                        failure.status_code,
                        [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in failure.headers or ()],
                        None,
                    )
                if self.trace.isEnabledFor(logging.DEBUG):
                    self.trace.debug("upstream failed: %s", _describe_failure(failure))
                # Before the handshake completed the page sees error + 1006; after, a drop (1006 only).
                self._upstream_failed(_describe_failure(failure), page_error=not self._upstream_open)
            finally:
                self._upstream_cancel = None
                if stream is not None:
                    # trio-websocket leaves the stream open when the server ends the connection.
                    with trio.CancelScope(shield=True):
                        await stream.aclose()

    async def _pump_upstream(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.server_protocol = ws.subprotocol or ""
        self._upstream_open = True
        self._execute(self.state.server_opened(self.server_protocol, ""))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._upstream_writer, ws, nursery.cancel_scope)
            if self.options.ping_interval is not None:
                nursery.start_soon(self._keepalive, ws, nursery.cancel_scope)
            while True:
                try:
                    message = await ws.get_message()
                except trio_websocket.ConnectionClosed as closed:
                    if self._closing_upstream:
                        return  # we started the close: the writer reports the server's answer
                    self._upstream_ended(closed.reason)
                    nursery.cancel_scope.cancel(reason="upstream closed")
                    return
                if self.trace.isEnabledFor(logging.DEBUG):
                    _trace_frame(self.trace, "server -> route", message)
                if self._held is None:
                    self._execute(self.state.server_message(message))
                else:
                    self._event(lambda message=message: self.state.server_message(message))  # type: ignore[misc]

    async def _upstream_writer(self, ws: trio_websocket.WebSocketConnection, scope: trio.CancelScope) -> None:
        out = self._upstream_out
        while True:
            while not out:
                await self._upstream_wake.wait()
                self._upstream_wake = trio.Event()
            item = out.popleft()
            if isinstance(item, ServerClose):
                self._closing_upstream = True
                # wsproto sends an empty close frame only for its own NO_STATUS_RCVD member.
                code = CloseReason.NO_STATUS_RCVD if item.code is None else item.code
                if self.trace.isEnabledFor(logging.DEBUG):
                    self.trace.debug("route -> server  close code=%s reason=%r", item.code, item.reason)
                with trio.move_on_after(self.options.close_timeout):
                    await ws.aclose(code, item.reason or None)
                # The server's own close frame, or 1006 if it never answered.
                self._upstream_ended(ws.closed)
                scope.cancel(reason="upstream closed")
                return
            if self.trace.isEnabledFor(logging.DEBUG):
                _trace_frame(self.trace, "route -> server", item)
            try:
                await ws.send_message(item)
            except trio_websocket.ConnectionClosed:
                return  # the reader reports why

    async def _keepalive(self, ws: trio_websocket.WebSocketConnection, scope: trio.CancelScope) -> None:
        interval = self.options.ping_interval
        assert interval is not None
        timeout = self.options.ping_timeout or interval
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(timeout) as wait:
                try:
                    await ws.ping()
                except trio_websocket.ConnectionClosed:
                    return  # the reader reports why
            if wait.cancelled_caught:
                if self.trace.isEnabledFor(logging.DEBUG):
                    self.trace.debug("no pong within %ss: dropping the upstream", timeout)
                self._upstream_failed(f"the server did not answer a ping within {timeout}s", page_error=True)
                scope.cancel(reason="keepalive timed out")
                return

    def _upstream_ended(self, reason: trio_websocket.CloseReason | None) -> None:
        code = reason.code if reason is not None else 1006
        if reason is None or code == 1006 or code in _PROTOCOL_FAILURES:
            detail = f"{reason.name}: {reason.reason}" if reason is not None and reason.reason else "connection lost"
            self._upstream_failed(f"the server connection failed ({code} {detail})", page_error=code != 1006)
        else:
            self._execute(self.state.server_closed(None if code == 1005 else code, reason.reason or ""))

    def _upstream_failed(self, reason: str, *, page_error: bool) -> None:
        self.upstream_error = UpstreamError(f"{self.url}: {reason}")
        self._execute(self.state.server_failed(reason, page_error=page_error))


def _valid_close_code(code: object, side: Side) -> bool:
    """Codes a route may close with: what a page may send, or (to a server) any sendable code."""
    if type(code) is not int:
        return False
    if side is Side.SERVER:
        return 1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015)
    return code == 1000 or 3000 <= code <= 4999


class _Dropped(Exception):
    """The server closed the TCP connection before the handshake finished."""


# What a failed connection or handshake raises; h11/wsproto raise from trio-websocket's reader
# when a server answers with an invalid handshake (a wrong Sec-WebSocket-Accept, say).
_CONNECT_FAILURES = (
    OSError,
    trio_websocket.HandshakeError,
    trio.TooSlowError,
    ssl.SSLError,
    h11.ProtocolError,
    wsproto.utilities.ProtocolError,
    _Dropped,
)


def _first_leaf(group: BaseExceptionGroup[Exception]) -> BaseException:
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


class _WatchedStream(trio.abc.Stream):
    """A stream that tells when the peer closed it: trio-websocket's client would wait forever
    for a handshake response that cannot come."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.eof = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.eof.set()  # trio-websocket's reader stops here and would never report it
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.eof.set()
            raise
        if not data:
            self.eof.set()
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _open_stream(url: str, context: ssl.SSLContext | None, proxy: ProxySettings | None) -> trio.abc.Stream:
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    tcp: trio.abc.Stream
    if proxy is not None and proxy.applies_to(host):
        tcp = await open_via_proxy(proxy, host, port)
    else:
        tcp = await trio.open_tcp_stream(host, port)
    if not secure:
        return tcp
    stream = trio.SSLStream(tcp, context or ssl.create_default_context(), server_hostname=host, https_compatible=True)
    try:
        # Handshake now, so that a certificate error is reported as one.
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc.__cause__, ssl.SSLError):
            raise exc.__cause__ from None
        raise OSError(f"TLS connection failed: {exc}") from exc
    return stream


async def _handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    url: str,
    subprotocols: list[str],
    headers: list[tuple[bytes, bytes]],
    max_message_size: int,
) -> trio_websocket.WebSocketConnection:
    """trio-websocket's client handshake on our own stream, failing (not hanging) if the server hangs up."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    watched = _WatchedStream(stream)
    result: list[trio_websocket.WebSocketConnection] = []
    async with trio.open_nursery() as race:

        async def connect() -> None:
            result.append(
                await trio_websocket.wrap_client_stream(
                    nursery,
                    watched,  # type: ignore[arg-type]
                    host,
                    resource,
                    subprotocols=subprotocols or None,
                    extra_headers=headers,
                    message_queue_size=64,
                    max_message_size=max_message_size,
                    receive_buffer_size=256 * 1024,
                )
            )
            race.cancel_scope.cancel()

        async def watch() -> None:
            await watched.eof.wait()
            race.cancel_scope.cancel()

        race.start_soon(connect)
        race.start_soon(watch)
    if not result:
        raise _Dropped("the server closed the connection during the handshake")
    return result[0]


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, _Dropped):
        return str(exc)
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"the server rejected the handshake with HTTP {exc.status_code}"
    if isinstance(exc, trio.TooSlowError):
        return "the server did not answer the handshake in time"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc}"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


def _ssl_context(url: str, tunnel: Tunnel) -> ssl.SSLContext | None:
    """The default TLS settings for an upstream: the system store, the context's CA bundle, and
    its ``ignore_https_errors``."""
    if not url.startswith("wss:"):
        return None
    context = ssl.create_default_context()
    ca_file = tunnel.page._context._ca_file
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    if tunnel.ignore_https_errors:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _merge_headers(
    defaults: list[tuple[bytes, bytes]], overrides: Mapping[str, str | None]
) -> list[tuple[bytes, bytes]]:
    """The browser-like defaults with the route's overrides applied (case-insensitive; None removes)."""
    merged = {name.decode("latin-1").lower(): (name, value) for name, value in defaults}
    for name, value in overrides.items():
        if value is None:
            merged.pop(name.lower(), None)
        else:
            merged[name.lower()] = (name.encode("latin-1"), value.encode("latin-1"))
    return list(merged.values())


# -- trace logging (off by default: see cdp_wsroute.enable_trace) ---------------------------------

_TRACE = logging.getLogger("cdp_wsroute.trace")
_SECRET_HEADERS = {b"cookie", b"authorization", b"proxy-authorization"}


def _trace_for(url: str) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(_TRACE, {"websocket_url": url})


def _preview(data: Message) -> str:
    if isinstance(data, str):
        return f"text {len(data.encode())} bytes {data[:60]!r}{'...' if len(data) > 60 else ''}"
    return f"binary {len(data)} bytes {data[:24].hex(' ')}{' ...' if len(data) > 24 else ''}"


def _trace_frame(trace: logging.LoggerAdapter[logging.Logger], direction: str, data: Message) -> None:
    trace.debug("%-15s %s", direction, _preview(data))


def _trace_request(
    trace: logging.LoggerAdapter[logging.Logger], url: str, subprotocols: list[str], headers: list[tuple[bytes, bytes]]
) -> None:
    lines = [f"--- request ---\nGET {url}"]
    if subprotocols:
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    for name, value in headers:
        shown = f"<{len(value)} bytes>" if name.lower() in _SECRET_HEADERS else value.decode("latin-1")
        lines.append(f"{name.decode('latin-1')}: {shown}")
    trace.debug("\n".join(lines))


def _trace_response(trace: logging.LoggerAdapter[logging.Logger], response: HandshakeResponse) -> None:
    lines = [f"--- response ---\nHTTP/1.1 {response.status}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    trace.debug("\n".join(lines))


def enable_trace(enabled: bool = True, *, handler: logging.Handler | None = None) -> None:
    """Log every routed upstream's handshake and frames (logger ``cdp_wsroute.trace``), like
    websocket-client's ``enableTrace``.

    Args:
        enabled: turn tracing on (DEBUG) or off.
        handler: where the lines go; by default a stderr handler is added once.
    """
    _TRACE.setLevel(logging.DEBUG if enabled else logging.NOTSET)
    if enabled and handler is not None:
        _TRACE.addHandler(handler)
    elif enabled and not _TRACE.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(websocket_url)s %(message)s"))
        _TRACE.addHandler(stream)
