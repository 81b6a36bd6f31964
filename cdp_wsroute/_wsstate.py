"""The routed socket's forwarding and close state machine. Pure: no I/O, no trio.

Theory of operation
-------------------
A routed socket has a *page side* (the WebSocket object in the page, driven by
the shim) and, once ``connect_to_server()`` is called, a *server side* (the real
upstream connection Python opens). :class:`RouteState` takes what happens on
either side as method calls and answers with a list of actions, in order, for
the I/O layer (``_route.py``) to carry out. Everything that decides *where a
message or a close goes* lives here and nowhere else:

* **Open.** A mocked page socket opens when the route handler returns or at the
  first ``route.send()``, whichever is first. A connected one opens when the
  upstream handshake succeeds, with the server's subprotocol; what the route
  sends to the page before that waits for it (a real server cannot talk before
  the handshake either).
* **Messages.** Page -> route: to the page-side handler if one is set (or the
  pull queue), else to the server if connected, else dropped. Server -> route:
  to the server-side handler if one is set, else to the page. Route -> server
  while the upstream is still connecting: queued and sent, in order, on open.
* **Closes.** A page ``close(code, reason)`` goes to the page-side close handler
  if set (the page stays CLOSING until ``route.close()``); else to the server
  if connected (the page then closes when the server answers); else, mocked,
  the page's close is echoed back at once, as a server would. An upstream close
  goes to the server-side close handler if set, else to the page (same code,
  reason, clean). ``route.close()`` closes the page side and, unless a page-side
  close handler is set, the server side with the same code and reason.
* **Failures** follow native Chromium: a failed handshake or invalid frames give
  the page ``error`` then ``close`` 1006 (not clean); a connection dropped after
  open gives only ``close`` 1006. The server-side close handler, if set, gets
  ``(1006, reason)`` instead and decides.
* **Lifecycle.** When the document goes away (navigation, detach, page close,
  crash) both close handlers get ``(None, None)`` and the upstream is closed
  with 1001 (going away), as a browser does.

Nothing is ever sent to a side after it is closed, and each close reaches each
side at most once, so forwarding can never loop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CallCloseHandler",
    "CallMessageHandler",
    "PageClose",
    "PageError",
    "PageOpen",
    "PageSend",
    "RouteState",
    "ServerClose",
    "ServerConnect",
    "ServerSend",
    "Side",
    "SideState",
]


class Side(enum.Enum):
    PAGE = "page"
    SERVER = "server"


class SideState(enum.Enum):
    NONE = "none"  # the server side before connect_to_server()
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"  # a close was started on this side, the answer is awaited
    CLOSED = "closed"


Data = str | bytes


@dataclass(frozen=True, slots=True)
class PageOpen:
    protocol: str
    extensions: str


@dataclass(frozen=True, slots=True)
class PageSend:
    data: Data


@dataclass(frozen=True, slots=True)
class PageError:
    pass


@dataclass(frozen=True, slots=True)
class PageClose:
    code: int | None  # None: 1005, "no status"
    reason: str
    was_clean: bool


@dataclass(frozen=True, slots=True)
class ServerConnect:
    pass


@dataclass(frozen=True, slots=True)
class ServerSend:
    data: Data


@dataclass(frozen=True, slots=True)
class ServerClose:
    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class CallMessageHandler:
    side: Side
    data: Data


@dataclass(frozen=True, slots=True)
class CallCloseHandler:
    side: Side
    code: int | None
    reason: str | None


Action = (
    PageOpen
    | PageSend
    | PageError
    | PageClose
    | ServerConnect
    | ServerSend
    | ServerClose
    | CallMessageHandler
    | CallCloseHandler
)


class RouteState:
    """One routed socket's state. See the module docstring for the rules.

    Attributes:
        page, server: the state of each side.
        message_handler, close_handler: per side, whether the user took over
            messages (``on_message`` or the pull API) or closes (``on_close``).
    """

    def __init__(self, requested_protocols: tuple[str, ...] = ()) -> None:
        self.requested_protocols = requested_protocols
        self.page = SideState.CONNECTING
        self.server = SideState.NONE
        self.handler_done = False
        self.message_handler = {Side.PAGE: False, Side.SERVER: False}
        self.close_handler = {Side.PAGE: False, Side.SERVER: False}
        self._to_page: list[Action] = []  # what waits for the page to open (connected routes)
        self._to_server: list[ServerSend] = []  # what waits for the upstream to open

    @property
    def connected(self) -> bool:
        return self.server is not SideState.NONE

    @property
    def finished(self) -> bool:
        """Both sides are closed: nothing more can happen."""
        return self.page is SideState.CLOSED and self.server in (SideState.NONE, SideState.CLOSED)

    # -- the route (Python) acts -------------------------------------------------------

    def connect(self) -> list[Action]:
        """``connect_to_server()``; the caller has checked it is the first call."""
        if self.page is SideState.CLOSED:
            self.server = SideState.CLOSED
            return []
        self.server = SideState.CONNECTING
        return [ServerConnect()]

    def handler_returned(self) -> list[Action]:
        """The route handler finished: a mocked socket opens now."""
        self.handler_done = True
        if not self.connected and self.page is SideState.CONNECTING:
            return self._open_page_mocked()
        return []

    def route_send(self, side: Side, data: Data) -> list[Action]:
        """``route.send(data)`` on the page-side route (PAGE) or the server-side route (SERVER)."""
        if side is Side.PAGE:
            if self.page is SideState.CONNECTING:
                if self.connected:
                    self._to_page.append(PageSend(data))
                    return []
                return [*self._open_page_mocked(), PageSend(data)]
            if self.page is SideState.OPEN:
                return [PageSend(data)]
            return []
        if self.server is SideState.CONNECTING:
            self._to_server.append(ServerSend(data))
            return []
        if self.server is SideState.OPEN:
            return [ServerSend(data)]
        return []

    def route_close(self, side: Side, code: int | None, reason: str) -> list[Action]:
        """``await route.close(code, reason)`` on one side."""
        if side is Side.PAGE:
            actions = self._close_page(code, reason, was_clean=True)
            if actions and not self.close_handler[Side.PAGE]:
                actions += self._close_server(code, reason)
            return actions
        return self._close_server(code, reason)

    # -- the page acts -----------------------------------------------------------------

    def page_message(self, data: Data) -> list[Action]:
        if self.page is not SideState.OPEN:
            return []
        if self.message_handler[Side.PAGE]:
            return [CallMessageHandler(Side.PAGE, data)]
        if self.connected:
            return self.route_send(Side.SERVER, data)
        return []

    def page_close(self, code: int | None, reason: str, *, connecting: bool = False) -> list[Action]:
        """The page called ``ws.close(code, reason)``; it is CLOSING now."""
        if self.page in (SideState.CLOSING, SideState.CLOSED):
            return []
        if connecting or self.page is SideState.CONNECTING:
            # Chromium fails a socket closed before it opened: error, then 1006.
            self.page = SideState.CLOSED
            self._to_page.clear()
            actions: list[Action] = [PageError(), PageClose(1006, "", False)]
            if self.close_handler[Side.PAGE]:
                actions.append(CallCloseHandler(Side.PAGE, 1006, ""))
            return actions + self._close_server(1001, "")
        self.page = SideState.CLOSING
        if self.close_handler[Side.PAGE]:
            return [CallCloseHandler(Side.PAGE, code, reason)]
        if self.server in (SideState.CONNECTING, SideState.OPEN):
            return self._close_server(code, reason)
        # Mocked (or the server is gone already): answer like a server echoing the close.
        return self._close_page(code, reason, was_clean=True)

    def page_lost(self) -> list[Action]:
        """The page dropped the socket (back/forward cache); it showed error + 1006 itself."""
        if self.page is SideState.CLOSED:
            return []
        self.page = SideState.CLOSED
        self._to_page.clear()
        actions: list[Action] = []
        if self.close_handler[Side.PAGE]:
            actions.append(CallCloseHandler(Side.PAGE, None, None))
        return actions + self._close_server(1001, "")

    # -- the server acts -----------------------------------------------------------------

    def server_opened(self, protocol: str, extensions: str) -> list[Action]:
        if self.server is not SideState.CONNECTING:
            return []
        self.server = SideState.OPEN
        actions: list[Action] = list(self._to_server)
        self._to_server.clear()
        if self.page is SideState.CONNECTING:
            self.page = SideState.OPEN
            actions.append(PageOpen(protocol, extensions))
            actions += self._to_page
        self._to_page.clear()
        return actions

    def server_message(self, data: Data) -> list[Action]:
        if self.server is not SideState.OPEN and self.server is not SideState.CLOSING:
            return []
        if self.message_handler[Side.SERVER]:
            return [CallMessageHandler(Side.SERVER, data)]
        return self.route_send(Side.PAGE, data)

    def server_closed(self, code: int | None, reason: str) -> list[Action]:
        """The upstream finished a clean close (either side started it)."""
        if self.server in (SideState.NONE, SideState.CLOSED):
            return []
        self.server = SideState.CLOSED
        self._to_server.clear()
        if self.close_handler[Side.SERVER]:
            return [CallCloseHandler(Side.SERVER, code, reason)]
        if self.page is SideState.CONNECTING:
            # Closed before the page ever opened: to the page, a failed connection.
            self.page = SideState.CLOSED
            self._to_page.clear()
            return [PageError(), PageClose(1006, "", False)]
        return self._close_page(code, reason, was_clean=True)

    def server_failed(self, reason: str, *, page_error: bool) -> list[Action]:
        """The upstream failed: refused, rejected, TLS, protocol error (page_error) or dropped."""
        if self.server in (SideState.NONE, SideState.CLOSED):
            return []
        self.server = SideState.CLOSED
        self._to_server.clear()
        if self.close_handler[Side.SERVER]:
            return [CallCloseHandler(Side.SERVER, 1006, reason)]
        if self.page is SideState.CLOSED:
            return []
        never_opened = self.page is SideState.CONNECTING
        self.page = SideState.CLOSED
        self._to_page.clear()
        # Chromium: a failed handshake or a bad frame fires error; a dropped connection does not.
        actions: list[Action] = [PageError()] if page_error or never_opened else []
        return [*actions, PageClose(1006, "", False)]

    # -- the document goes away ----------------------------------------------------------

    def lifecycle_closed(self) -> list[Action]:
        """Navigation, detach, page close or crash: both sides end, handlers get (None, None)."""
        actions: list[Action] = []
        if self.page is not SideState.CLOSED:
            self.page = SideState.CLOSED
            self._to_page.clear()
            if self.close_handler[Side.PAGE]:
                actions.append(CallCloseHandler(Side.PAGE, None, None))
        if self.server in (SideState.CONNECTING, SideState.OPEN, SideState.CLOSING):
            if self.server is not SideState.CLOSING:  # a closing upstream has had its one close
                actions.append(ServerClose(1001, ""))
            self.server = SideState.CLOSED
            self._to_server.clear()
            if self.close_handler[Side.SERVER]:
                actions.append(CallCloseHandler(Side.SERVER, None, None))
        return actions

    def handler_failed(self) -> list[Action]:
        """A handler raised: the page sees 1011 (internal error), the upstream closes with 1011."""
        actions = self._close_page(1011, "", was_clean=True)
        return actions + self._close_server(1011, "")

    # -- helpers -----------------------------------------------------------------------------

    def _open_page_mocked(self) -> list[Action]:
        self.page = SideState.OPEN
        # No server negotiates a subprotocol: the page gets the first one it asked for.
        protocol = self.requested_protocols[0] if self.requested_protocols else ""
        return [PageOpen(protocol, "")]

    def _close_page(self, code: int | None, reason: str, *, was_clean: bool) -> list[Action]:
        if self.page is SideState.CLOSED:
            return []
        never_opened = self.page is SideState.CONNECTING
        self.page = SideState.CLOSED
        self._to_page.clear()
        if never_opened:
            # A server that closes before the handshake completes fails the connection.
            return [PageError(), PageClose(1006, "", False)]
        return [PageClose(code, reason, was_clean)]

    def _close_server(self, code: int | None, reason: str) -> list[Action]:
        if self.server in (SideState.CONNECTING, SideState.OPEN):
            self.server = SideState.CLOSING
            self._to_server.clear()
            return [ServerClose(code, reason)]
        return []
