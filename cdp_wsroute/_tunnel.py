"""The tunnel between a page's WebSocket shim and Python: one per page, once a route applies to it.

Page -> Python: the shim batches everything one page task produced into calls of
a CDP binding (``Runtime.bindingCalled``) of up to ``PART_CHARS`` characters, a
larger frame in parts, which a document sends in a row and Python joins
(``Tunnel._in_parts``). Each payload is decoded and checked (``_codec``); the
executionContextId CDP reports (which the page cannot forge) picks the
*document*, and socket ids are only looked up within it, so a frame can neither
reach nor read another frame's sockets.

Python -> page: what routes send is queued per document and goes out in calls of
at most ``MAX_BATCH_BYTES`` of data (``Runtime.callFunctionOn``; a bigger batch as
``Runtime.evaluate`` of a literal whose command text is built around the base64,
see ``_call``): right after the binding event that caused it (so answers precede
the user's next command), else at once. Each call is answered once the page has
*dispatched* its messages. Full batches go while fewer than ``MAX_BATCHES_IN_FLIGHT``
calls are in flight, a partial one only while fewer than two are, and what is
queued meanwhile goes out with the next one (batching without timers or tasks, at
the pace the page reads). Each document's calls are in order, and so
are its sockets' frames. A document with ``PAGE_HIGH_WATER`` bytes or more queued
or in flight is *behind*: upstream readers and acknowledgements to the page wait
(see ``_route``) until it is below half of that.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from . import _codec
from ._codec import (
    FRAME_COST,
    PART_CHARS,
    WINDOW,
    Binary,
    Close,
    Create,
    Lost,
    PageMessage,
    Part,
    Text,
    ack_message,
    batch_expression,
    close_message,
    data_message,
    decode_batch,
    error_message,
    open_message,
    part_message,
    passthrough_message,
    plain_batch,
)
from ._connection import JSON, CDPSession, RawParams
from ._cookies import handshake_cookies, site_of
from ._errors import ProtocolError, TargetClosedError
from ._route import _RoutedSocket
from ._websocket import WebSocket

if TYPE_CHECKING:
    from ._page import Frame, Page

__all__ = ["Document", "Tunnel", "shim_source"]

logger = logging.getLogger("cdp_wsroute.tunnel")

# Batch sizes, in data bytes. Chromium's cost per byte of a protocol message grows with
# its size, and a call is converted by the browser process and then by the renderer, one
# after the other: calls of 256 Ki base64 characters (192 KiB), several in flight, keep
# both busy at once and halve a 16 MiB echo (benchmarks/README.md, "Kept"). Chromium
# also fails a protocol message of about 100 MiB outright.
MAX_BATCHES_IN_FLIGHT = 8  # full batches; a partial one waits while 2 are in flight
_PARTIAL_BATCHES_IN_FLIGHT = 2
PART_BYTES = 192 * 1024  # a multiple of 3: parts encode to base64 alone
MAX_BATCH_BYTES = 192 * 1024
_LITERAL_BATCH_BYTES = 16 * 1024  # from here a batch goes as an evaluate literal, not call arguments
PAGE_HIGH_WATER = 4 * 1024 * 1024
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$")


def _site_for_cookies(frame: Frame) -> tuple[str, str] | None:
    """The top-level site, if the frame and all its ancestors are same-site with it (else None).

    Read from the frames' current URLs at each handshake (never cached: frames navigate).
    """
    chain = []
    current: Frame | None = frame
    while current is not None:
        chain.append(current)
        current = current.parent_frame
    top = site_of(chain[-1].url)
    return top if all(site_of(f.url) == top for f in chain) else None


def shim_source() -> str:
    """The shim's function expression (shipped in the wheel; read from the checkout in development)."""
    packaged = resources.files("cdp_wsroute").joinpath("injected_js/websocket_shim.js")
    if packaged.is_file():
        text = packaged.read_text()
    else:
        text = (Path(__file__).resolve().parent.parent / "injected_js" / "websocket_shim.js").read_text()
    # The file is one expression statement; we call it, so drop its semicolon.
    return text.strip().rstrip(";")


@dataclass(eq=False)
class Document:
    """One JavaScript realm (a frame's document) that talks through the tunnel."""

    tunnel: Tunnel
    session: CDPSession
    context_id: int
    frame: Frame
    origin: str
    sockets: dict[int, _RoutedSocket] = field(default_factory=dict)
    outbox: list[list[Any]] = field(default_factory=list)
    outbox_sizes: list[int] = field(default_factory=list)  # the data bytes of each outbox message
    outbox_bytes: int = 0  # their sum
    pending_bytes: int = 0  # message bytes queued or in flight, until the page dispatched them
    batches_in_flight: int = 0
    in_parts: FrameParts | None = None  # a frame from the page coming in parts (Tunnel._in_parts)
    gone: bool = False


@dataclass
class FrameParts:
    """The leading parts of a frame from the page so far, until its last part comes."""

    socket_id: int
    parts: list[str | bytes] = field(default_factory=list)
    size: int = 0  # the sum of their lengths
    dropped: bool = False  # rejected: its later parts and its last part are dropped too


class Tunnel:
    """The binding, the shim in every document of a page, and the batches both ways."""

    def __init__(self, page: Page, nursery: trio.Nursery) -> None:
        self.page = page
        self.nursery = nursery
        self.binding = "__wsr_" + secrets.token_hex(12)
        self.dispatch = "__wsr_" + secrets.token_hex(12)
        self.token = secrets.token_urlsafe(32)
        # The dispatch global by its bare name: a page can rebind `globalThis`, but it cannot
        # shadow a non-configurable global property.
        self._function = f"function (t, b) {{ return {self.dispatch}(t, b); }}"
        self._scripts: dict[str | None, str] = {}  # session id -> script identifier
        self._documents: dict[tuple[str | None, int], Document] = {}
        self._dirty: dict[Document, None] = {}  # documents with a batch to send after this binding event
        self._filters: list[tuple[str, str]] = []
        self._ask = False
        self.rejected = 0  # malformed or forged payloads seen (for tests and diagnostics)
        self._batching = 0  # inside batching(): queued messages wait for its end

    @property
    def ignore_https_errors(self) -> bool:
        return self.page._context._ignore_https_errors

    # -- installing ------------------------------------------------------------------------------

    def _source(self) -> str:
        config = {
            "binding": self.binding,
            "token": self.token,
            "dispatch": self.dispatch,
            "filters": [list(f) for f in self._filters],
            "ask": self._ask,
            "window": WINDOW,
            "frameCost": FRAME_COST,
            "partChars": PART_CHARS,
        }
        return f"({shim_source()})({json.dumps(config)});"

    async def install(self, session: CDPSession) -> None:
        """Add the binding and the shim to a session (the page or an OOPIF): new and existing documents."""
        if session.session_id in self._scripts:
            return
        self._scripts[session.session_id] = ""
        session.on("Runtime.bindingCalled", lambda params: self._binding_called(session, params))
        session.on("Runtime.executionContextDestroyed", lambda params: self._context_gone(session, params))
        session.on("Runtime.executionContextsCleared", lambda params: self.session_gone(session.session_id))
        session.on("Page.frameNavigated", lambda params: self._navigated(session, params))
        await session.send("Runtime.addBinding", {"name": self.binding})
        result = await session.send(
            "Page.addScriptToEvaluateOnNewDocument", {"source": self._source(), "runImmediately": True}
        )
        self._scripts[session.session_id] = str(result.get("identifier", ""))

    async def set_filters(self, filters: list[tuple[str, str]], ask: bool) -> None:
        """New route filters: for documents to come (a new script) and those loaded (a dispatch)."""
        if filters == self._filters and ask == self._ask:
            return
        self._filters, self._ask = filters, ask
        for session_id, old in list(self._scripts.items()):
            session = self.page._sessions.get(session_id)
            if session is None or session.closed:
                continue
            try:
                # The new script runs at once in loaded documents, where it only updates the filters.
                result = await session.send(
                    "Page.addScriptToEvaluateOnNewDocument", {"source": self._source(), "runImmediately": True}
                )
                self._scripts[session_id] = str(result.get("identifier", ""))
                if old:
                    await session.send("Page.removeScriptToEvaluateOnNewDocument", {"identifier": old})
            except (ProtocolError, TargetClosedError):
                if not session.closed:
                    raise

    def _navigated(self, session: CDPSession, params: JSON) -> None:
        frame_id = params.get("frame", {}).get("id")
        frame = self.page._frames.get(frame_id) if isinstance(frame_id, str) else None
        if frame is not None:
            self.nursery.start_soon(self._verify, session, frame)

    async def _verify(self, session: CDPSession, frame: Frame) -> None:
        """Make sure a freshly navigated document has the shim and the shim its binding.

        Chromium keeps the window (and its JavaScript context) when a popup navigates
        away from its initial about:blank, and then does not always apply the binding
        (or the new-document script) again. The shim keeps what the page sends until
        it finds the binding; this check re-adds the binding, or the whole shim.
        """
        context_id = frame._context_id
        if context_id is None or frame._session is not session or session.closed:
            return
        name = self.dispatch
        config = json.dumps(["r", [list(f) for f in self._filters], self._ask])
        probe = f"typeof {name} === 'function' ? {name}({json.dumps(self.token)}, [{config}]) : null"
        try:
            result = await session.send("Runtime.evaluate", {"expression": probe, "contextId": context_id})
            state = result.get("result", {}).get("value")
            if state is True:
                return
            logger.debug("%r lost its binding or shim in a navigation; adding it again", frame)
            await session.send("Runtime.addBinding", {"name": self.binding})
            # A shim that is there takes the binding now (and flushes what waited); else install it.
            expression = probe if state is False else self._source()
            await session.send("Runtime.evaluate", {"expression": expression, "contextId": context_id})
        except (ProtocolError, TargetClosedError):
            return  # the document is gone already

    # -- page -> Python ---------------------------------------------------------------------------

    def _binding_called(self, session: CDPSession, params: JSON) -> None:
        if params.get("name") != self.binding:
            return
        # What sync handlers answer goes out before the reader takes the next message, so
        # it is on the wire ahead of any command the user's code sends after this event.
        with self.batching():
            self._dispatch_batch(session, params)

    def _dispatch_batch(self, session: CDPSession, params: JSON) -> None:
        context_id = params.get("executionContextId")
        document = self._document(session, context_id)
        if document is None:
            self._reject(f"a binding call from unknown execution context {context_id!r}")
            return
        messages, errors = decode_batch(params.get("payload"), self.token)
        for error in errors:
            self._reject(f"{document.frame!r}: {error}")
        for item in messages:
            message = (
                self._in_parts(document, item) if document.in_parts is not None or isinstance(item, Part) else item
            )
            if message is None:
                continue
            if isinstance(message, Create):
                self._create(document, message)
                continue
            socket = document.sockets.get(message.socket_id)
            if socket is None:
                if not isinstance(message, Lost):
                    logger.debug("message for socket %d that is not routed (any more)", message.socket_id)
                continue
            if isinstance(message, Text | Binary):
                socket.page_message(message.data)
            elif isinstance(message, Close):
                socket.page_close(message.code, message.reason, message.connecting)
            elif isinstance(message, Lost):
                socket.page_lost()

    def _in_parts(self, document: Document, message: PageMessage) -> PageMessage | None:
        """Collect a frame that comes in parts: None while it does, then the whole frame.

        The shim sends all the parts of a frame and then its last part (a plain Text or
        Binary) in a row, so a document has at most one frame in parts at a time (what
        Python holds for it is bounded by one frame), and anything else arriving in
        between means the parts were forged: they are dropped.
        """
        frame = document.in_parts
        if frame is not None:
            if message.socket_id == frame.socket_id:
                if isinstance(message, Part):
                    self._add_part(document, frame, message.data)
                    return None
                if isinstance(message, Text | Binary):
                    document.in_parts = None
                    return self._join_parts(document, frame, message)
            if not frame.dropped:
                self._reject_parts(document, frame, "its parts were not followed by its last part")
            document.in_parts = None
        if isinstance(message, Part):
            document.in_parts = FrameParts(message.socket_id)
            self._add_part(document, document.in_parts, message.data)
            return None
        return message

    def _add_part(self, document: Document, frame: FrameParts, data: str | bytes) -> None:
        if frame.dropped:
            return
        if frame.parts and type(frame.parts[0]) is not type(data):
            self._reject_parts(document, frame, "a text and a binary part in one frame")
        elif frame.size + len(data) > _codec.MAX_MESSAGE_BYTES:
            self._reject_parts(document, frame, f"over {_codec.MAX_MESSAGE_BYTES} bytes in parts")
        else:
            frame.parts.append(data)
            frame.size += len(data)

    def _join_parts(self, document: Document, frame: FrameParts, last: Text | Binary) -> Text | Binary | None:
        if frame.dropped:
            return None  # the last part of a frame dropped at one of its parts
        parts = frame.parts
        if type(parts[0]) is not type(last.data) or frame.size + len(last.data) > _codec.MAX_MESSAGE_BYTES:
            self._reject(f"{document.frame!r}: socket {last.socket_id}: a last part that does not fit its frame")
            return None
        parts.append(last.data)
        if isinstance(last, Text):
            return Text(last.socket_id, "".join(parts))  # type: ignore[arg-type]
        return Binary(last.socket_id, b"".join(parts))  # type: ignore[arg-type]

    def _reject_parts(self, document: Document, frame: FrameParts, reason: str) -> None:
        """Drop the frame in parts: what came of it, and its other parts and last part as they come."""
        self._reject(f"{document.frame!r}: socket {frame.socket_id}: a frame in parts: {reason}")
        frame.parts, frame.size, frame.dropped = [], 0, True

    def _reject(self, reason: str) -> None:
        self.rejected += 1
        logger.warning("rejected from the page: %s", reason)

    def _document(self, session: CDPSession, context_id: object) -> Document | None:
        if type(context_id) is not int:
            return None
        key = (session.session_id, context_id)
        document = self._documents.get(key)
        if document is None:
            frame = self.page._context_frames.get(key)
            if frame is None:
                return None
            origin = self.page._context_origins.get(key, "")
            document = Document(self, session, context_id, frame, origin)
            self._documents[key] = document
        return document

    def _create(self, document: Document, message: Create) -> None:
        if message.socket_id in document.sockets:
            self._reject(f"{document.frame!r}: socket id {message.socket_id} reused")
            return
        url = message.url  # a well-formed ws(s) URL: the codec checked it
        try:
            entry = self.page._find_ws_route(url)
        except Exception as exc:  # a predicate raised: the user's error, the socket stays native
            self._queue(document, passthrough_message(message.socket_id))
            self.fail(exc)
            return
        if entry is None:
            self._queue(document, passthrough_message(message.socket_id))
            return
        socket = _RoutedSocket(document, message.socket_id, url, message.protocols, entry.handler, pull=entry.pull)
        document.sockets[message.socket_id] = socket
        if self.page._observing_websockets():
            socket.observed = WebSocket(self.page, url)
            self.page._websocket_opened(socket.observed)
        socket.start()

    def _context_gone(self, session: CDPSession, params: JSON) -> None:
        document = self._documents.pop((session.session_id, params.get("executionContextId", -1)), None)
        if document is not None:
            self._close_document(document)

    def session_gone(self, session_id: str | None) -> None:
        """Every document of a session (an OOPIF that detached, or contexts cleared) is gone."""
        for key in [key for key in self._documents if key[0] == session_id]:
            self._close_document(self._documents.pop(key))

    def _close_document(self, document: Document) -> None:
        document.gone = True
        document.in_parts = None
        document.outbox.clear()
        document.outbox_sizes.clear()
        document.outbox_bytes = document.pending_bytes = 0
        self._dirty.pop(document, None)
        for socket in list(document.sockets.values()):
            socket.lifecycle_closed()
            socket._relieve()  # an upstream reader waiting for the page stops waiting
        document.sockets.clear()

    def close(self) -> None:
        """The page closed: every document is gone."""
        for document in list(self._documents.values()):
            self._close_document(document)
        self._documents.clear()

    # -- Python -> page ---------------------------------------------------------------------------

    def _queue(self, document: Document, message: list[Any], size: int = 0) -> None:
        if document.gone:
            return
        document.outbox.append(message)
        document.outbox_sizes.append(size)
        document.outbox_bytes += size
        if self._batching:
            self._dirty[document] = None  # sent when the batching block ends
        else:
            self._send_batch(document)

    @contextmanager
    def batching(self) -> Iterator[None]:
        """Messages queued inside the block go out together at its end (one call per document)."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1
            if not self._batching and self._dirty:
                dirty, self._dirty = self._dirty, {}
                for document in dirty:
                    self._send_batch(document)

    def _send_batch(self, document: Document) -> None:
        """Send what the document's outbox holds, as far as the calls in flight allow.

        Full batches (MAX_BATCH_BYTES) go while fewer than MAX_BATCHES_IN_FLIGHT calls are
        in flight; a partial one only while fewer than _PARTIAL_BATCHES_IN_FLIGHT are, so
        that small messages gather into one call while the page is busy.
        """
        while not document.gone and document.outbox:
            in_flight = document.batches_in_flight
            if in_flight >= MAX_BATCHES_IN_FLIGHT or (
                in_flight >= _PARTIAL_BATCHES_IN_FLIGHT and document.outbox_bytes < MAX_BATCH_BYTES
            ):
                return  # the next batch goes when an answer comes (_delivered)
            if document.outbox_bytes <= MAX_BATCH_BYTES:
                batch, document.outbox = document.outbox, []
                size, document.outbox_bytes = document.outbox_bytes, 0
                document.outbox_sizes = []
            else:
                count, size = 0, 0
                for item in document.outbox_sizes:
                    if count and size + item > MAX_BATCH_BYTES:
                        break
                    count, size = count + 1, size + item
                batch, document.outbox = document.outbox[:count], document.outbox[count:]
                del document.outbox_sizes[:count]
                document.outbox_bytes -= size
            document.batches_in_flight += 1
            method, params = self._call(document, batch, size)
            document.session.connection.send_nowait(
                method,
                params,
                document.session.session_id,
                on_reply=functools.partial(self._delivered, document, size),
            )

    def _delivered(self, document: Document, size: int) -> None:
        """The page dispatched a batch (or it failed with its document): the next may go."""
        document.batches_in_flight -= 1
        if document.gone:
            return
        before = document.pending_bytes
        document.pending_bytes -= size
        self._send_batch(document)
        # Whoever waits for a page that was behind wakes once it is halfway through.
        if before >= PAGE_HIGH_WATER // 2 > document.pending_bytes:
            for socket in list(document.sockets.values()):
                socket._relieve()

    def page_is_behind(self, document: Document) -> bool:
        return document.pending_bytes >= PAGE_HIGH_WATER

    def send_to_page(self, document: Document, socket_id: int, data: str | bytes) -> None:
        if document.gone:
            return
        document.pending_bytes += len(data)
        if len(data) > PART_BYTES:
            whole = data if isinstance(data, str) else memoryview(data)  # parts of bytes: views, not copies
            for start in range(0, len(whole) - PART_BYTES, PART_BYTES):
                part = whole[start : start + PART_BYTES]
                self._queue(document, part_message(socket_id, part), len(part))
            whole = whole[start + PART_BYTES :]
            self._queue(document, data_message(socket_id, whole), len(whole))
            return
        self._queue(document, data_message(socket_id, data), len(data))

    def acknowledge(self, document: Document, socket_id: int, frames: int) -> None:
        self._queue(document, ack_message(socket_id, frames))

    def open_page(self, document: Document, socket_id: int, protocol: str, extensions: str) -> None:
        self._queue(document, open_message(socket_id, protocol, extensions))

    def close_page(self, document: Document, socket_id: int, code: int | None, reason: str, was_clean: bool) -> None:
        self._queue(document, close_message(socket_id, code, reason, was_clean))

    def error_page(self, document: Document, socket_id: int) -> None:
        self._queue(document, error_message(socket_id))

    def _call(self, document: Document, batch: list[list[Any]], size: int) -> tuple[str, JSON | RawParams]:
        """The command that hands ``batch`` to the shim's dispatch function in the document.

        Small batches go as arguments of a function call (Chromium compiles nothing new);
        large ones as a literal in an expression, which Chromium turns into JavaScript
        values about twice as fast as it converts protocol arguments.
        """
        if size < _LITERAL_BATCH_BYTES:
            return "Runtime.callFunctionOn", {
                "functionDeclaration": self._function,
                "executionContextId": document.context_id,
                "arguments": [{"value": self.token}, {"value": plain_batch(batch)}],
                "awaitPromise": True,  # answered once the page dispatched the batch: see the shim
                "silent": True,
            }
        # The command's text built around the base64, which json.dumps would scan twice and copy.
        parts = [b'{"expression":', *batch_expression(self.dispatch, self.token, batch)]
        parts.append(b',"contextId":%d,"awaitPromise":true,"silent":true}' % document.context_id)
        return "Runtime.evaluate", RawParams(parts)

    # -- upstream identity ------------------------------------------------------------------------

    async def upstream_headers(self, document: Document, url: str) -> list[tuple[bytes, bytes]]:
        """The headers the browser itself would send: Origin, Cookie, User-Agent, extra headers."""
        context = self.page._context
        headers: dict[str, str] = {}
        if document.origin and document.origin != "null":
            headers["Origin"] = document.origin
        browser = context._browser
        if browser.user_agent:
            headers["User-Agent"] = browser.user_agent
        language = await self._accept_language(document)
        if language:
            headers["Accept-Language"] = language
        try:
            cookies = await context.cookies(url)
        except (ProtocolError, TargetClosedError):
            cookies = []
        cookies = handshake_cookies(cookies, url, _site_for_cookies(document.frame))
        if cookies:
            headers["Cookie"] = "; ".join(f"{c['name']}={c['value']}" for c in cookies)
        for name, value in context._extra_http_headers.items():
            headers[name] = value
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

    async def _accept_language(self, document: Document) -> str:
        """Accept-Language as Chromium writes it from the browser's languages ("en-US,en;q=0.9")."""
        browser = self.page._context._browser
        if browser._accept_language is None:
            try:
                result = await document.session.send(
                    "Runtime.evaluate",
                    {"expression": "navigator.languages", "contextId": document.context_id, "returnByValue": True},
                )
            except (ProtocolError, TargetClosedError):
                return ""
            value = result.get("result", {}).get("value")
            # Page script can redefine navigator.languages: keep only well-formed language tags.
            tags = (
                [t for t in value if isinstance(t, str) and _LANGUAGE_TAG.match(t)] if isinstance(value, list) else []
            )
            parts = [tag if i == 0 else f"{tag};q={max(10 - i, 1) / 10:.1f}" for i, tag in enumerate(tags[:10])]
            browser._accept_language = ",".join(parts)
        return browser._accept_language

    # -- failures ---------------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        """Raise a user handler's exception in the owner's nursery: it fails the launch()/connect() block."""

        async def reraise() -> None:
            raise exc

        self.nursery.start_soon(reraise, name="route handler failure")
