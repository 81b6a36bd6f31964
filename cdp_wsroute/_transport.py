"""Message transports under the CDP connection: a pipe pair, a WebSocket, or a test fake.

A transport moves whole JSON messages and nothing else; it knows no CDP. The
connection owns the single reader and serialises writers, so a transport may
assume one ``receive`` and one ``send`` at a time.
"""

from __future__ import annotations

import fcntl
import os
from typing import Protocol
from urllib.parse import urlsplit

import trio
import trio_websocket

__all__ = ["PipeTransport", "Transport", "TransportClosed", "WebSocketTransport"]

# Chromium writes large CDP messages (screenshots, 16 MiB WebSocket frames in
# base64) through the pipe; a bigger pipe buffer means fewer wake-ups per message.
_PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_READ_SIZE = 1 << 20


class TransportClosed(Exception):
    """The peer closed the transport, or it broke. Internal: the connection translates it."""


class Transport(Protocol):
    """Whole-message duplex channel to a browser."""

    async def send(self, messages: list[str | bytes]) -> None:
        """Send JSON messages (text, or its UTF-8), in order. Raises TransportClosed if the peer is gone."""

    async def receive(self) -> str | bytes:
        """Receive one whole JSON message. Raises TransportClosed at end of stream."""

    def send_now(self, message: str | bytes) -> bool:
        """Hand over one message without waiting, if this transport can (never blocks).

        True: the transport owns the message (written, or the rest kept for the next
        ``send``, which writes it first; check ``has_backlog``). False: use ``send``.
        """

    @property
    def has_backlog(self) -> bool:
        """Part of a message taken by ``send_now`` still waits for ``send``."""

    async def aclose(self) -> None:
        """Close the transport. Idempotent."""


def grow_pipe(fd: int) -> None:
    """Ask the kernel for a 1 MiB pipe buffer; keep the default if refused."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:
        pass


class PipeTransport:
    """Chromium's ``--remote-debugging-pipe``: NUL-terminated JSON over two pipes.

    Args:
        read_fd: the end we read the browser's messages from (its fd 4).
        write_fd: the end we write commands to (its fd 3).

    Resource handling: takes ownership of both descriptors; ``aclose`` closes them,
    which the browser sees as end of file and answers by exiting.
    """

    def __init__(self, read_fd: int, write_fd: int) -> None:
        grow_pipe(read_fd)
        grow_pipe(write_fd)
        self._reader = trio.lowlevel.FdStream(read_fd)
        self._writer = trio.lowlevel.FdStream(write_fd)  # sets the descriptor non-blocking
        self._write_fd = write_fd
        # What a send_now could not write without blocking, as views: a big command is never copied.
        self._backlog: list[bytes | memoryview] = []
        self._buffer = bytearray()
        self._start = 0  # where the next unread message begins in _buffer
        self._scanned = 0  # bytes from _start already known to hold no NUL

    async def send(self, messages: list[str | bytes]) -> None:
        # One write for the whole batch: the browser reads it in one go, too.
        parts = self._backlog
        self._backlog = []
        text: list[str] = []  # runs of text messages are joined before encoding: one copy
        for message in messages:
            if isinstance(message, str):
                text.append(message)
                continue
            if text:
                parts.append("\0".join(text).encode() + b"\0")
                text = []
            parts.extend((message, b"\0"))  # a big command is not copied
        if text:
            parts.append("\0".join(text).encode() + b"\0")
        try:
            for part in parts:
                await self._writer.send_all(part)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportClosed(f"pipe to the browser closed: {exc}") from exc

    def send_now(self, message: str | bytes) -> bool:
        # Called only while no send() is running (the connection sees to it): a write
        # straight from the caller saves a task switch on every command and answer.
        if self._backlog:
            return False
        data = message.encode() if isinstance(message, str) else message
        try:
            written = os.writev(self._write_fd, (data, b"\0"))  # the terminator without a copy
        except BlockingIOError:
            written = 0
        except OSError:
            return False  # send() reports the broken pipe
        if written < len(data):
            self._backlog = [memoryview(data)[written:], b"\0"]
        elif written == len(data):
            self._backlog = [b"\0"]
        return True

    @property
    def has_backlog(self) -> bool:
        return bool(self._backlog)

    async def receive(self) -> bytes:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\0", self._start + self._scanned)
            if end >= 0:
                with memoryview(buffer) as view:  # one copy, not slice-then-copy
                    message = view[self._start : end].tobytes()
                self._start = end + 1
                self._scanned = 0
                if self._start == len(buffer):
                    buffer.clear()
                    self._start = 0
                elif self._start > _READ_SIZE:
                    del buffer[: self._start]
                    self._start = 0
                return message
            self._scanned = len(buffer) - self._start
            try:
                chunk = await self._reader.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportClosed(f"pipe from the browser closed: {exc}") from exc
            if not chunk:
                raise TransportClosed("the browser closed its end of the pipe")
            buffer += chunk

    async def aclose(self) -> None:
        await self._writer.aclose()
        await self._reader.aclose()


class WebSocketTransport:
    """CDP over a WebSocket (``ws://host:port/devtools/browser/<id>``), for ``connect()``.

    Resource handling: the trio-websocket connection's background task runs in the
    nursery given to :meth:`open`; ``aclose`` closes the WebSocket and its TCP
    stream (which trio-websocket leaves open when the browser drops the connection).
    """

    def __init__(self, connection: trio_websocket.WebSocketConnection, stream: trio.abc.Stream) -> None:
        self._ws = connection
        self._stream = stream

    @classmethod
    async def open(cls, nursery: trio.Nursery, url: str) -> WebSocketTransport:
        parts = urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ValueError(f"not a ws:// URL: {url!r}")
        stream = await trio.open_tcp_stream(parts.hostname, parts.port or 80)
        try:
            # No message size limit (a CDP message may carry a 256 MiB screenshot or
            # frame) and a large receive buffer: the 4 KiB default is several times slower.
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                parts.netloc,
                (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                max_message_size=1 << 40,
                receive_buffer_size=_READ_SIZE,
                message_queue_size=0,
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return cls(ws, stream)

    async def send(self, messages: list[str | bytes]) -> None:
        try:
            for message in messages:
                # DevTools reads text frames.
                await self._ws.send_message(message if isinstance(message, str) else message.decode())
        except trio_websocket.ConnectionClosed as exc:
            raise TransportClosed(f"WebSocket to the browser closed: {exc.reason}") from exc

    def send_now(self, message: str | bytes) -> bool:
        return False

    @property
    def has_backlog(self) -> bool:
        return False

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            raise TransportClosed(f"WebSocket to the browser closed: {exc.reason}") from exc

    async def aclose(self) -> None:
        try:
            await self._ws.aclose()
        finally:
            await self._stream.aclose()


def close_fd_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
