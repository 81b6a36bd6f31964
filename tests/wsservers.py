"""Real upstream servers for routing tests: a trio-websocket server and a misbehaving raw TCP one.

Both listen on 127.0.0.1, port 0. Tests drive them through events, never sleeps.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio_websocket
import wsproto
import wsproto.events
from wsproto.extensions import PerMessageDeflate

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass(eq=False)
class ServerConnection:
    """One accepted upstream connection, as the server saw it."""

    path: str
    headers: dict[str, str]
    subprotocols: list[str]
    ws: trio_websocket.WebSocketConnection
    messages: list[str | bytes] = field(default_factory=list)
    closed: tuple[int, str | None] | None = None
    changed: trio.Event = field(default_factory=trio.Event)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[ServerConnection], bool], timeout: float = 10) -> None:
        with trio.fail_after(timeout):
            while not predicate(self):
                await self.changed.wait()

    async def send(self, message: str | bytes) -> None:
        await self.ws.send_message(message)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.ws.aclose(code, reason)


Behaviour = Callable[[ServerConnection], Awaitable[None]]


async def echo(conn: ServerConnection) -> None:
    """Echo every message back; keep reading (and recording) when the peer is closing."""
    while True:
        message = await conn.ws.get_message()
        if conn.ws.closed is not None:
            continue  # the peer started closing: a failed send would drop what it sent before
        try:
            await conn.ws.send_message(message)
        except trio_websocket.ConnectionClosed:
            continue


async def silent(conn: ServerConnection) -> None:
    """Read and record, never answer."""
    while True:
        await conn.ws.get_message()


@dataclass(eq=False)
class WSServer:
    port: int
    connections: list[ServerConnection] = field(default_factory=list)
    behaviour: Behaviour = echo
    changed: trio.Event = field(default_factory=trio.Event)
    reject_status: int | None = None  # answer the handshake with this HTTP status instead
    accept_headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # extra response headers

    def url(self, path: str = "/ws", host: str = "127.0.0.1") -> str:
        return f"ws://{host}:{self.port}{path}"

    async def next_connection(self, index: int = 0, timeout: float = 10) -> ServerConnection:
        """The index-th connection, waiting for it."""
        with trio.fail_after(timeout):
            while len(self.connections) <= index:
                await self.changed.wait()
        return self.connections[index]

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        if self.reject_status is not None:
            await request.reject(self.reject_status, body=b"rejected")
            return
        proposed = list(request.proposed_subprotocols)
        ws = await request.accept(subprotocol=proposed[0] if proposed else None, extra_headers=self.accept_headers)
        conn = ServerConnection(
            path=request.path,
            headers={k.decode().lower(): v.decode("latin-1") for k, v in request.headers},
            subprotocols=proposed,
            ws=ws,
        )
        original_get = ws.get_message

        async def recording_get() -> str | bytes:
            message = await original_get()
            conn.messages.append(message)
            conn._notify()
            return message

        ws.get_message = recording_get  # type: ignore[method-assign]
        self.connections.append(conn)
        self.changed.set()
        self.changed = trio.Event()
        try:
            await self.behaviour(conn)
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            conn.closed = (reason.code, reason.reason) if reason is not None else (1006, None)
            conn._notify()


@asynccontextmanager
async def serve_ws(
    behaviour: Behaviour = echo, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[WSServer]:
    """A WebSocket server on 127.0.0.1 (port 0) running ``behaviour`` per connection (wss with ``ssl_context``)."""
    async with trio.open_nursery() as nursery:
        server = WSServer(port=0, behaviour=behaviour)
        listener = await nursery.start(
            functools.partial(
                trio_websocket.serve_websocket, server._handle, "127.0.0.1", 0, ssl_context, message_queue_size=1024
            )
        )
        server.port = listener.port
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


# -- a raw TCP server that misbehaves on purpose -----------------------------------------------


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID, usedforsecurity=False).digest()).decode()


@dataclass(eq=False)
class RawConnection:
    stream: trio.SocketStream
    request: bytes

    @property
    def key(self) -> str:
        for line in self.request.decode("latin-1").split("\r\n"):
            if line.lower().startswith("sec-websocket-key:"):
                return line.split(":", 1)[1].strip()
        return ""

    async def accept(self) -> None:
        """Finish the handshake (101)."""
        await self.stream.send_all(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept_key(self.key)}\r\n\r\n"
            ).encode()
        )

    async def reject(self, status: int = 403) -> None:
        await self.stream.send_all(f"HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await self.stream.aclose()

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def drop(self) -> None:
        """Close the TCP connection without a close frame."""
        await self.stream.aclose()


@dataclass(eq=False)
class RawServer:
    port: int
    connections: list[RawConnection] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def next_connection(self, index: int = 0, timeout: float = 10) -> RawConnection:
        """The index-th connection once its handshake request has been read (not answered)."""
        with trio.fail_after(timeout):
            while len(self.connections) <= index:
                await self.changed.wait()
        return self.connections[index]

    async def _handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        self.connections.append(RawConnection(stream, data))
        self.changed.set()
        self.changed = trio.Event()
        await trio.sleep_forever()  # the test drives the connection


@asynccontextmanager
async def serve_raw() -> AsyncIterator[RawServer]:
    """A TCP server that reads a handshake request and lets the test decide what to do."""
    async with trio.open_nursery() as nursery:
        server = RawServer(port=0)
        listeners = await nursery.start(functools.partial(trio.serve_tcp, server._handle, 0, host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


# -- a wsproto server that speaks permessage-deflate (trio-websocket's server cannot) ---------


@dataclass(eq=False)
class DeflateServer:
    port: int
    offers: list[list[str]] = field(default_factory=list)  # Sec-WebSocket-Extensions offered, per connection
    messages: list[str | bytes] = field(default_factory=list)
    wire_bytes: int = 0  # bytes received after the handshakes: compressed frames are small
    changed: trio.Event = field(default_factory=trio.Event)

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[DeflateServer], bool], timeout: float = 10) -> None:
        with trio.fail_after(timeout):
            while not predicate(self):
                await self.changed.wait()

    async def _handle(self, stream: trio.SocketStream) -> None:
        connection = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        parts: list[str | bytes] = []
        opened = False
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            if opened:
                self.wire_bytes += len(data)
            connection.receive_data(data)
            for event in connection.events():
                if isinstance(event, wsproto.events.Request):
                    self.offers.append([str(e) for e in event.extensions])
                    accept = wsproto.events.AcceptConnection(extensions=[PerMessageDeflate()])
                    await stream.send_all(connection.send(accept))
                    opened = True
                    self._notify()
                elif isinstance(event, wsproto.events.Message):
                    parts.append(event.data)
                    if event.message_finished:
                        message = "".join(parts) if isinstance(event.data, str) else b"".join(parts)  # type: ignore[arg-type]
                        parts.clear()
                        self.messages.append(message)
                        self._notify()
                        reply = (
                            wsproto.events.TextMessage(message)
                            if isinstance(message, str)
                            else wsproto.events.BytesMessage(message)
                        )
                        await stream.send_all(connection.send(reply))
                elif isinstance(event, wsproto.events.CloseConnection):
                    await stream.send_all(connection.send(event.response()))
                    return


@asynccontextmanager
async def serve_deflate() -> AsyncIterator[DeflateServer]:
    """An echo server on 127.0.0.1 that accepts permessage-deflate."""
    async with trio.open_nursery() as nursery:
        server = DeflateServer(port=0)
        listeners = await nursery.start(functools.partial(trio.serve_tcp, server._handle, 0, host="127.0.0.1"))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
