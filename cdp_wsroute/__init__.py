"""Playwright-grade WebSocket routing for Chromium, in pure Python on trio.

This module is the whole public API; everything else is private.
"""

from ._browser import Browser as Browser
from ._browser import BrowserContext as BrowserContext
from ._browser import connect as connect
from ._browser import launch as launch
from ._browsers import BrowserVersionWarning as BrowserVersionWarning
from ._connection import CDPSession as CDPSession
from ._connection import RawEvent as RawEvent
from ._errors import BrowserError as BrowserError
from ._errors import ConnectionClosedError as ConnectionClosedError
from ._errors import Error as Error
from ._errors import JavaScriptError as JavaScriptError
from ._errors import LaunchError as LaunchError
from ._errors import NavigationError as NavigationError
from ._errors import ProtocolError as ProtocolError
from ._errors import TargetClosedError as TargetClosedError
from ._errors import TimeoutError as TimeoutError
from ._errors import UpstreamError as UpstreamError
from ._errors import UsageError as UsageError
from ._errors import WebSocketClosedError as WebSocketClosedError
from ._events import EventInfo as EventInfo
from ._page import ConsoleMessage as ConsoleMessage
from ._page import Frame as Frame
from ._page import Page as Page
from ._route import HandshakeResponse as HandshakeResponse
from ._route import WebSocketRoute as WebSocketRoute
from ._route import enable_trace as enable_trace
from ._websocket import WebSocket as WebSocket
from ._websocket import WebSocketFrame as WebSocketFrame

__version__ = "0.1.0"

__all__ = [
    "Browser",
    "BrowserContext",
    "BrowserError",
    "BrowserVersionWarning",
    "CDPSession",
    "ConnectionClosedError",
    "ConsoleMessage",
    "Error",
    "EventInfo",
    "Frame",
    "HandshakeResponse",
    "JavaScriptError",
    "LaunchError",
    "NavigationError",
    "Page",
    "ProtocolError",
    "RawEvent",
    "TargetClosedError",
    "TimeoutError",
    "UpstreamError",
    "UsageError",
    "WebSocket",
    "WebSocketClosedError",
    "WebSocketFrame",
    "WebSocketRoute",
    "connect",
    "enable_trace",
    "launch",
]
