"""The soak run's servers, in a process of their own: ``python benchmarks/soak_server.py``.

It serves the soak page over HTTP and a WebSocket echo server (trio-websocket) on 127.0.0.1
(free ports), prints one JSON line ``{"http_port": ..., "ws_port": ...}`` once both listen,
and exits when its stdin closes (the driver closes it, and so does the kernel when the driver
dies). ``GET /stats`` answers ``{"connections": ..., "accepted": ..., "echoed": ...}``: the
driver waits for ``connections == 0`` before it samples a quiescent point. Being another process, its CPU
time and memory are not the driver's. :class:`ServerProcess` starts and stops it.
"""

from __future__ import annotations

import functools
import json
import selectors
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import trio
import trio_websocket

from cdp_wsroute._http import Request, Response, serve_http

__all__ = ["Ports", "ServerProcess", "fetch_stats"]

HERE = Path(__file__).resolve().parent
PAGE = (
    '<!doctype html>\n<meta charset="utf-8">\n<title>cdp_wsroute soak</title>\n<script src="/soak_page.js"></script>\n'
)
MESSAGE_QUEUE = 64  # messages a connection reads ahead of its echo loop


@dataclass(frozen=True)
class Ports:
    """Where the soak server listens (on 127.0.0.1)."""

    http: int
    ws: int

    @property
    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.http}/soak.html"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.ws}"

    def ws_glob(self, kind: str) -> str:
        """A route URL glob for the page's sockets of ``kind`` (``/<kind>/<id>``)."""
        return f"{self.ws_base}/{kind}/*"


@dataclass
class Stats:
    connections: int = 0  # accepted and not finished yet
    accepted: int = 0
    echoed: int = 0  # messages sent back


async def echo(stats: Stats, request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    stats.accepted += 1
    stats.connections += 1
    try:
        while True:
            await ws.send_message(await ws.get_message())
            stats.echoed += 1
    except trio_websocket.ConnectionClosed:
        pass
    finally:
        stats.connections -= 1


async def wait_for_stdin_eof() -> None:
    """The driver closes our stdin to stop us (and it closes when the driver dies)."""
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    while await stdin.receive_some():
        pass


async def serve() -> None:
    stats = Stats()

    def stats_response(request: Request) -> Response:
        return Response(json.dumps(asdict(stats)), "application/json")

    async with trio.open_nursery() as nursery, serve_http("127.0.0.1") as http:
        http.route("/soak.html", PAGE)
        http.route("/soak_page.js", Response((HERE / "soak_page.js").read_text(), "text/javascript; charset=utf-8"))
        http.route("/stats", stats_response)
        ws_server = await nursery.start(
            functools.partial(
                trio_websocket.serve_websocket,
                functools.partial(echo, stats),
                "127.0.0.1",
                0,
                None,
                message_queue_size=MESSAGE_QUEUE,
            )
        )
        print(json.dumps({"http_port": http.port, "ws_port": ws_server.port}), flush=True)
        await wait_for_stdin_eof()
        nursery.cancel_scope.cancel(reason="the driver closed our stdin")


async def fetch_stats(port: int, timeout: float = 10.0) -> dict[str, int]:
    """``GET /stats`` from the server on ``port``: one request on its own connection.

    Raises:
        trio.TooSlowError: no complete answer within ``timeout`` seconds.
    """
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
    _, _, body = answer.partition(b"\r\n\r\n")
    stats: dict[str, int] = json.loads(body)
    return stats


class ServerProcess:
    """Runs ``soak_server.py`` for a ``with`` block; the process never outlives it.

    Raises:
        RuntimeError: the server did not report its ports within ``timeout`` seconds.
    """

    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._process: subprocess.Popen[str] | None = None
        self.ports = Ports(0, 0)

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "soak_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            self.ports = _read_ports(self._process, self._timeout)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        finally:
            if process.stdout is not None:
                process.stdout.close()


def _read_ports(process: subprocess.Popen[str], timeout: float) -> Ports:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"the soak server did not report its ports within {timeout}s")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"the soak server did not start (exit status {process.poll()})")
    ports = json.loads(line)
    return Ports(http=int(ports["http_port"]), ws=int(ports["ws_port"]))


if __name__ == "__main__":
    trio.run(serve)
