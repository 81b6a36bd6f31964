"""Observation: every WebSocket a page opens, routed or native, as a Playwright-style object.

Native sockets are reported by CDP's Network domain (``Network.webSocket*``
events of the page's sessions: the page, its out-of-process iframes and its
dedicated workers), enabled only while someone observes the page. Routed sockets
are reported by the route runtime (``_route``): a mocked socket's frames as the
page sends and receives them, a connected one's as they cross the wire to and
from the server.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._errors import Error, TargetClosedError, UsageError
from ._events import EventEmitter, EventInfo

if TYPE_CHECKING:
    from ._connection import JSON, CDPSession
    from ._page import Page

__all__ = ["WebSocket", "WebSocketFrame"]

WebSocketEvent = Literal["framesent", "framereceived", "close", "socketerror"]
_EVENTS = ("framesent", "framereceived", "close", "socketerror")


@dataclass(frozen=True, slots=True)
class WebSocketFrame:
    """A frame observed on a page's WebSocket (see ``Page.expect_websocket_frame``)."""

    websocket: WebSocket
    payload: str | bytes
    direction: Literal["sent", "received"]


class WebSocket(EventEmitter):
    """A WebSocket the page opened, routed or not. Events:

    - ``"framesent"`` / ``"framereceived"``: the payload, ``str`` for text and ``bytes``
      for binary frames (control frames are not reported);
    - ``"close"``: the WebSocket itself, once it is closed;
    - ``"socketerror"``: an error message, e.g. ``"Error during WebSocket handshake:
      Unexpected response code: 404"``.
    """

    def __init__(self, page: Page, url: str) -> None:
        super().__init__(page._listener_nursery)
        self._page = page
        self._url = url
        self._closed = False
        self._waiters: set[EventInfo[Any]] = set()

    def __repr__(self) -> str:
        return f"<WebSocket url={self._url!r}>"

    @property
    def url(self) -> str:
        return self._url

    def is_closed(self) -> bool:
        return self._closed

    @asynccontextmanager
    async def expect_event(
        self, event: WebSocketEvent, predicate: Callable[[Any], bool] | None = None, timeout: float | None = None
    ) -> AsyncIterator[EventInfo[Any]]:
        """Wait for ``event`` (whose argument satisfies ``predicate``) caused by the block's actions.

        ``await info.value`` gives the event's argument. It fails with
        ``Error("Socket closed")`` if the socket closes first, with
        ``TargetClosedError`` if the page closes first, and with ``TimeoutError``
        after ``timeout`` seconds (default 30; 0 waits forever).
        """
        info = self._waiter(event, predicate, timeout)
        yield info

    async def wait_for_event(
        self, event: WebSocketEvent, predicate: Callable[[Any], bool] | None = None, timeout: float | None = None
    ) -> Any:
        """Wait for the next ``event`` whose argument satisfies ``predicate``; see :meth:`expect_event`."""
        return await self._waiter(event, predicate, timeout).value

    def _waiter(self, event: str, predicate: Callable[[Any], bool] | None, timeout: float | None) -> EventInfo[Any]:
        if event not in _EVENTS:
            raise UsageError(f"unknown WebSocket event {event!r}: one of {', '.join(_EVENTS)}")
        info: EventInfo[Any] = EventInfo(timeout, f'waiting for event "{event}" of {self!r}')
        if self._page._closed:
            info._fail(TargetClosedError(self._page._close_reason))
            return info
        if self._closed:
            if event == "close":
                info._set(self)  # it has happened: waiting for it would never end
            else:
                info._fail(Error("Socket closed"))
            return info

        def listener(value: Any) -> None:
            try:
                if predicate is None or predicate(value):
                    info._set(value)
            except Exception as exc:
                info._fail(exc)

        def settled() -> None:
            self._waiters.discard(info)
            self.remove_listener(event, listener)

        self.on(event, listener)
        self._waiters.add(info)
        info._on_settled.append(settled)
        return info

    # -- what the page's sessions and the route runtime report ---------------------------------

    def _sent(self, payload: str | bytes) -> None:
        self._emit("framesent", payload)

    def _received(self, payload: str | bytes) -> None:
        self._emit("framereceived", payload)

    def _error(self, message: str) -> None:
        if not self._closed:
            self._emit("socketerror", message)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._emit("close", self)
        for waiter in list(self._waiters):
            waiter._fail(Error("Socket closed"))
        self._page._websocket_closed(self)

    def _page_closed(self) -> None:
        """The page closed first: waiters fail with TargetClosedError, then the socket closes."""
        for waiter in list(self._waiters):
            waiter._fail(TargetClosedError(self._page._close_reason))
        self._close()


class NetworkSockets:
    """The native sockets of one CDP session, from its ``Network.webSocket*`` events."""

    def __init__(self, page: Page) -> None:
        self._page = page
        self._sockets: dict[str, WebSocket] = {}

    def attach(self, session: CDPSession) -> None:
        on = session.on
        on("Network.webSocketCreated", self._created)
        on("Network.webSocketFrameSent", self._frame_sent)
        on("Network.webSocketFrameReceived", self._frame_received)
        on("Network.webSocketFrameError", self._frame_error)
        on("Network.webSocketClosed", self._closed)

    def _created(self, params: JSON) -> None:
        request_id = params.get("requestId")
        url = params.get("url")
        if not isinstance(request_id, str) or not isinstance(url, str) or request_id in self._sockets:
            return
        if not self._page._observing_websockets():
            return
        websocket = WebSocket(self._page, url)
        self._sockets[request_id] = websocket
        self._page._websocket_opened(websocket)

    def _frame_sent(self, params: JSON) -> None:
        websocket = self._sockets.get(params.get("requestId", ""))
        if websocket is not None and websocket._has_listeners("framesent"):
            payload = _payload(params.get("response"))
            if payload is not None:
                websocket._sent(payload)

    def _frame_received(self, params: JSON) -> None:
        websocket = self._sockets.get(params.get("requestId", ""))
        if websocket is not None and websocket._has_listeners("framereceived"):
            payload = _payload(params.get("response"))
            if payload is not None:
                websocket._received(payload)

    def _frame_error(self, params: JSON) -> None:
        websocket = self._sockets.get(params.get("requestId", ""))
        if websocket is not None:
            websocket._error(str(params.get("errorMessage", "WebSocket error")))

    def _closed(self, params: JSON) -> None:
        websocket = self._sockets.pop(params.get("requestId", ""), None)
        if websocket is not None:
            websocket._close()

    def close_all(self) -> None:
        """The session went away (an iframe or worker detached): its sockets are gone with it."""
        sockets, self._sockets = self._sockets, {}
        for websocket in sockets.values():
            websocket._close()


def _payload(response: object) -> str | bytes | None:
    """A data frame's payload (text, or binary from base64); None for control frames."""
    if not isinstance(response, dict):
        return None
    opcode = response.get("opcode")
    data = response.get("payloadData")
    if not isinstance(data, str):
        return None
    if opcode == 1:
        return data
    if opcode == 2:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None
