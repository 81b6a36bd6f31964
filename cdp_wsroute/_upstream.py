"""The upstream connection of a connected route: TCP (or a proxy), TLS, and the
WebSocket handshake with trio-websocket on our own stream.

trio-websocket cannot offer extensions, so :func:`handshake` builds its
``WebSocketConnection`` itself (what ``wrap_client_stream`` does) with a wsproto
request that offers permessage-deflate exactly as Chromium does. The inflater is
capped: a small compressed frame cannot make Python allocate more than a message
may hold (``max_message_size``); such a frame fails the connection with 1009.

Two more reach under trio-websocket's public API, for speed on the hot path:
:func:`send_messages` writes several messages in one write (``send_message``
makes a system call per message) and :func:`receive_nowait` takes what its reader
has queued without a task switch. Both use the same internals its own methods
do; the version range in pyproject.toml pins them and the tests cover them.
"""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import h11
import trio
import trio_websocket
import wsproto
import wsproto.utilities
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Request, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol

from ._proxy import ProxySettings, open_via_proxy

if TYPE_CHECKING:
    from ._tunnel import Tunnel

__all__ = [
    "CONNECT_FAILURES",
    "Dropped",
    "Upstream",
    "describe_failure",
    "first_leaf",
    "handshake",
    "merge_headers",
    "open_stream",
    "receive_nowait",
    "send_messages",
    "ssl_context_for",
]


class Dropped(Exception):
    """The server closed the TCP connection before the handshake finished."""


# What a failed connection or handshake raises; h11/wsproto raise from trio-websocket's reader
# when a server answers with an invalid handshake (a wrong Sec-WebSocket-Accept, say).
CONNECT_FAILURES = (
    OSError,
    trio_websocket.HandshakeError,
    trio.TooSlowError,
    ssl.SSLError,
    h11.ProtocolError,
    wsproto.utilities.ProtocolError,
    Dropped,
)


def first_leaf(group: BaseExceptionGroup[Exception]) -> BaseException:
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


class Deflate(PerMessageDeflate):
    """permessage-deflate offered like Chromium (``client_max_window_bits``, no value), with
    an inflater that stops at ``max_message_size``."""

    def __init__(self, max_message_size: int) -> None:
        super().__init__()
        self.max_message_size = max_message_size
        self.accepted = ""  # the server's answer, as the page's `extensions` shows it

    def offer(self) -> str:
        return "client_max_window_bits"

    def finalize(self, offer: str) -> None:
        try:
            super().finalize(offer)
        except (ValueError, IndexError) as exc:
            # Chromium fails the handshake for parameters it cannot use.
            raise wsproto.utilities.RemoteProtocolError(f"invalid permessage-deflate response {offer!r}") from exc
        self.accepted = offer

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        try:
            inflated = self._decompressor.decompress(bytes(data), self.max_message_size + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if self._decompressor.unconsumed_tail or len(inflated) > self.max_message_size:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated


class Upstream:
    """An open upstream: the trio-websocket connection and what the handshake negotiated."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, stream: _WatchedStream, deflate: Deflate) -> None:
        self.ws = ws
        self.extensions = deflate.accepted if deflate.enabled() else ""
        self._stream = stream

    async def going_away(self, grace: float) -> None:
        """Write a 1001 close frame, shielded, within ``grace`` seconds, without waiting for an answer.

        For an owner torn down by cancellation: what the browser sends for its own
        sockets when it shuts down. Skipped once a close frame went out, or if a
        write was interrupted (a frame may be half written; only dropping is safe).
        """
        if self._stream.torn or self.ws._wsproto.state is not ConnectionState.OPEN:
            return
        data = self.ws._wsproto.send(CloseConnection(code=CloseReason.GOING_AWAY))
        with trio.CancelScope(shield=True), trio.move_on_after(grace):
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


class _WatchedStream(trio.abc.Stream):
    """A stream that tells when the peer closed it: trio-websocket's client would wait forever
    for a handshake response that cannot come."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.eof = trio.Event()
        self.torn = False  # a write was interrupted: the peer may have part of a frame

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.torn = True
            self.eof.set()  # trio-websocket's reader stops here and would never report it
            raise
        except BaseException:
            self.torn = True
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


async def open_stream(url: str, context: ssl.SSLContext | None, proxy: ProxySettings | None) -> trio.abc.Stream:
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


async def handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    url: str,
    subprotocols: list[str],
    headers: list[tuple[bytes, bytes]],
    max_message_size: int,
) -> Upstream:
    """trio-websocket's client handshake on our own stream, failing (not hanging) if the server hangs up."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    watched = _WatchedStream(stream)
    deflate = Deflate(max_message_size)
    ws = trio_websocket.WebSocketConnection(
        watched,
        wsproto.WSConnection(wsproto.ConnectionType.CLIENT),
        host=host,
        path=resource,
        message_queue_size=64,
        max_message_size=max_message_size,
        receive_buffer_size=256 * 1024,
    )
    # What wrap_client_stream does, with a request that offers permessage-deflate.
    ws._initial_request = Request(
        host=host, target=resource, subprotocols=subprotocols, extensions=[deflate], extra_headers=headers
    )
    nursery.start_soon(ws._reader_task)
    async with trio.open_nursery() as race:

        async def opened() -> None:
            await ws._open_handshake.wait()
            race.cancel_scope.cancel()

        async def dropped() -> None:
            await watched.eof.wait()
            race.cancel_scope.cancel()

        race.start_soon(opened)
        race.start_soon(dropped)
    if not ws._open_handshake.is_set():
        raise Dropped("the server closed the connection during the handshake")
    return Upstream(ws, watched, deflate)


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, Dropped):
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


def ssl_context_for(url: str, tunnel: Tunnel) -> ssl.SSLContext | None:
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


def merge_headers(
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


async def send_messages(ws: trio_websocket.WebSocketConnection, messages: Sequence[str | bytes]) -> None:
    """``ws.send_message`` for each of ``messages``, in one write.

    Raises:
        trio_websocket.ConnectionClosed: as ``send_message`` does.
    """
    if ws._close_reason:
        raise trio_websocket.ConnectionClosed(ws._close_reason)
    data = b"".join(
        ws._wsproto.send(TextMessage(data=m) if isinstance(m, str) else BytesMessage(data=m)) for m in messages
    )
    async with ws._stream_lock:
        try:
            await ws._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await ws._abort_web_socket()
            raise trio_websocket.ConnectionClosed(ws._close_reason) from None


def receive_nowait(ws: trio_websocket.WebSocketConnection) -> str | bytes | None:
    """The next message trio-websocket's reader has queued, or None if there is none now
    (``ws.get_message()`` then waits, or reports the close)."""
    try:
        return ws._recv_channel.receive_nowait()
    except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
        return None
