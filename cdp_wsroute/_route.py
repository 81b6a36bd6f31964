"""WebSocketRoute: the Python side of one routed page WebSocket.

``_RoutedSocket`` carries out what the state machine (``_wsstate.RouteState``)
decides. Events from the page arrive inline from the CDP reader and events from
the upstream from its task; both go through the state machine at once, in
arrival order. Only user code is deferred: handlers run in order per socket —
a sync handler inline when nothing is queued before it, otherwise (and every
``async def`` handler) in a short-lived runner task that drains the queue. Until
the route handler has returned, events are held back so that the handlers it
installs see every message.

Flow control
------------
Python never buffers without bound for a slow party (see the shim for the wire
side). Frames from the page count towards a per-socket window (``WINDOW``); the
page holds further frames (in its ``bufferedAmount``) until Python acknowledges
the ones it has taken in, and Python holds back acknowledgements while this
socket's *page backlog* (frames queued for the upstream, for handlers, for
``receive()``, or held while the route handler runs) is ``_BACKLOG`` or more,
while the upstream is still connecting, or while the page is not keeping up with
what it is sent. The upstream reader stops reading (TCP pushes back on the
server) while the *server backlog* is ``_BACKLOG`` or more or the page is
behind. So Python holds at most about a backlog and a window per socket from the
page, a backlog (and the message being read) from the server, and
``PAGE_HIGH_WATER`` per document towards the page. Only what user code itself
sends with ``route.send()`` is not bounded: it never blocks, like
``WebSocket.send``.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
import trio_websocket
from wsproto.frame_protocol import CloseReason

from ._codec import FRAME_COST, WINDOW, check_websocket_url, is_protocol_token
from ._errors import Error, UpstreamError, UsageError, WebSocketClosedError
from ._events import DEFAULT_TIMEOUT, timeout_seconds
from ._upstream import (
    CONNECT_FAILURES,
    Upstream,
    describe_failure,
    first_leaf,
    handshake,
    merge_headers,
    open_stream,
    receive_nowait,
    send_messages,
    ssl_context_for,
)
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
    SideState,
)

if TYPE_CHECKING:
    from ._tunnel import Document
    from ._websocket import WebSocket

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
# How long an owner torn down by cancellation may spend writing an upstream's 1001 close frame.
_GOING_AWAY_GRACE = 1.0
# Acknowledge the page's frames in steps of a quarter window (counted the shim's way
# but with str lengths, which are at most four times fewer than UTF-8 bytes: a page
# blocked on a full window always gets its acknowledgement).
_ACK_AT = WINDOW // 4
# What a socket may have queued in Python, either way, before it pushes back.
_BACKLOG = 1024 * 1024
# The most the upstream writer puts in one write.
_WRITE_BATCH = 1024 * 1024


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

        Raises:
            UsageError: ``message`` is neither str nor bytes, or is a str that is not
                valid Unicode (a lone surrogate: a text frame must be UTF-8).
        """
        if isinstance(message, str):
            if not message.isascii() and not _is_unicode(message):
                raise UsageError("send() text must be valid Unicode: it has a lone surrogate")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            message = bytes(message)
        else:
            raise UsageError(f"send() takes str or bytes, not {type(message).__name__}")
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
        if reason is not None and (not _is_unicode(reason) or len(reason.encode()) > 123):
            raise UsageError("close reason must be valid Unicode of at most 123 UTF-8 bytes")
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

    def __post_init__(self) -> None:
        if not callable(self.handler):
            raise UsageError(f"route_web_socket() takes a callable handler, not {self.handler!r:.60}")


class _Pull:
    """The queue behind ``receive()`` for one side."""

    def __init__(self) -> None:
        self.messages: deque[Message] = deque()
        self.bytes = 0  # the size of what is queued, for flow control
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
        self.observed: WebSocket | None = None  # the page's WebSocket object, while someone observes
        self._route_handler = handler
        self._message_handlers: dict[Side, MessageHandler | None] = {Side.PAGE: None, Side.SERVER: None}
        self._close_handlers: dict[Side, CloseHandler | None] = {Side.PAGE: None, Side.SERVER: None}
        self._pull: dict[Side, _Pull | None] = {Side.PAGE: _Pull() if pull else None, Side.SERVER: None}
        if pull:
            self.state.message_handler[Side.PAGE] = True
        self._calls: deque[Callable[[], Any]] = deque()  # user code waiting to run, in order
        self._runner_active = False
        self._held: list[Callable[[], list[Action]]] | None = []  # events held until the handler returns
        self._upstream_out: deque[ServerSend | ServerClose] = deque()
        self._upstream_wake = trio.Event()
        # Flow control (see the module docstring).
        self._unacked = 0  # frames from the page not acknowledged yet
        self._unacked_cost = 0  # ... and what they cost
        self._upstream_bytes = 0  # queued for the upstream writer
        self._calls_bytes = 0  # messages queued for handlers that have not run yet
        self._held_bytes = 0  # messages held while the route handler runs
        self._relief = trio.Event()  # set when a backlog shrinks
        self._upstream_cancel: trio.CancelScope | None = None
        self._closing_upstream = False
        self._upstream_open = False

    # -- events from the page (inline in the CDP reader) ---------------------------------------

    def start(self) -> None:
        """Run the route handler, then let held events through."""
        self._call_user(self._route_handler, (self.page_route,), then=self._handler_returned)

    def _handler_returned(self) -> None:
        held, self._held = self._held, None
        self._held_bytes = 0
        self._execute(self.state.handler_returned())
        for event in held or ():
            self._execute(event())
        self._relieve()

    def _event(self, event: Callable[[], list[Action]]) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            self._execute(event())

    def page_message(self, data: Message) -> None:
        if self.trace.isEnabledFor(logging.DEBUG):
            _trace_frame(self.trace, "page -> route", data)
        if self._held is None:
            self._execute(self._page_frame(data))
        else:
            self._held_bytes += len(data)
            self._held.append(lambda: self._page_frame(data))
        self._unacked += 1
        self._unacked_cost += len(data) + FRAME_COST
        if self._unacked_cost >= _ACK_AT:
            self._acknowledge()

    def _page_frame(self, data: Message) -> list[Action]:
        if self.observed is not None and self.server_route is None:
            self.observed._sent(data)  # mocked: reported as the page sends it
        return self.state.page_message(data)

    # -- flow control ----------------------------------------------------------------------------

    def _page_backlog(self) -> int:
        pull = self._pull[Side.PAGE]
        return self._upstream_bytes + self._calls_bytes + self._held_bytes + (pull.bytes if pull else 0)

    def _server_backlog(self) -> int:
        pull = self._pull[Side.SERVER]
        return self._calls_bytes + self._held_bytes + (pull.bytes if pull else 0)

    def _acknowledge(self) -> None:
        """Let the page send more, unless this socket is backed up."""
        if (
            self._page_backlog() >= _BACKLOG
            or self.state.server is SideState.CONNECTING
            or self.document.tunnel.page_is_behind(self.document)
        ):
            return  # _relieve() tries again
        self.document.tunnel.acknowledge(self.document, self.socket_id, self._unacked)
        self._unacked = self._unacked_cost = 0

    def _relieve(self) -> None:
        """A backlog shrank (or the page caught up): acknowledge, and wake the upstream reader."""
        if self._unacked_cost >= _ACK_AT:
            self._acknowledge()
        self._relief.set()

    def _server_backed_up(self) -> bool:
        return self._server_backlog() >= _BACKLOG or self.document.tunnel.page_is_behind(self.document)

    async def _wait_for_server_room(self) -> None:
        """Stop reading from the upstream while its messages back up in Python or the page."""
        while self._server_backed_up():
            if self.document.gone:
                return
            self._relief = trio.Event()
            await self._relief.wait()

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
        if self.observed is not None:
            self.observed._close()
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
        seconds = timeout_seconds(timeout)
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
        with trio.move_on_after(seconds if seconds else float("inf")) as scope:
            while not pull.messages:
                if pull.closed is not None:
                    code, reason = pull.closed
                    raise WebSocketClosedError(f"the {side.value} side of {self.url} is closed", code, reason)
                await pull.changed.wait()
            message = pull.messages.popleft()
            pull.bytes -= len(message)
            self._relieve()
            return message
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
                if self.observed is not None and self.server_route is None:
                    self.observed._received(action.data)  # mocked: reported as the page receives it
                tunnel.send_to_page(self.document, self.socket_id, action.data)
            elif isinstance(action, ServerSend):
                self._upstream_out.append(action)
                self._upstream_bytes += len(action.data)
                self._upstream_wake.set()
            elif isinstance(action, CallMessageHandler):
                pull = self._pull[action.side]
                if pull is not None:
                    pull.messages.append(action.data)
                    pull.bytes += len(action.data)
                    pull.wake()
                else:
                    handler = self._message_handlers[action.side]
                    if handler is not None:
                        self._call_user(handler, (action.data,), size=len(action.data))
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
                if self.observed is not None:
                    self.observed._close()
                self._finish_if_done()
            elif isinstance(action, PageError):
                tunnel.error_page(self.document, self.socket_id)
                if self.observed is not None:
                    self.observed._error(self._error_message())
            elif isinstance(action, ServerClose):
                self._upstream_out.append(action)
                self._upstream_wake.set()
            elif isinstance(action, ServerConnect):
                self.document.tunnel.nursery.start_soon(self._run_upstream, name=f"upstream {self.url}")

    def _error_message(self) -> str:
        """What Chromium reports for the failure the page is shown (see Network.webSocketFrameError)."""
        if self.response is not None and self.response.status != 101:
            return f"Error during WebSocket handshake: Unexpected response code: {self.response.status}"
        if self.upstream_error is not None:
            return f"WebSocket error: {self.upstream_error}"
        return "WebSocket is closed before the connection is established."

    def _finish_if_done(self) -> None:
        if self.state.finished:
            self.document.sockets.pop(self.socket_id, None)

    # -- running user code in order ------------------------------------------------------------

    _runner_task: trio.lowlevel.Task | None = None

    def _call_user(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        then: Callable[[], None] | None = None,
        size: int = 0,
    ) -> None:
        """Run user code now if nothing is queued before it and it is sync; else queue it.

        ``size`` is the message's, counted in the backlog while the call waits.
        """
        if not self._calls and not self._runner_active and not inspect.iscoroutinefunction(fn):
            try:
                result = fn(*args)
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

        def call() -> Any:
            self._calls_bytes -= size
            return fn(*args)

        self._calls_bytes += size
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
                    self._calls_bytes = 0
                    self._handler_failed(exc)
                    return
                self._relieve()
        finally:
            self._runner_active = False
            self._runner_task = None

    def _handler_failed(self, exc: Exception) -> None:
        """A handler raised: close the socket (1011) and let the exception fail the owner."""
        logger.error("a WebSocket route handler for %s raised %r", self.url, exc)
        self._held = None
        self._held_bytes = 0
        self._calls.clear()
        self._calls_bytes = 0
        self._execute(self.state.handler_failed())
        self.document.tunnel.fail(exc)

    # -- the upstream connection ---------------------------------------------------------------

    async def _run_upstream(self) -> None:
        tunnel = self.document.tunnel
        stream: trio.abc.Stream | None = None
        upstream: Upstream | None = None
        with trio.CancelScope() as scope:
            self._upstream_cancel = scope
            try:
                # trio-websocket's reader task lives in this nursery; a rejected handshake
                # is raised from there, so failures are caught around the whole nursery.
                async with trio.open_nursery() as nursery:
                    options = self.options
                    url = options.url or self.url
                    headers = merge_headers(await tunnel.upstream_headers(self.document, url), options.headers)
                    subprotocols = list(self.protocols if options.subprotocols is None else options.subprotocols)
                    if self.trace.isEnabledFor(logging.DEBUG):
                        _trace_request(self.trace, url, subprotocols, headers)
                    with trio.fail_after(options.connect_timeout):
                        context = options.ssl_context or ssl_context_for(url, tunnel)
                        stream = await open_stream(url, context, tunnel.page._context._proxy)
                        upstream = await handshake(
                            nursery, stream, url, subprotocols, headers, options.max_message_size
                        )
                    ws = upstream.ws
                    response_headers = [
                        (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in ws.handshake_headers
                    ]
                    if upstream.extensions:
                        response_headers.append(("sec-websocket-extensions", upstream.extensions))
                    self.response = HandshakeResponse(101, response_headers, ws.subprotocol)
                    if self.trace.isEnabledFor(logging.DEBUG):
                        _trace_response(self.trace, self.response)
                    await self._pump_upstream(ws, upstream.extensions)
                    nursery.cancel_scope.cancel(reason="upstream finished")
            except* CONNECT_FAILURES as group:
                failure = first_leaf(group)
                if isinstance(failure, trio_websocket.ConnectionRejected):
                    self.response = HandshakeResponse(
                        failure.status_code,
                        [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in failure.headers or ()],
                        None,
                    )
                if self.trace.isEnabledFor(logging.DEBUG):
                    self.trace.debug("upstream failed: %s", describe_failure(failure))
                # Before the handshake completed the page sees error + 1006; after, a drop (1006 only).
                self._upstream_failed(describe_failure(failure), page_error=not self._upstream_open)
            except* trio.Cancelled:
                # Torn down from outside (the launch() block cancelled, a handler raised):
                # say goodbye as the browser does for its own sockets, not by dropping.
                if upstream is not None:
                    await upstream.going_away(_GOING_AWAY_GRACE)
                raise
            finally:
                self._upstream_cancel = None
                # What never reached the server is dropped: it no longer holds the page back.
                self._upstream_out.clear()
                self._upstream_bytes = 0
                self._relieve()
                if stream is not None:
                    # trio-websocket leaves the stream open when the server ends the connection.
                    with trio.CancelScope(shield=True):
                        await stream.aclose()

    async def _pump_upstream(self, ws: trio_websocket.WebSocketConnection, extensions: str) -> None:
        self.server_protocol = ws.subprotocol or ""
        self._upstream_open = True
        self._execute(self.state.server_opened(self.server_protocol, extensions))
        self._relieve()  # what the page sent while connecting is on its way now
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
                # What the reader has queued already goes to the page in the same batch.
                with self.document.tunnel.batching():
                    self._server_message(message)
                    while not self._server_backed_up() and (more := receive_nowait(ws)) is not None:
                        self._server_message(more)
                await self._wait_for_server_room()

    def _server_message(self, message: Message) -> None:
        if self.trace.isEnabledFor(logging.DEBUG):
            _trace_frame(self.trace, "server -> route", message)
        if self.observed is not None:
            self.observed._received(message)  # connected: reported as it comes off the wire
        if self._held is None:
            self._execute(self.state.server_message(message))
        else:
            self._held_bytes += len(message)
            self._event(lambda: self.state.server_message(message))

    async def _upstream_writer(self, ws: trio_websocket.WebSocketConnection, scope: trio.CancelScope) -> None:
        out = self._upstream_out
        while True:
            while not out:
                await self._upstream_wake.wait()
                self._upstream_wake = trio.Event()
            item = out[0]
            if isinstance(item, ServerClose):
                out.popleft()
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
            # Every message queued now, up to a close, in one write.
            batch: list[Message] = []
            size = 0
            while out and size < _WRITE_BATCH:
                head = out[0]
                if not isinstance(head, ServerSend):
                    break
                out.popleft()
                batch.append(head.data)
                size += len(head.data)
            try:
                await send_messages(ws, batch)
            except trio_websocket.ConnectionClosed:
                return  # the reader reports why
            for data in batch:
                if self.trace.isEnabledFor(logging.DEBUG):
                    _trace_frame(self.trace, "route -> server", data)
                if self.observed is not None:
                    self.observed._sent(data)  # connected: reported once it is on the wire
            self._upstream_bytes -= size
            if self._unacked_cost >= _ACK_AT:
                self._acknowledge()

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


def _is_unicode(text: str) -> bool:
    """No lone surrogates: the text can be UTF-8 encoded."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _valid_close_code(code: object, side: Side) -> bool:
    """Codes a route may close with: what a page may send, or (to a server) any sendable code."""
    if type(code) is not int:
        return False
    if side is Side.SERVER:
        return 1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015)
    return code == 1000 or 3000 <= code <= 4999


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
