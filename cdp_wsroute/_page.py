"""Page and Frame: a page target, its frame tree (across out-of-process iframes), evaluation.

A Page owns one CDP session for its target and one more per out-of-process
iframe (OOPIF) the browser auto-attaches under it. All of them feed the same
frame table through callbacks that run inline in the connection's reader, so
the table always reflects every event received so far; waiters re-check it on
each change (:class:`~._events.Changes`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin

import trio

from ._connection import JSON, CDPSession
from ._errors import Error, NavigationError, ProtocolError, TargetClosedError, UsageError
from ._events import DEFAULT_TIMEOUT, Changes, EventEmitter, EventInfo, deadline, timeout_seconds
from ._js import (
    NEVER_RAN,
    call_argument,
    context_gone,
    from_remote,
    is_function_source,
    javascript_error,
    raise_for_exception,
    wait_for_function_source,
)
from ._route import RouteEntry, RouteHandler, WebSocketRoute
from ._tunnel import Tunnel
from ._urlmatch import UrlMatcher, UrlPattern
from ._websocket import NetworkSockets, WebSocket, WebSocketFrame

if TYPE_CHECKING:
    from ._browser import BrowserContext

__all__ = ["ConsoleMessage", "Frame", "Page"]

WaitUntil = Literal["load", "domcontentloaded", "commit"]
_LIFECYCLE: dict[str, str] = {"load": "load", "domcontentloaded": "DOMContentLoaded"}
_MAX_LOADERS = 8  # lifecycle history kept per frame
# Chromium's answers for a result returnByValue cannot carry (a window, a cycle, ...).
_NOT_BY_VALUE = ("Object reference chain is too long", "Object couldn't be returned by value")


async def gather(*calls: Awaitable[Any]) -> list[Any]:
    """Await several calls concurrently (pipelined on the wire); results in order."""
    results: list[Any] = [None] * len(calls)
    errors: list[Exception] = []

    async def run(index: int, call: Awaitable[Any]) -> None:
        try:
            results[index] = await call
        except Exception as exc:  # all calls finish; the first failure is raised below
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for index, call in enumerate(calls):
            nursery.start_soon(run, index, call)
    if errors:
        raise errors[0]
    return results


@dataclass(frozen=True)
class ConsoleMessage:
    """A ``console.*`` call in the page (the ``"console"`` event)."""

    type: str
    text: str
    args: list[Any]
    location: dict[str, Any]
    page: Page = field(repr=False)


def _preview_text(preview: JSON) -> str:
    """Playwright's rendering of an object preview: ``{a: 1, b: x}`` or ``[1, 2]``."""
    items = [
        (str(p.get("name", "")), str(p.get("value", p.get("type", ""))))
        for p in preview.get("properties", [])
        if isinstance(p, dict)
    ]
    more = ", …" if preview.get("overflow") else ""
    if preview.get("subtype") == "array":
        return "[" + ", ".join(value for _, value in items) + more + "]"
    return "{" + ", ".join(f"{name}: {value}" for name, value in items) + more + "}"


def _console_text(arg: JSON) -> str:
    preview = arg.get("preview")
    if isinstance(preview, dict) and arg.get("type") == "object" and preview.get("subtype") in (None, "array"):
        return _preview_text(preview)
    if "value" in arg:
        value = arg["value"]
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return "null"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    if "unserializableValue" in arg:
        return str(arg["unserializableValue"])
    if "description" in arg:
        return str(arg["description"])
    return str(arg.get("type", ""))


class Frame:
    """A frame of a page: the main frame or an iframe (same- or cross-origin)."""

    def __init__(self, page: Page, frame_id: str, parent: Frame | None, session: CDPSession) -> None:
        self._page = page
        self._id = frame_id
        self._parent = parent
        self._children: list[Frame] = []
        self._session = session
        self._name = ""
        self._url = ""
        self._loader_id: str | None = None
        self._committed: list[str] = []
        self._lifecycle: dict[str, set[str]] = {}
        self._context_id: int | None = None
        self._same_document_navigations = 0
        self._detached = False
        if parent is not None:
            parent._children.append(self)

    def __repr__(self) -> str:
        return f"<Frame name={self._name!r} url={self._url!r}>"

    @property
    def page(self) -> Page:
        return self._page

    @property
    def name(self) -> str:
        """The frame's ``name`` attribute (``""`` if it has none)."""
        return self._name

    @property
    def url(self) -> str:
        return self._url

    @property
    def parent_frame(self) -> Frame | None:
        return self._parent

    @property
    def child_frames(self) -> list[Frame]:
        return list(self._children)

    def is_detached(self) -> bool:
        return self._detached

    def _check_alive(self) -> None:
        self._page._check_open()
        if self._detached:
            raise Error(f"Frame was detached: {self!r}")

    async def _execution_context(self) -> tuple[CDPSession, int]:
        """The frame's main-world context, waiting for a new document to create one."""
        page = self._page
        if self._context_id is None:
            with deadline(DEFAULT_TIMEOUT, f"waiting for the execution context of {self!r}"):
                await page._changes.wait_for(
                    lambda: self._context_id is not None or self._detached or page._closed or page._crashed
                )
        self._check_alive()
        assert self._context_id is not None
        return self._session, self._context_id

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        """Evaluate a JavaScript expression, or call a function source with ``arg``.

        Returns the JSON-able result (promises are awaited). ``undefined`` is None.

        Raises:
            JavaScriptError: the page code threw; the message is the JS error's description.
            Error: the document went away during the call (a navigation).
            UsageError: ``arg`` is not JSON-serializable.
        """
        argument = call_argument(arg)
        while True:
            session, context_id = await self._execution_context()
            try:
                return await self._evaluate_in(session, context_id, expression, argument)
            except ProtocolError as exc:
                if not context_gone(exc):
                    if any(text in exc.protocol_message for text in _NOT_BY_VALUE):
                        raise UsageError(
                            f"evaluate() returns JSON-able values; this result is not: {exc.protocol_message}"
                        ) from exc
                    raise
                self._page._check_open()
                if NEVER_RAN in exc.protocol_message:
                    # The document was replaced before the call reached it: run it in the new one.
                    if self._context_id == context_id:
                        self._context_id = None
                    continue
                raise Error("Execution context was destroyed, most likely because of a navigation") from exc
            except TargetClosedError:
                self._page._check_open()
                raise

    async def _evaluate_in(self, session: CDPSession, context_id: int, expression: str, argument: JSON) -> Any:
        if not is_function_source(expression):
            result = await session.send(
                "Runtime.evaluate",
                {
                    "expression": expression,
                    "contextId": context_id,
                    "returnByValue": True,
                    "awaitPromise": True,
                    "userGesture": True,
                },
            )
            raise_for_exception(result)
            remote = result.get("result", {})
            if remote.get("type") != "function":
                return from_remote(remote)
        result = await session.send(
            "Runtime.callFunctionOn",
            {
                "functionDeclaration": expression,
                "executionContextId": context_id,
                "arguments": [argument],
                "returnByValue": True,
                "awaitPromise": True,
                "userGesture": True,
            },
        )
        raise_for_exception(result)
        return from_remote(result.get("result", {}))

    async def wait_for_function(
        self,
        expression: str,
        arg: Any = None,
        *,
        timeout: float | None = None,
        polling: Literal["raf"] | float = "raf",
    ) -> Any:
        """Wait until the expression (or function called with ``arg``) is truthy; return its value.

        Args:
            timeout: seconds (default 30; 0 waits forever).
            polling: ``"raf"`` (every animation frame) or an interval in milliseconds.

        Raises:
            TimeoutError: the value stayed falsy for ``timeout`` seconds.
            JavaScriptError: the predicate threw.
        """
        if polling != "raf" and (not isinstance(polling, (int, float)) or polling <= 0):
            raise UsageError(f'polling must be "raf" or a positive number of milliseconds, not {polling!r}')
        argument = call_argument(arg)
        declaration = wait_for_function_source(expression, is_function=is_function_source(expression))
        seconds = timeout_seconds(timeout)
        page_ms = 0 if seconds == 0 else seconds * 1000 + 1000
        with deadline(timeout, f"waiting for function {expression[:80]!r}"):
            while True:
                session, context_id = await self._execution_context()
                try:
                    result = await session.send(
                        "Runtime.callFunctionOn",
                        {
                            "functionDeclaration": declaration,
                            "executionContextId": context_id,
                            "arguments": [argument, {"value": polling}, {"value": page_ms}],
                            "returnByValue": True,
                            "awaitPromise": True,
                        },
                    )
                except ProtocolError as exc:
                    if not context_gone(exc):
                        raise
                    # A navigation replaced the document: wait in the new one.
                    if self._context_id == context_id:
                        self._context_id = None
                    continue
                except TargetClosedError:
                    self._page._check_open()
                    raise
                if "exceptionDetails" in result:
                    raise javascript_error(result["exceptionDetails"])
                return from_remote(result.get("result", {}))

    async def goto(self, url: str, *, wait_until: WaitUntil = "load", timeout: float | None = None) -> None:
        """Navigate the frame and wait for ``wait_until`` ("load", "domcontentloaded" or "commit").

        A relative ``url`` is resolved against the context's ``base_url``.

        Raises:
            NavigationError: the navigation failed; the message holds the net error.
            TimeoutError: ``wait_until`` did not happen in time.
        """
        if wait_until not in ("load", "domcontentloaded", "commit"):
            raise UsageError(f'wait_until must be "load", "domcontentloaded" or "commit", not {wait_until!r}')
        self._check_alive()
        base_url = self._page._context._base_url
        if base_url:
            url = urljoin(base_url, url)
        page = self._page
        same_document = self._same_document_navigations
        with deadline(timeout, f'navigating to "{url}", waiting until "{wait_until}"'):
            try:
                # The page's own session reaches every frame, also one that moves between
                # processes during this navigation (its OOPIF session would detach under us).
                result = await page._session.send("Page.navigate", {"url": url, "frameId": self._id})
            except TargetClosedError:
                page._check_open()
                raise
            error_text = result.get("errorText")
            if error_text:
                raise NavigationError(f"{error_text} at {url}")
            loader_id = result.get("loaderId")
            if loader_id is None:
                # Same-document navigation: Chromium answers before it reports the new URL.
                await page._changes.wait_for(
                    lambda: (
                        self._same_document_navigations != same_document
                        or self._detached
                        or page._closed
                        or page._crashed
                    )
                )
                page._check_open()
                return
            await self._wait_for_loader(loader_id, wait_until, url)

    async def _wait_for_loader(self, loader_id: str, wait_until: WaitUntil, url: str) -> None:
        page = self._page
        event = _LIFECYCLE.get(wait_until)

        def reached() -> bool:
            if page._closed or page._crashed or self._detached:
                return True
            if loader_id not in self._committed:
                return False
            if self._loader_id != loader_id:
                return True  # superseded: reported below
            return event is None or event in self._lifecycle.get(loader_id, ())

        await page._changes.wait_for(reached)
        page._check_open()
        if self._detached:
            raise NavigationError(f"Navigating frame was detached while navigating to {url}")
        if self._loader_id != loader_id:
            raise NavigationError(f"Navigation to {url} was interrupted by another navigation to {self._url}")

    # -- bookkeeping, called inline from the reader --------------------------------

    def _navigated(self, info: JSON, session: CDPSession) -> None:
        self._session = session
        self._name = str(info.get("name", ""))
        self._url = str(info.get("url", "")) + str(info.get("urlFragment", ""))
        loader_id = info.get("loaderId")
        if isinstance(loader_id, str):
            self._loader_id = loader_id
            if loader_id not in self._committed:
                self._committed.append(loader_id)
                del self._committed[:-_MAX_LOADERS]

    def _lifecycle_event(self, loader_id: str, name: str) -> None:
        if name == "init" or loader_id not in self._lifecycle:
            self._lifecycle[loader_id] = set()
            for old in list(self._lifecycle)[:-_MAX_LOADERS]:
                del self._lifecycle[old]
        self._lifecycle[loader_id].add(name)


class Page(EventEmitter):
    """A browser tab (or popup). Events: "close", "console", "pageerror", "crash", "popup",
    "websocket" (a :class:`WebSocket` the page opened, routed or not).

    Resource handling: owned by its BrowserContext; ``close()`` closes the tab, and
    closing the context or the browser closes it too.
    """

    def __init__(self, context: BrowserContext, session: CDPSession, nursery: trio.Nursery) -> None:
        super().__init__(nursery)
        self._context = context
        self._session = session
        self._target_id = session.target_id
        self._opener_id: str | None = session.target_info.get("openerId") or None
        self._frames: dict[str, Frame] = {}
        self._main_frame: Frame | None = None
        self._changes = Changes()
        self._ready = trio.Event()
        self._closed = False
        self._crashed = False
        self._close_reason = "Target page, context or browser has been closed"
        self._sessions: dict[str | None, CDPSession] = {}
        # Default contexts announced before their frame was known (frame id -> session, context id).
        self._early_contexts: dict[str, tuple[CDPSession, int]] = {}
        # Main-world execution contexts: (session id, context id) -> their frame and origin.
        self._context_frames: dict[tuple[str | None, int], Frame] = {}
        self._context_origins: dict[tuple[str | None, int], str] = {}
        self._ws_routes: list[RouteEntry] = []
        self._tunnel: Tunnel | None = None
        self._waiters: set[EventInfo[Any]] = set()
        # Observation: native sockets per session (page, OOPIFs, workers), open WebSockets.
        self._network_sockets: dict[str | None, NetworkSockets] = {}
        self._network_enabled: set[str | None] = set()
        self._worker_sessions: dict[str, CDPSession] = {}
        self._websockets: set[WebSocket] = set()
        self._websocket_waiters = 0
        self._add_frame_session(session)

    def __repr__(self) -> str:
        return f"<Page url={self.url!r}>"

    # -- public ---------------------------------------------------------------------

    @property
    def context(self) -> BrowserContext:
        return self._context

    @property
    def main_frame(self) -> Frame:
        if self._main_frame is None:  # pragma: no cover - set during initialisation
            raise Error("the page has no main frame yet")
        return self._main_frame

    @property
    def frames(self) -> list[Frame]:
        """Every attached frame, the main frame first, then its descendants depth-first."""
        result: list[Frame] = []

        def walk(frame: Frame) -> None:
            result.append(frame)
            for child in frame._children:
                walk(child)

        if self._main_frame is not None:
            walk(self._main_frame)
        return result

    def frame(self, name: str | None = None, *, url: str | Callable[[str], bool] | None = None) -> Frame | None:
        """The first frame with this name, or whose url equals / satisfies ``url``."""
        for candidate in self.frames:
            if name is not None and candidate.name != name:
                continue
            if isinstance(url, str) and candidate.url != url:
                continue
            if callable(url) and not url(candidate.url):
                continue
            return candidate
        return None

    @property
    def url(self) -> str:
        return self._main_frame.url if self._main_frame is not None else ""

    def is_closed(self) -> bool:
        return self._closed

    async def goto(self, url: str, *, wait_until: WaitUntil = "load", timeout: float | None = None) -> None:
        """Navigate the main frame; see :meth:`Frame.goto`."""
        await self.main_frame.goto(url, wait_until=wait_until, timeout=timeout)

    async def reload(self, *, wait_until: WaitUntil = "load", timeout: float | None = None) -> None:
        """Reload the page and wait for ``wait_until`` of the new document."""
        self._check_open()
        frame = self.main_frame
        seen = len(frame._committed), frame._loader_id
        with deadline(timeout, f'reloading "{self.url}", waiting until "{wait_until}"'):
            await self._session.send("Page.reload")
            await self._changes.wait_for(
                lambda: self._closed or self._crashed or frame._loader_id != seen[1] or len(frame._committed) != seen[0]
            )
            self._check_open()
            assert frame._loader_id is not None
            await frame._wait_for_loader(frame._loader_id, wait_until, self.url)

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        """Evaluate in the main frame; see :meth:`Frame.evaluate`."""
        return await self.main_frame.evaluate(expression, arg)

    async def wait_for_function(
        self,
        expression: str,
        arg: Any = None,
        *,
        timeout: float | None = None,
        polling: Literal["raf"] | float = "raf",
    ) -> Any:
        """Wait in the main frame; see :meth:`Frame.wait_for_function`."""
        return await self.main_frame.wait_for_function(expression, arg, timeout=timeout, polling=polling)

    async def close(self) -> None:
        """Close the tab and wait until it is gone. Closing a closed page does nothing."""
        if self._closed:
            return
        try:
            await self._context._browser._root.send("Target.closeTarget", {"targetId": self._target_id})
        except (ProtocolError, TargetClosedError):
            pass
        with deadline(DEFAULT_TIMEOUT, "closing the page"):
            await self._changes.wait_for(lambda: self._closed)
        if self._context._owner_page is self:
            await self._context.close()

    # -- WebSocket routing ---------------------------------------------------------

    async def route_web_socket(self, url: UrlPattern, handler: RouteHandler) -> None:
        """Route the page's WebSockets whose URL matches to ``handler(route)``.

        ``url`` is a glob (resolved against ``base_url``; ``http(s)`` means ``ws(s)``),
        a ``re.Pattern`` searched in the full URL, or a predicate ``Callable[[str], bool]``.
        The handler (sync or ``async def``) runs once per socket; the newest matching
        page route wins, then the newest matching context route. It applies to every
        socket the page creates from now on, in every frame, documents already
        loaded included. Without ``route.connect_to_server()`` the socket is mocked.

        Raises:
            UsageError: an invalid glob or pattern type.
        """
        self._check_open()
        self._ws_routes.insert(0, RouteEntry(UrlMatcher.compile(url, self._context._base_url), handler))
        await self._sync_ws_routes()

    async def unroute_web_socket(self, url: UrlPattern, handler: RouteHandler | None = None) -> None:
        """Remove routes added with this ``url`` (and ``handler``, if given); sockets already routed stay so."""
        self._ws_routes = [e for e in self._ws_routes if not _same_route(e, url, handler)]
        await self._sync_ws_routes()

    @asynccontextmanager
    async def expect_web_socket_route(
        self, url: UrlPattern, *, timeout: float | None = None
    ) -> AsyncIterator[EventInfo[WebSocketRoute]]:
        """Route the next socket matching ``url``; ``await info.value`` gives its WebSocketRoute
        (leaving the block waits for it too).

        The socket is mocked (it opens at once) and what the page sends queues for
        ``await route.receive()`` / ``async for message in route``. Call
        ``connect_to_server()`` on it to forward to the real server from then on.
        """
        self._check_open()
        info: EventInfo[WebSocketRoute] = EventInfo(timeout, f"waiting for a WebSocket matching {url!r}")
        entry = RouteEntry(UrlMatcher.compile(url, self._context._base_url), info._set, pull=True, remaining=1)
        self._ws_routes.insert(0, entry)
        self._waiters.add(info)

        def settled() -> None:
            self._waiters.discard(info)
            if entry in self._ws_routes:
                self._ws_routes.remove(entry)
                self._listener_nursery.start_soon(self._sync_ws_routes)

        info._on_settled.append(settled)
        await self._sync_ws_routes()
        try:
            yield info
        except BaseException:
            info._fail(Error("the expect block raised"))
            raise
        await info.value  # leaving the block waits for the route, as Playwright's expect_* do

    # -- observation ------------------------------------------------------------------------

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback`` every time ``event`` happens ("websocket": with the new WebSocket)."""
        super().on(event, callback)
        if event == "websocket":
            self._observe_websockets()

    def once(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback`` the next time ``event`` happens, then forget it."""
        super().once(event, callback)
        if event == "websocket":
            self._observe_websockets()

    def remove_listener(self, event: str, callback: Callable[..., Any]) -> None:
        super().remove_listener(event, callback)
        if event == "websocket":
            self._maybe_stop_observing()

    @asynccontextmanager
    async def expect_websocket(
        self, predicate: Callable[[WebSocket], bool] | None = None, timeout: float | None = None
    ) -> AsyncIterator[EventInfo[WebSocket]]:
        """Wait for a WebSocket (routed or not) that the block's actions open.

        ``await info.value`` gives it; leaving the block waits for it too. Raises
        ``TimeoutError`` after ``timeout`` seconds (default 30; 0 waits forever) and
        ``TargetClosedError`` if the page closes first.
        """
        info: EventInfo[WebSocket] = EventInfo(timeout, 'waiting for event "websocket"')

        def listener(websocket: WebSocket) -> None:
            try:
                if predicate is None or predicate(websocket):
                    info._set(websocket)
            except Exception as exc:
                info._fail(exc)

        async with self._expecting(info, listener):
            yield info

    @asynccontextmanager
    async def expect_websocket_frame(
        self,
        predicate: Callable[[str | bytes], bool] | None = None,
        *,
        url: UrlPattern | None = None,
        direction: Literal["received", "sent"] = "received",
        timeout: float | None = None,
    ) -> AsyncIterator[EventInfo[WebSocketFrame]]:
        """Wait for the next frame satisfying ``predicate`` on any socket (open now or opened by
        the block) whose URL matches ``url``; ``await info.value`` gives a :class:`WebSocketFrame`.

        Race-free "wait for a message": the waiter listens before the block's actions run,
        on sockets that exist and on sockets those actions create. ``direction`` picks frames
        the page received (default) or sent. Fails with ``TimeoutError`` or ``TargetClosedError``.
        """
        matcher = UrlMatcher.compile(url, self._context._base_url) if url is not None else None
        event = "framereceived" if direction == "received" else "framesent"
        if direction not in ("received", "sent"):
            raise UsageError('direction must be "received" or "sent"')
        info: EventInfo[WebSocketFrame] = EventInfo(timeout, f"waiting for a WebSocket frame {direction}")
        watched: list[tuple[WebSocket, Callable[[str | bytes], None]]] = []

        def watch(websocket: WebSocket) -> None:
            if info.is_done or (matcher is not None and not matcher.matches(websocket.url)):
                return

            def on_frame(payload: str | bytes) -> None:
                try:
                    if predicate is None or predicate(payload):
                        info._set(WebSocketFrame(websocket, payload, direction))
                except Exception as exc:
                    info._fail(exc)

            websocket.on(event, on_frame)
            watched.append((websocket, on_frame))

        def unwatch() -> None:
            for websocket, on_frame in watched:
                websocket.remove_listener(event, on_frame)

        info._on_settled.append(unwatch)
        for websocket in list(self._websockets):
            watch(websocket)
        async with self._expecting(info, watch):
            yield info

    @asynccontextmanager
    async def _expecting(self, info: EventInfo[Any], listener: Callable[[WebSocket], None]) -> AsyncIterator[None]:
        """Keep ``listener`` on "websocket" while ``info`` waits; leaving the block awaits it."""
        self._check_open()
        self._websocket_waiters += 1
        super().on("websocket", listener)
        self._waiters.add(info)

        def settled() -> None:
            self._waiters.discard(info)
            super(Page, self).remove_listener("websocket", listener)
            self._websocket_waiters -= 1
            self._maybe_stop_observing()

        info._on_settled.append(settled)
        self._observe_websockets()
        try:
            yield
        except BaseException:
            info._fail(Error("the expect block raised"))
            raise
        await info.value

    def _observing_websockets(self) -> bool:
        return self._websocket_waiters > 0 or self._has_listeners("websocket")

    def _observe_websockets(self) -> None:
        """Turn on the Network domain of every session: it reports the native sockets.

        Sent at once (not awaited), so it takes effect before any command sent after it.
        """
        if self._closed:
            return
        sessions = [*self._sessions.values(), *self._worker_sessions.values()]
        for session in sessions:
            if session.session_id not in self._network_enabled and not session.closed:
                self._network_enabled.add(session.session_id)
                session.connection.send_nowait("Network.enable", None, session.session_id)

    def _maybe_stop_observing(self) -> None:
        """Nobody observes and no observed socket is open: the Network domain goes off again
        (unless the context's extra HTTP headers need it)."""
        if self._observing_websockets() or self._websockets or self._closed or self._context._extra_http_headers:
            return
        for session_id in self._network_enabled:
            session = self._sessions.get(session_id) or self._worker_sessions.get(session_id or "")
            if session is not None and not session.closed:
                session.connection.send_nowait("Network.disable", None, session.session_id)
        self._network_enabled.clear()

    def _websocket_opened(self, websocket: WebSocket) -> None:
        self._websockets.add(websocket)
        self._emit("websocket", websocket)

    def _websocket_closed(self, websocket: WebSocket) -> None:
        self._websockets.discard(websocket)
        if not self._websockets:
            self._maybe_stop_observing()

    def _find_ws_route(self, url: str) -> RouteEntry | None:
        """The route for a new socket: newest page route, then newest context route."""
        for routes in (self._ws_routes, self._context._ws_routes):
            for entry in routes:
                if entry.remaining is not None and entry.remaining <= 0:
                    continue
                if entry.matcher.matches(url):
                    if entry.remaining is not None:
                        entry.remaining -= 1
                    return entry
        return None

    def _ws_filters(self) -> tuple[list[tuple[str, str]], bool]:
        filters: list[tuple[str, str]] = []
        ask = False
        for entry in (*self._ws_routes, *self._context._ws_routes):
            page_filter = entry.matcher.page_filter()
            if page_filter is None:
                ask = True
            elif page_filter not in filters:
                filters.append(page_filter)
        return filters, ask

    def _ensure_tunnel(self) -> Tunnel | None:
        if self._tunnel is None and (self._ws_routes or self._context._ws_routes):
            self._tunnel = Tunnel(self, self._listener_nursery)
            self._tunnel._filters, self._tunnel._ask = self._ws_filters()
        return self._tunnel

    async def _sync_ws_routes(self) -> None:
        """Bring the page's shim in line with its routes (install it on first use)."""
        if self._closed or self._crashed or not self._ready.is_set():
            return  # a page still initialising installs the tunnel itself
        had_tunnel = self._tunnel is not None
        tunnel = self._ensure_tunnel()
        if tunnel is None:
            return
        try:
            if had_tunnel:
                await tunnel.set_filters(*self._ws_filters())
            else:
                await gather(*(tunnel.install(s) for s in list(self._sessions.values()) if not s.closed))
        except TargetClosedError:
            self._check_open()
            raise

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        """Raise TargetClosedError once the page is closed or crashed (a crashed page can only be closed)."""
        if self._closed or self._crashed:
            raise TargetClosedError(self._close_reason)

    def _add_frame_session(self, session: CDPSession) -> None:
        """Track frames, contexts and child targets of one session (the page or an OOPIF)."""
        self._sessions[session.session_id] = session
        self._watch_network_sockets(session)
        on = session.on
        on("Page.frameAttached", lambda p: self._on_frame_attached(session, p))
        on("Page.frameNavigated", lambda p: self._on_frame_navigated(session, p))
        on("Page.navigatedWithinDocument", self._on_navigated_within_document)
        on("Page.frameDetached", lambda p: self._on_frame_detached(session, p))
        on("Page.lifecycleEvent", self._on_lifecycle_event)
        on("Runtime.executionContextCreated", lambda p: self._on_context_created(session, p))
        on("Runtime.executionContextDestroyed", lambda p: self._on_context_destroyed(session, p))
        on("Runtime.executionContextsCleared", lambda p: self._on_contexts_cleared(session))
        on("Runtime.consoleAPICalled", self._on_console)
        on("Runtime.exceptionThrown", self._on_exception)
        on("Target.attachedToTarget", self._on_child_attached)
        on("Target.detachedFromTarget", self._on_child_detached)
        if session is self._session:
            on("Inspector.targetCrashed", self._on_crashed)

    async def _initialize(self) -> None:
        """Configure the paused target, then let it run. Runs in the browser's nursery."""
        try:
            await self._configure_session(self._session)
        finally:
            self._ready.set()
            self._context._browser._changes.notify()

    async def _configure_session(self, session: CDPSession) -> None:
        context = self._context
        calls: list[Awaitable[Any]] = [
            session.send("Page.enable"),
            session.send("Page.getFrameTree"),
            session.send("Page.setLifecycleEventsEnabled", {"enabled": True}),
            session.send("Runtime.enable"),
            session.send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}),
        ]
        if self._observing_websockets() and session.session_id not in self._network_enabled:
            self._network_enabled.add(session.session_id)
            calls.append(session.send("Network.enable"))
        if context._extra_http_headers:
            calls.append(session.send("Network.enable"))
            calls.append(session.send("Network.setExtraHTTPHeaders", {"headers": context._extra_http_headers}))
        if context._ignore_https_errors:
            calls.append(session.send("Security.setIgnoreCertificateErrors", {"ignore": True}))
        proxy = context._proxy
        if proxy is not None and proxy.username is not None:
            calls.append(_answer_proxy_challenges(session, proxy.username, proxy.password or ""))
        tunnel = self._ensure_tunnel()
        if tunnel is not None:
            calls.append(tunnel.install(session))
        try:
            results = await gather(*calls)
            self._apply_frame_tree(session, results[1].get("frameTree", {}), None)
        except (TargetClosedError, ProtocolError):
            if not session.closed:
                raise
        finally:
            if not session.closed:
                try:
                    await session.send("Runtime.runIfWaitingForDebugger")
                except (TargetClosedError, ProtocolError):
                    if not session.closed:
                        raise

    def _apply_frame_tree(self, session: CDPSession, tree: JSON, parent: Frame | None) -> None:
        """Fill in frames the events have not told us about (the tree may be older than them)."""
        info = tree.get("frame")
        if not isinstance(info, dict):
            return
        frame_id = str(info.get("id"))
        frame = self._frames.get(frame_id)
        if frame is None:
            frame = self._new_frame(
                frame_id, parent if parent is not None else self._frames.get(str(info.get("parentId"))), session
            )
            frame._navigated(info, session)
        elif frame._loader_id is None:
            frame._navigated(info, session)
        else:
            frame._session = session
        for child in tree.get("childFrames", ()):
            self._apply_frame_tree(session, child, frame)
        self._changes.notify()

    def _new_frame(self, frame_id: str, parent: Frame | None, session: CDPSession) -> Frame:
        frame = Frame(self, frame_id, parent, session)
        self._frames[frame_id] = frame
        early = self._early_contexts.pop(frame_id, None)
        if early is not None:
            frame._session, frame._context_id = early
            self._context_frames[(early[0].session_id, early[1])] = frame
        if parent is None and self._main_frame is None:
            self._main_frame = frame
        return frame

    def _on_frame_attached(self, session: CDPSession, params: JSON) -> None:
        frame_id = params["frameId"]
        if frame_id not in self._frames:
            self._new_frame(frame_id, self._frames.get(params.get("parentFrameId", "")), session)
            self._changes.notify()

    def _on_frame_navigated(self, session: CDPSession, params: JSON) -> None:
        info = params["frame"]
        frame = self._frames.get(info["id"])
        if frame is None:
            frame = self._new_frame(info["id"], self._frames.get(info.get("parentId", "")), session)
        frame._navigated(info, session)
        self._changes.notify()

    def _on_navigated_within_document(self, params: JSON) -> None:
        frame = self._frames.get(params["frameId"])
        if frame is not None:
            frame._url = params["url"]
            frame._same_document_navigations += 1
            self._changes.notify()

    def _on_frame_detached(self, session: CDPSession, params: JSON) -> None:
        if params.get("reason") == "swap":
            return  # the frame lives on in another process: an OOPIF session takes it over
        frame = self._frames.get(params["frameId"])
        if frame is not None:
            self._remove_frame(frame)
            self._changes.notify()

    def _remove_frame(self, frame: Frame) -> None:
        for child in list(frame._children):
            self._remove_frame(child)
        frame._detached = True
        frame._context_id = None
        self._frames.pop(frame._id, None)
        if frame._parent is not None and frame in frame._parent._children:
            frame._parent._children.remove(frame)

    def _on_lifecycle_event(self, params: JSON) -> None:
        frame = self._frames.get(params["frameId"])
        if frame is not None:
            frame._lifecycle_event(params["loaderId"], params["name"])
            self._changes.notify()

    def _on_context_created(self, session: CDPSession, params: JSON) -> None:
        context = params["context"]
        aux = context.get("auxData") or {}
        if not aux.get("isDefault"):
            return
        frame_id = str(aux.get("frameId", ""))
        frame = self._frames.get(frame_id)
        self._context_origins[(session.session_id, context["id"])] = str(context.get("origin", ""))
        if frame is not None:
            self._context_frames[(session.session_id, context["id"])] = frame
            frame._session = session
            frame._context_id = context["id"]
            self._changes.notify()
        else:
            self._early_contexts[frame_id] = (session, context["id"])

    def _on_context_destroyed(self, session: CDPSession, params: JSON) -> None:
        context_id = params.get("executionContextId")
        self._context_frames.pop((session.session_id, context_id), None)  # type: ignore[arg-type]
        self._context_origins.pop((session.session_id, context_id), None)  # type: ignore[arg-type]
        for frame_id, (owner, early_id) in list(self._early_contexts.items()):
            if owner is session and early_id == context_id:
                del self._early_contexts[frame_id]
        for frame in self._frames.values():
            if frame._session is session and frame._context_id == context_id:
                frame._context_id = None

    def _on_contexts_cleared(self, session: CDPSession) -> None:
        for key in [key for key in self._context_frames if key[0] == session.session_id]:
            del self._context_frames[key]
            self._context_origins.pop(key, None)
        for frame_id, (owner, _) in list(self._early_contexts.items()):
            if owner is session:
                del self._early_contexts[frame_id]
        for frame in self._frames.values():
            if frame._session is session:
                frame._context_id = None

    def _on_console(self, params: JSON) -> None:
        if not self._has_listeners("console"):
            return
        args = params.get("args", [])
        frames = (params.get("stackTrace") or {}).get("callFrames") or [{}]
        top = frames[0]
        message = ConsoleMessage(
            type=str(params.get("type", "log")),
            text=" ".join(_console_text(arg) for arg in args),
            args=[
                from_remote(arg) if "value" in arg or "unserializableValue" in arg else _console_text(arg)
                for arg in args
            ],
            location={
                "url": top.get("url", ""),
                "lineNumber": top.get("lineNumber", 0),
                "columnNumber": top.get("columnNumber", 0),
            },
            page=self,
        )
        self._emit("console", message)

    def _on_exception(self, params: JSON) -> None:
        if self._has_listeners("pageerror"):
            self._emit("pageerror", javascript_error(params.get("exceptionDetails", {})))

    def _on_crashed(self, params: JSON) -> None:
        self._crashed = True
        self._close_reason = "Target crashed"
        # The renderer is gone: what waits for it never gets an answer. Page.close() still works.
        connection = self._context._browser._connection
        for session in list(self._sessions.values()):
            connection.fail_pending(session, self._close_reason)
        if self._tunnel is not None:
            self._tunnel.close()  # every document died with the renderer
        for waiter in list(self._waiters):
            waiter._fail(TargetClosedError(self._close_reason))
        self._changes.notify()
        self._emit("crash", self)

    def _watch_network_sockets(self, session: CDPSession) -> None:
        sockets = NetworkSockets(self)
        sockets.attach(session)
        self._network_sockets[session.session_id] = sockets

    def _on_child_attached(self, params: JSON) -> None:
        info = params.get("targetInfo", {})
        session = self._context._browser._connection.session(params["sessionId"])
        if session is None:
            return
        if info.get("type") == "iframe":
            self._add_frame_session(session)
            self._context._browser._nursery.start_soon(self._configure_session, session)
            return
        if info.get("type") == "worker":
            # A dedicated worker: its native sockets are observed like the page's.
            self._worker_sessions[str(session.session_id)] = session
            self._watch_network_sockets(session)
            if self._observing_websockets():
                self._network_enabled.add(session.session_id)
                session.connection.send_nowait("Network.enable", None, session.session_id)
        session.connection.send_nowait("Runtime.runIfWaitingForDebugger", None, session.session_id)

    def _on_child_detached(self, params: JSON) -> None:
        session_id = params.get("sessionId")
        self._sessions.pop(session_id, None)
        if isinstance(session_id, str):
            self._worker_sessions.pop(session_id, None)
            self._network_enabled.discard(session_id)
            sockets = self._network_sockets.pop(session_id, None)
            if sockets is not None:
                sockets.close_all()
        if self._tunnel is not None and isinstance(session_id, str):
            self._tunnel.session_gone(session_id)

    def _on_target_closed(self, reason: str | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        if reason:
            self._close_reason = reason
        for frame in list(self._frames.values()):
            frame._detached = True
        if self._tunnel is not None:
            self._tunnel.close()
        for waiter in list(self._waiters):
            waiter._fail(TargetClosedError(self._close_reason))
        for websocket in list(self._websockets):
            websocket._page_closed()
        self._ready.set()
        self._changes.notify()
        self._context._page_closed(self)
        self._emit("close", self)


async def _answer_proxy_challenges(session: CDPSession, username: str, password: str) -> None:
    """Give the context's proxy credentials to Chromium when its proxy asks (HTTP 407).

    Chromium reports auth challenges only for intercepted requests, so every request of
    the session is paused and continued at once (as Playwright does with credentials).
    A challenge from a site (401) gets the browser's default answer; a request whose
    proxy challenges again after we answered gets no second try.
    """
    answered: dict[str, None] = {}  # requests we gave credentials to (bounded: Chromium caches them)
    send = session.connection.send_nowait

    def paused(params: JSON) -> None:
        send("Fetch.continueRequest", {"requestId": params["requestId"]}, session.session_id)

    def challenged(params: JSON) -> None:
        request_id = params["requestId"]
        if params.get("authChallenge", {}).get("source") != "Proxy":
            answer: JSON = {"response": "Default"}
        elif request_id in answered:
            del answered[request_id]
            answer = {"response": "CancelAuth"}
        else:
            answered[request_id] = None
            if len(answered) > 1024:
                del answered[next(iter(answered))]
            answer = {"response": "ProvideCredentials", "username": username, "password": password}
        send("Fetch.continueWithAuth", {"requestId": request_id, "authChallengeResponse": answer}, session.session_id)

    session.on("Fetch.requestPaused", paused)
    session.on("Fetch.authRequired", challenged)
    await session.send("Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]})


def _same_route(entry: RouteEntry, url: UrlPattern, handler: RouteHandler | None) -> bool:
    return entry.matcher.pattern == url and (handler is None or entry.handler == handler)
