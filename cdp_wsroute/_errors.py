"""The exceptions cdp_wsroute raises, sorted by whose fault the failure is.

::

    Error                               base of everything raised here
    ├── TimeoutError                    a wait ran out of time (also a builtins.TimeoutError)
    ├── UsageError                      the caller misused the API (your code)
    ├── TargetClosedError               the page, context or browser is gone
    │   └── ConnectionClosedError       the CDP connection to the browser is gone
    ├── BrowserError                    the browser failed (external circumstances)
    │   ├── LaunchError                 the browser did not start
    │   └── ProtocolError               the browser answered a CDP command with an error
    ├── NavigationError                 a navigation failed (e.g. net::ERR_CONNECTION_REFUSED)
    ├── JavaScriptError                 page JavaScript threw while we evaluated it
    ├── UpstreamError                   a routed socket's real server failed (refused, TLS, dropped...)
    └── WebSocketClosedError            route.receive() on a side that has closed

Lower libraries' exceptions are translated at exactly one place each, with
``raise ... from exc`` so the original stays reachable as ``__cause__``.
"""

from __future__ import annotations

import builtins

__all__ = [
    "BrowserError",
    "ConnectionClosedError",
    "Error",
    "JavaScriptError",
    "LaunchError",
    "NavigationError",
    "ProtocolError",
    "TargetClosedError",
    "TimeoutError",
    "UpstreamError",
    "UsageError",
    "WebSocketClosedError",
]


class Error(Exception):
    """Base class of every exception cdp_wsroute raises."""

    @property
    def message(self) -> str:
        """The error message, as Playwright's ``Error.message``."""
        return str(self)


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - Playwright's name, on purpose
    """A wait ran out of time. The message names what was waited for."""


class UsageError(Error):
    """The caller used the API wrongly: a bad argument, or a call in the wrong state."""


class TargetClosedError(Error):
    """The page, context or browser the call needed has been closed."""

    def __init__(self, message: str = "Target page, context or browser has been closed") -> None:
        super().__init__(message)


class ConnectionClosedError(TargetClosedError):
    """The CDP connection to the browser closed (the browser exited or the pipe broke)."""


class BrowserError(Error):
    """The browser failed in a way the caller did not cause."""


class LaunchError(BrowserError):
    """The browser could not be started or connected to."""


class ProtocolError(BrowserError):
    """The browser answered a CDP command with an error.

    Attributes:
        method: the CDP method, e.g. ``"Page.navigate"``.
        code: the JSON-RPC error code the browser sent.
    """

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method
        self.code = code
        self.protocol_message = message


class NavigationError(Error):
    """A navigation failed; the message holds the network error, e.g. ``net::ERR_CONNECTION_REFUSED``."""


class JavaScriptError(Error):
    """JavaScript evaluated in the page threw; the message is the page's error description."""


class UpstreamError(Error):
    """A routed socket's real server connection failed: refused, rejected, TLS, dropped or a protocol error.

    Readable as ``server_route.error`` once the server-side route has closed.
    """


class WebSocketClosedError(Error):
    """``route.receive()`` on a side that has closed.

    Attributes:
        code, reason: the close code and reason, None when unknown.
    """

    def __init__(self, message: str, code: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
