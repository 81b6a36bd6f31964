"""The bench's servers, in a process of their own: ``python -m wsbench.server``.

It serves the bench page over HTTP and the WebSocket behaviours of
:mod:`wsbench.protocol` on 127.0.0.1 (free ports), prints one JSON line
``{"http_port": ..., "ws_port": ...}`` when both listen, and exits when its
stdin closes. Being another process, its CPU time is not the driver's.
:class:`ServerProcess` starts and stops it from the orchestrator.
"""

from __future__ import annotations

import functools
import json
import selectors
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import parse_qs, urlsplit

import trio
import trio_websocket

from cdp_wsroute._http import Response, serve_http
from wsbench.protocol import Ports, ack, behaviour_of, download_messages, parse_download, seq_of

__all__ = ["ServerProcess"]

HERE = Path(__file__).resolve().parent
PAGE = '<!doctype html>\n<meta charset="utf-8">\n<title>cdp_wsroute bench</title>\n<script src="/bench.js"></script>\n'
MAX_MESSAGE = 64 * 1024 * 1024  # above the largest scenario message (16 MiB)
MESSAGE_QUEUE = 16  # messages a connection reads ahead of its handler: bounds the slow sink
READ_SIZE = 256 * 1024


async def echo(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.send_message(await ws.get_message())


async def acknowledge(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.send_message(ack(await ws.get_message()))


async def download(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        request = parse_download(await ws.get_message())
        if request is not None:
            for message in download_messages(*request):
                await ws.send_message(message)


async def sink(ws: trio_websocket.WebSocketConnection, rate: float) -> None:
    """Read no faster than ``rate`` bytes/s: what a slow consumer does to its sender."""
    messages = size = reordered = 0
    start = trio.current_time()
    while True:
        message = await ws.get_message()
        if isinstance(message, str):
            summary = {"messages": messages, "bytes": size, "reordered": reordered}
            await ws.send_message(json.dumps(summary))
            continue
        reordered += seq_of(message) != messages
        messages += 1
        size += len(message)
        await trio.sleep_until(start + size / rate)  # pacing, not synchronisation


async def handle(request: trio_websocket.WebSocketRequest) -> None:
    target = urlsplit(request.path)
    ws = await request.accept()
    behaviour = behaviour_of(target.path)
    try:
        if behaviour == "echo":
            await echo(ws)
        elif behaviour == "ack":
            await acknowledge(ws)
        elif behaviour == "download":
            await download(ws)
        elif behaviour == "sink":
            await sink(ws, float(parse_qs(target.query)["rate"][0]))
        else:
            await ws.aclose(4404, f"no behaviour {behaviour!r}")
    except trio_websocket.ConnectionClosed:
        pass


async def wait_for_stdin_eof() -> None:
    """The orchestrator closes our stdin to stop us (and it closes when it dies)."""
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    while await stdin.receive_some():
        pass


async def serve() -> None:
    async with trio.open_nursery() as nursery, serve_http("127.0.0.1") as http:
        http.route("/bench.html", PAGE)
        http.route("/bench.js", Response((HERE / "bench.js").read_text(), "text/javascript; charset=utf-8"))
        ws_server = await nursery.start(
            functools.partial(
                trio_websocket.serve_websocket,
                handle,
                "127.0.0.1",
                0,
                None,
                message_queue_size=MESSAGE_QUEUE,
                max_message_size=MAX_MESSAGE,
                receive_buffer_size=READ_SIZE,
            )
        )
        print(json.dumps({"http_port": http.port, "ws_port": ws_server.port}), flush=True)
        await wait_for_stdin_eof()
        nursery.cancel_scope.cancel(reason="the orchestrator closed our stdin")


class ServerProcess:
    """Runs ``python -m wsbench.server`` for a ``with`` block; the process never outlives it.

    Raises:
        RuntimeError: the server did not report its ports within ``timeout`` seconds.
    """

    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._process: subprocess.Popen[str] | None = None
        self.ports = Ports(0, 0)

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "wsbench.server"],
            cwd=HERE.parent,
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


def _read_ports(process: subprocess.Popen[str], timeout: float) -> Ports:
    assert process.stdout is not None
    line = _readline_within(process.stdout, timeout)
    if not line:
        raise RuntimeError(f"the bench server did not start (exit status {process.poll()})")
    ports = json.loads(line)
    return Ports(http=int(ports["http_port"]), ws=int(ports["ws_port"]))


def _readline_within(stream: IO[str], timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"the bench server did not report its ports within {timeout}s")
    return stream.readline()


if __name__ == "__main__":
    trio.run(serve)
