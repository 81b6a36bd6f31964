"""A tiny HTTP/1.1 server on trio (h11), for the demo and the test suite's pages.

Not a general web server: it answers GET/HEAD from a table of routes, on
loopback, one request per connection.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
import trio

__all__ = ["Request", "Response", "StaticServer", "serve_http"]


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]


@dataclass
class Response:
    body: bytes | str = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response]


class StaticServer:
    """Routes path -> Response (or a function of the Request); records what it served."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.routes: dict[str, Response | Handler] = {}
        self.requests: list[Request] = []

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def route(self, path: str, response: Response | Handler | str) -> None:
        self.routes[path] = Response(response) if isinstance(response, str) else response

    def _respond(self, request: Request) -> Response:
        path = request.target.split("?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            return Response("not found", "text/plain", 404)
        return route if isinstance(route, Response) else route(request)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    connection.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    break
                return
            request = Request(
                event.method.decode(),
                event.target.decode(),
                {k.decode().lower(): v.decode("latin-1") for k, v in event.headers},
            )
            self.requests.append(request)
            response = self._respond(request)
            body = response.body.encode() if isinstance(response.body, str) else response.body
            headers = [
                ("content-type", response.content_type),
                ("content-length", str(len(body))),
                ("connection", "close"),
                ("cache-control", "no-store"),
                *response.headers.items(),
            ]
            await stream.send_all(connection.send(h11.Response(status_code=response.status, headers=headers)) or b"")
            if request.method != "HEAD":
                await stream.send_all(connection.send(h11.Data(data=body)) or b"")
            await stream.send_all(connection.send(h11.EndOfMessage()) or b"")
        except (h11.RemoteProtocolError, trio.BrokenResourceError):
            pass
        finally:
            await stream.aclose()


@asynccontextmanager
async def serve_http(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[StaticServer]:
    """Serve HTTP on ``host`` (a free port by default) for the duration of the block."""
    server = StaticServer(host, port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, server._serve_one, port, host=host))
        server.port = listeners[0].socket.getsockname()[1]
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel(reason="HTTP server closing")
