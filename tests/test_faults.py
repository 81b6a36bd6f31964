"""Faults while sockets are routed: dying servers, browsers, pages, frames, connections and handlers.

Each test drives real Chromium (its own ``launch()``, so the test owns every process,
task, file descriptor and temporary directory) and real servers on 127.0.0.1, makes
one thing fail, and checks three outcomes: what the page's own WebSocket API shows
is what native Chromium shows (compared against native sockets where a fault can
hit both), Python learns what it must through a typed error, and nothing leaks
(trio tasks, child processes, file descriptors, the temporary profile).

Synchronisation is by events, ``wait_for_function`` or bounded polling; never by sleeping.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from cdp_wsroute import (
    Browser,
    Error,
    Frame,
    Page,
    TargetClosedError,
    UpstreamError,
    WebSocketClosedError,
    WebSocketRoute,
    connect,
    launch,
)
from cdp_wsroute._http import StaticServer
from cdp_wsroute._pytest_plugin import SharedBrowser
from tests.socklog import PAGE, Log, get_log, open_ws, wait_closed, wait_log
from tests.support import STEP, closed_port, eventually
from tests.wsservers import ServerConnection, serve_ws

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


# -- what the page shows -----------------------------------------------------------------------


def close_code(conn: ServerConnection) -> int | None:
    """The close code the server saw, None while the connection is open."""
    return None if conn.closed is None else int(conn.closed[0])


def without_messages(log: Log) -> Log:
    return [entry for entry in log if not entry.startswith(("message ", "binary "))]


async def load(page: Page, server: StaticServer, path: str = "/") -> Page:
    server.route(path, PAGE)
    await page.goto(server.url(path))
    return page


# -- what Python owns: tasks, child processes, file descriptors, the temporary profile -----------


def all_tasks() -> set[trio.lowlevel.Task]:
    """Every task of this trio run, system tasks included."""
    found: set[trio.lowlevel.Task] = set()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None or task in found:
            continue
        found.add(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


def open_fds() -> set[tuple[int, str]]:
    """This process's file descriptors and what each refers to."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            fds.add((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            pass  # the directory listing's own descriptor, closed already
    return fds


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def processes() -> dict[int, list[str]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(int(entry))
            if fields is not None:
                found[int(entry)] = fields
    return found


def our_children() -> set[int]:
    """Our child processes, zombies included (an unreaped child is a leak too)."""
    me = str(os.getpid())
    return {pid for pid, fields in processes().items() if fields[1] == me}


def exists(path: str) -> bool:
    return os.path.exists(path)


def group_members(leader: int) -> set[int]:
    """Live processes in the browser's process group or session (Chromium's helpers)."""
    return {
        pid
        for pid, fields in processes().items()
        if str(leader) in (fields[2], fields[3]) and fields[0] not in ("Z", "X", "x")
    }


def _port(address: str) -> int:
    """The port of a /proc/net/tcp address (hex "ADDR:PORT")."""
    return int(address.split(":")[1], 16)


def describe_sockets() -> str:
    """Our TCP sockets by inode: local and remote address, state (for leak messages)."""
    lines = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            lines.append(f"socket:[{inode}] {_port(local)} -> {_port(remote)} state {state}")
    ours = {target for _, target in open_fds()}
    return "\n".join(line for line in lines if line.split(" ")[0] in ours)


def describe_tasks(tasks: set[trio.lowlevel.Task]) -> str:
    return ", ".join(sorted(task.name for task in tasks))


@dataclass
class Before:
    """What existed before a test's ``launch()`` block."""

    tasks: set[trio.lowlevel.Task]
    fds: set[tuple[int, str]]
    children: set[int]
    browser_pid: int | None = None
    temp_dir: str | None = None

    @classmethod
    def now(cls) -> Before:
        return cls(all_tasks(), open_fds(), our_children())

    def owns(self, browser: Browser) -> None:
        """Note the launched browser's process and temporary directory."""
        assert browser._process is not None
        self.browser_pid = browser.process_id
        self.temp_dir = browser._process.temp_dir
        assert os.path.isdir(self.temp_dir)
        assert self.browser_pid in our_children()

    def leaked(self) -> dict[str, Any]:
        """What the block left behind, so far."""
        left: dict[str, Any] = {
            "tasks": describe_tasks(all_tasks() - self.tasks),
            "fds": sorted(open_fds() - self.fds),
            "children": sorted(our_children() - self.children),
        }
        if self.browser_pid is not None:
            left["browser group"] = sorted(group_members(self.browser_pid))
        if self.temp_dir is not None:
            left["temp dir"] = exists(self.temp_dir)
        return {key: value for key, value in left.items() if value}

    async def assert_nothing_leaked(self) -> None:
        """After the block: every task, fd and process it made is gone, and so is its profile."""
        # Servers notice closed connections (and the kernel tears processes down) a moment later.
        with trio.move_on_after(STEP):
            while self.leaked():
                await trio.sleep(0.01)
        assert not self.leaked(), f"left behind {STEP}s after the block: {self.leaked()}\n{describe_sockets()}"


def echo_route(route: WebSocketRoute) -> None:
    """A mocked echo: every page message comes straight back."""
    route.on_message(route.send)


# -- a handler that blocks forever --------------------------------------------------------------


@pytest.mark.parametrize("where", ["route handler", "on_message"])
async def test_a_handler_blocking_forever_stops_only_its_own_socket(where: str, server: StaticServer) -> None:
    dead = f"ws://127.0.0.1:{closed_port()}"
    stuck: list[WebSocketRoute] = []
    entered = trio.Event()
    cancelled: list[bool] = []

    async def block(route: WebSocketRoute) -> None:
        stuck.append(route)
        entered.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(True)
            raise

    def blocks_on_message(route: WebSocketRoute) -> None:
        stuck.append(route)

        async def on_message(message: str | bytes) -> None:
            await block(route)

        route.on_message(on_message)

    before = Before.now()
    leaving = 0.0
    async with launch() as browser:
        before.owns(browser)
        page = await load(await browser.new_page(), server)
        await page.route_web_socket(f"{dead}/stuck", block if where == "route handler" else blocks_on_message)
        await page.route_web_socket(f"{dead}/echo", echo_route)
        index = await open_ws(page, f"{dead}/stuck")
        if where == "on_message":
            await wait_log(page, index, "open")
            await page.evaluate("(i) => { socks[i].send('first'); socks[i].send('second'); }", index)
        with trio.fail_after(STEP):
            await entered.wait()

        # The page and the page's other routed sockets keep working meanwhile.
        other = await open_ws(page, f"{dead}/echo")
        await wait_log(page, other, "open")
        await page.evaluate("(i) => socks[i].send('still alive')", other)
        assert await wait_log(page, other, "message still alive") == ["open", "message still alive"]
        assert await page.evaluate("1 + 1") == 2
        expected_state = 0 if where == "route handler" else 1  # CONNECTING until the handler returns
        assert await page.evaluate("(i) => socks[i].readyState", index) == expected_state

        # route.close() from elsewhere still closes the stuck socket in the page.
        with trio.fail_after(STEP):
            await stuck[0].close(3000, "unstuck")
        log = await wait_closed(page, index)
        if where == "route handler":
            # Closed before it ever opened: what Chromium shows for a server that gave up on the handshake.
            assert log == ["error", "close 1006  false"]
        else:
            assert log == ["open", "close 3000 unstuck true"]
        assert await page.evaluate("(i) => { socks[i].send('after'); return logs[i].length; }", other) == 2
        await wait_log(page, other, "message after")
        assert not cancelled, "the stuck handler runs on until the block ends"
        with trio.fail_after(STEP):
            await page.close()  # closing the page does not wait for the stuck handler either
        leaving = trio.current_time()
    assert trio.current_time() - leaving < 5, "leaving the block waited for the stuck handler"
    assert cancelled == [True], "leaving the block cancels the stuck handler"
    await before.assert_nothing_leaked()


# -- the browser process is killed ----------------------------------------------------------------


async def test_browser_killed_with_routed_sockets(server: StaticServer) -> None:
    async with serve_ws() as upstream:
        before = Before.now()
        page_closes: list[tuple[int | None, str | None]] = []
        server_closes: list[tuple[int | None, str | None]] = []
        errors: list[BaseException] = []

        def connect(route: WebSocketRoute) -> None:
            server_route = route.connect_to_server()
            route.on_close(lambda code, reason: page_closes.append((code, reason)))
            server_route.on_close(lambda code, reason: server_closes.append((code, reason)))

        async def record(call: Callable[[], Any]) -> None:
            try:
                await call()
            except Error as exc:
                errors.append(exc)
            else:
                errors.append(AssertionError(f"{call} returned"))

        async with launch() as browser:
            before.owns(browser)
            assert browser.process_id is not None
            page = await load(await browser.new_page(), server)
            await page.route_web_socket(upstream.url("/up"), connect)
            connected = await open_ws(page, upstream.url("/up"))
            await wait_log(page, connected, "open")
            conn = await upstream.next_connection()
            async with page.expect_web_socket_route("**/pulled") as info:
                pulled = await open_ws(page, f"ws://127.0.0.1:{closed_port()}/pulled")
            route = await info.value
            await wait_log(page, pulled, "open")
            await page.evaluate("(i) => socks[i].send('to python')", connected)
            await conn.wait_for(lambda c: c.messages == ["to python"])

            disconnected = trio.Event()
            browser.on("disconnected", lambda _browser: disconnected.set())
            with trio.fail_after(STEP):  # a hang would be the bug
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(record, partial(page.evaluate, "new Promise(() => {})"))
                    nursery.start_soon(record, partial(route.receive, timeout=0))
                    nursery.start_soon(record, partial(page.wait_for_function, "false", timeout=0))
                    await trio.testing.wait_all_tasks_blocked()
                    os.kill(browser.process_id, signal.SIGKILL)
                await disconnected.wait()
            assert [type(e) for e in errors if not isinstance(e, TargetClosedError | WebSocketClosedError)] == []
            assert sum(isinstance(e, WebSocketClosedError) for e in errors) == 1, errors
            assert page.is_closed()
            # The document is gone with the browser: handlers hear it, the upstream is closed with 1001.
            await eventually(lambda: page_closes == [(None, None)], "the page-side on_close")
            assert server_closes == [(None, None)]
            await conn.wait_for(lambda c: c.closed is not None)
            assert close_code(conn) == 1001, conn.closed
            route.send("dropped")  # never raises
            with pytest.raises(WebSocketClosedError):
                await route.receive()
            with pytest.raises(TargetClosedError):
                await page.evaluate("1")
            with pytest.raises(TargetClosedError):
                await page.route_web_socket("**/later", echo_route)
            with pytest.raises(TargetClosedError):
                await browser.new_page()
        await before.assert_nothing_leaked()


# -- the CDP connection closes under us ---------------------------------------------------------


@dataclass
class CuttableProxy:
    """A loopback TCP forwarder to the browser's DevTools port whose connections the test can cut."""

    target_port: int
    port: int = 0
    scopes: list[trio.CancelScope] = field(default_factory=list)

    def cut(self) -> None:
        for scope in self.scopes:
            scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        target = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        with trio.CancelScope() as scope:
            self.scopes.append(scope)

            async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
                async for chunk in source:
                    await sink.send_all(chunk)
                scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(pump, client, target)
                nursery.start_soon(pump, target, client)
        await trio.aclose_forcefully(target)
        await trio.aclose_forcefully(client)


@asynccontextmanager
async def cuttable_proxy(target_port: int) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(target_port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy._handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()


@pytest.fixture
async def devtools_browser() -> AsyncIterator[SharedBrowser]:
    """A Chromium of the test's own on a loopback DevTools port (as the pytest plugin starts one)."""
    started = await trio.to_thread.run_sync(partial(SharedBrowser.start, executable_path=None, headless=True))
    try:
        yield started
    finally:
        started.close()


async def cut_the_cdp_connection(shared: SharedBrowser, server: StaticServer) -> None:
    """connect() through a proxy, route a socket to a real server, cut the connection; check the fallout."""
    endpoint = shared.endpoint
    port = int(endpoint.split(":")[2].split("/")[0])
    page_closes: list[tuple[int | None, str | None]] = []
    errors: list[BaseException] = []

    def connect_route(route: WebSocketRoute) -> None:
        route.connect_to_server()
        route.on_close(lambda code, reason: page_closes.append((code, reason)))

    async def record(call: Callable[[], Any]) -> None:
        try:
            await call()
        except Error as exc:
            errors.append(exc)

    async with serve_ws() as upstream, cuttable_proxy(port) as proxy:
        before = Before.now()
        async with connect(endpoint.replace(f":{port}/", f":{proxy.port}/")) as browser:
            page = await load(await browser.new_page(), server)
            target_id = page._target_id
            await page.route_web_socket(upstream.url("/up"), connect_route)
            index = await open_ws(page, upstream.url("/up"))
            await wait_log(page, index, "open")
            conn = await upstream.next_connection()
            disconnected = trio.Event()
            browser.on("disconnected", lambda _browser: disconnected.set())
            with trio.fail_after(STEP):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(record, partial(page.evaluate, "new Promise(() => {})"))
                    nursery.start_soon(record, partial(page.wait_for_function, "false", timeout=0))
                    await trio.testing.wait_all_tasks_blocked()
                    proxy.cut()
                await disconnected.wait()
            # (A pending evaluate fails with ConnectionClosedError; wait_for_function with its base class.)
            assert len(errors) == 2, errors
            assert all(isinstance(e, TargetClosedError) for e in errors), errors
            assert not browser.is_connected()
            assert page.is_closed()
            await eventually(lambda: page_closes == [(None, None)], "the page-side on_close")
            await conn.wait_for(lambda c: c.closed is not None)
            assert close_code(conn) == 1001, conn.closed
            with pytest.raises(TargetClosedError, match="closed"):
                await page.evaluate("1")
            with pytest.raises(TargetClosedError):
                await browser.new_context()
        await before.assert_nothing_leaked()

    # The browser disposed of the context we created (disposeOnDetach): our page is gone from it.
    async with connect(endpoint) as observer:

        async def page_targets() -> list[str]:
            result = await observer._root.send("Target.getTargets")
            return [t["targetId"] for t in result["targetInfos"] if t["type"] == "page"]

        with trio.fail_after(STEP):
            while target_id in await page_targets():
                await trio.sleep(0.05)


async def test_cdp_connection_closed_under_routed_sockets(
    devtools_browser: SharedBrowser, server: StaticServer
) -> None:
    """Pending calls fail, routes close (upstream 1001), the block exits cleanly, nothing is left behind
    (the DevTools TCP socket included: trio-websocket leaves it open after an abnormal drop)."""
    await cut_the_cdp_connection(devtools_browser, server)


# -- the upstream server is killed mid-stream -----------------------------------------------------

# A WebSocket server in a process of its own, so that it can be SIGKILLed: on "go" it streams
# numbered 64 KiB text messages as fast as the connection takes them.
STREAMING_SERVER = r"""
import sys
import trio
import trio_websocket

PADDING = "." * (64 * 1024)

async def handler(request):
    ws = await request.accept()
    await ws.get_message()
    i = 0
    while True:
        await ws.send_message(f"{i}:{PADDING}")
        i += 1

async def main():
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        print(listeners.port, flush=True)

trio.run(main)
"""


@asynccontextmanager
async def streaming_server_process() -> AsyncIterator[tuple[trio.Process, int]]:
    """The streaming server, as a child process; yields it and its port."""
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(trio.run_process, [sys.executable, "-c", STREAMING_SERVER], stdout=subprocess.PIPE, check=False)
        )
        try:
            assert process.stdout is not None
            output = b""
            with trio.fail_after(STEP):
                while not output.endswith(b"\n"):
                    chunk = await process.stdout.receive_some()
                    assert chunk, "the server exited before printing its port"
                    output += chunk
            yield process, int(output)
        finally:
            process.kill()


def numbered(log: Log) -> list[int]:
    """The numbers of the streamed messages a socket's log shows, in order."""
    return [int(entry.split(" ", 1)[1].split(":", 1)[0]) for entry in log if entry.startswith("message ")]


async def test_upstream_killed_mid_stream_looks_native(server: StaticServer) -> None:
    routes: list[WebSocketRoute] = []

    def connect_route(route: WebSocketRoute) -> None:
        routes.append(route.connect_to_server())

    async with streaming_server_process() as (process, port):
        before = Before.now()
        async with launch() as browser:
            before.owns(browser)
            page = await load(await browser.new_page(), server)
            await page.route_web_socket(f"ws://127.0.0.1:{port}/routed", connect_route)
            sockets = {}
            for name in ("native", "routed"):
                sockets[name] = await open_ws(page, f"ws://127.0.0.1:{port}/{name}")
                await wait_log(page, sockets[name], "open")
                await page.evaluate("(i) => socks[i].send('go')", sockets[name])
            # Both are in the middle of a stream: kill the server (its 64 KiB frames are likely cut short).
            for index in sockets.values():
                await page.wait_for_function("(i) => logs[i].length > 20", index, timeout=STEP)
            process.kill()
            logs = {name: await wait_closed(page, index) for name, index in sockets.items()}
            shapes = {name: without_messages(log) for name, log in logs.items()}
            assert shapes["routed"] == shapes["native"], "the routed socket must fail as a native one does"
            assert shapes["native"] == ["open", "close 1006  false"]
            for name, log in logs.items():  # what did arrive arrived whole, once, in order
                assert numbered(log) == list(range(len(numbered(log)))), name
            # Python learns what happened from the server-side route.
            assert isinstance(routes[0].error, UpstreamError)
            assert str(port) in str(routes[0].error)
            await eventually(
                lambda: not [t for t in browser._nursery.child_tasks if t.name.startswith("upstream ")],
                "the upstream task to end",
            )
        await before.assert_nothing_leaked()


# -- the upstream stalls ----------------------------------------------------------------------------


@dataclass
class Stalling:
    """A server behaviour that reads nothing until released, then reads everything."""

    released: trio.Event = field(default_factory=trio.Event)

    async def __call__(self, conn: ServerConnection) -> None:
        await self.released.wait()
        while True:
            await conn.ws.get_message()


def upstream_tasks(browser: Browser) -> list[str]:
    return [t.name for t in browser._nursery.child_tasks if t.name.startswith(("upstream ", "handlers "))]


@pytest.mark.parametrize("how", ["navigation", "route.close()", "page.close()"])
async def test_stalled_upstream_is_released_when_the_socket_goes(how: str, server: StaticServer) -> None:
    """A server that never reads, with the page's frames piled up behind it: ending the socket ends it all."""
    stalling = Stalling()
    async with serve_ws(stalling) as upstream:
        before = Before.now()
        routes: list[WebSocketRoute] = []

        def connect_route(route: WebSocketRoute) -> None:
            routes.append(route)
            route.connect_to_server(timeout=2)

        async with launch() as browser:
            before.owns(browser)
            page = await load(await browser.new_page(), server)
            await page.route_web_socket(upstream.url("/stalled"), connect_route)
            index = await open_ws(page, upstream.url("/stalled"))
            await wait_log(page, index, "open")
            conn = await upstream.next_connection()
            await page.evaluate(
                "(i) => { const chunk = 'x'.repeat(64 * 1024); for (let n = 0; n < 320; n++) socks[i].send(chunk); }",
                index,
            )
            # The frames back up into the page (bufferedAmount), as on a congested network.
            await page.wait_for_function("(i) => socks[i].bufferedAmount > 8 * 1024 * 1024", index, timeout=STEP)
            assert upstream_tasks(browser)
            socket = routes[0]._socket
            await eventually(lambda: socket._upstream_bytes > 0, "Python's upstream writer to back up")
            if how == "navigation":
                server.route("/next", "<title>next</title>")
                await page.goto(server.url("/next"))
            elif how == "route.close()":
                with trio.fail_after(STEP):
                    await routes[0].close(3000, "enough")
                assert await wait_closed(page, index) == ["open", "close 3000 enough true"]
            else:
                with trio.fail_after(STEP):
                    await page.close()
            # The upstream cannot take a close frame: after the close timeout it is dropped, task and all.
            gone = trio.current_time()
            await eventually(lambda: not upstream_tasks(browser), "the upstream task to end", 3 * STEP)
            assert trio.current_time() - gone < 2 + STEP / 2, "the close timeout (2 s) bounds the wait"
            stalling.released.set()
            await conn.wait_for(lambda c: c.closed is not None)
            assert conn.closed is not None
        await before.assert_nothing_leaked()


# -- the document goes away with frames in flight ---------------------------------------------------

BURST = """(i) => {
  const chunk = '.'.repeat(16 * 1024);
  for (let n = 0; n < 200; n++) socks[i].send(n + ':' + chunk);
}"""


@dataclass
class Recorder:
    """A route handler that connects to the server and records both sides' closes."""

    routes: list[WebSocketRoute] = field(default_factory=list)
    page_closes: list[tuple[int | None, str | None]] = field(default_factory=list)
    server_closes: list[tuple[int | None, str | None]] = field(default_factory=list)

    def __call__(self, route: WebSocketRoute) -> None:
        self.routes.append(route)
        server = route.connect_to_server()
        route.on_close(lambda code, reason: self.page_closes.append((code, reason)))
        server.on_close(lambda code, reason: self.server_closes.append((code, reason)))


def sent_numbers(conn: ServerConnection) -> list[int]:
    return [int(str(m).split(":", 1)[0]) for m in conn.messages]


async def crash(page: Page) -> None:
    """Crash the page's renderer (Page.crash) and wait for the page's "crash" event."""
    crashed = trio.Event()
    page.once("crash", lambda _page: crashed.set())

    async def send() -> None:
        try:
            await page._session.send("Page.crash")
        except Error:
            pass  # the renderer is gone: there may be no answer at all

    with trio.fail_after(STEP):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await crashed.wait()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("how", ["navigation", "same-origin iframe removed", "cross-origin iframe removed", "crash"])
async def test_document_gone_with_frames_in_flight(
    how: str, server: StaticServer, other_server: StaticServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.route("/frame", PAGE)
    other_server.route("/frame", PAGE)
    async with serve_ws() as upstream:
        before = Before.now()
        doomed, survivor = Recorder(), Recorder()
        async with launch() as browser:
            before.owns(browser)
            page = await load(await browser.new_page(), server)
            await page.route_web_socket(upstream.url("/doomed"), doomed)
            await page.route_web_socket(upstream.url("/survivor"), survivor)
            target: Page | Frame = page
            if "iframe" in how:
                src = server.url("/frame") if how.startswith("same") else other_server.url("/frame")
                await page.evaluate(
                    """(src) => new Promise((resolve) => {
                        const f = document.createElement('iframe');
                        f.onload = resolve;
                        f.src = src;
                        document.body.append(f);
                    })""",
                    src,
                )
                target = page.frames[1]
            index = await open_ws(target, upstream.url("/doomed"))
            await wait_log(target, index, "open")
            conn = await upstream.next_connection()
            survivor_index = await open_ws(page, upstream.url("/survivor")) if "iframe" in how else None
            if survivor_index is not None:
                await wait_log(page, survivor_index, "open")
                await page.evaluate(BURST, survivor_index)

            # Frames leave the page and come back from the server while the document goes away.
            await target.evaluate(BURST, index)
            await conn.wait_for(lambda c: len(c.messages) >= 3)
            if how == "navigation":
                server.route("/next", PAGE)
                await page.goto(server.url("/next"))
            elif "iframe" in how:
                await page.evaluate("document.querySelector('iframe').remove()")
            else:
                await crash(page)

            # Python's side of the socket ends as the browser's does: both handlers hear (None, None) and
            # the upstream gets 1001 (going away), after what the page had sent, in order.
            await eventually(lambda: doomed.page_closes == [(None, None)], "the page-side on_close")
            assert doomed.server_closes == [(None, None)]
            await conn.wait_for(lambda c: c.closed is not None)
            assert close_code(conn) == 1001, conn.closed
            assert sent_numbers(conn) == list(range(len(conn.messages)))
            route = doomed.routes[0]
            await eventually(lambda: not route._socket.document.sockets, "the route to be forgotten")
            route.send("dropped")  # after the document went away: dropped, never raises
            await route.close()

            if how == "navigation":  # the new document routes as before
                index = await open_ws(page, upstream.url("/doomed"))
                await wait_log(page, index, "open")
                await page.evaluate("(i) => socks[i].send('0:again')", index)
                await wait_log(page, index, "message 0:again")
            elif survivor_index is not None:  # the main frame's socket was not disturbed
                await page.wait_for_function("(i) => logs[i].length === 201", survivor_index, timeout=STEP)
                assert numbered(await get_log(page, survivor_index)) == list(range(200))
                assert survivor.page_closes == survivor.server_closes == []
            else:  # a crashed page can still be closed (test_calls_on_a_crashed_page_fail: other calls)
                with trio.fail_after(STEP):
                    await page.close()
                assert page.is_closed()
        await before.assert_nothing_leaked()
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


async def test_calls_on_a_crashed_page_fail(server: StaticServer) -> None:
    async with launch() as browser:
        page = await load(await browser.new_page(), server)
        await page.route_web_socket("**/echo", echo_route)
        outcomes: list[BaseException | None] = []
        failed = trio.Event()

        async def pending() -> None:
            try:
                await page.evaluate("new Promise(() => {})")
            except Error as exc:
                outcomes.append(exc)
                failed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pending)
            await trio.testing.wait_all_tasks_blocked()
            await crash(page)
            with trio.move_on_after(3):  # the crash event is in: failing the call is immediate
                await failed.wait()
            nursery.cancel_scope.cancel()
        assert outcomes, "the pending evaluate fails at the crash"
        assert isinstance(outcomes[0], TargetClosedError), outcomes
        for call in (
            partial(page.evaluate, "1"),
            partial(page.wait_for_function, "true"),
            partial(page.route_web_socket, "**/later", echo_route),
        ):
            with trio.fail_after(STEP), pytest.raises(TargetClosedError, match="crashed"):
                await call()


# -- the Python process that owns the browser is killed ----------------------------------------------

OWNER = """
import sys
import trio
from cdp_wsroute import launch

async def main() -> None:
    async with launch() as browser:
        page = await browser.new_page()
        await page.route_web_socket("**/owned", lambda route: route.connect_to_server())
        await page.goto(sys.argv[1])
        await page.evaluate(
            "(url) => new Promise((resolve) => { window.ws = new WebSocket(url); ws.onopen = resolve; })",
            sys.argv[2],
        )
        print(browser.process_id, browser._process.temp_dir, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def kill_the_owner(signum: signal.Signals, server: StaticServer) -> str:
    """Run OWNER in a child process, kill it with ``signum``; return the browser's temporary directory
    once the browser's processes are gone and the routed socket's upstream saw its connection end."""
    server.route("/", PAGE)
    leader: int | None = None
    async with serve_ws() as upstream:
        try:
            async with trio.open_nursery() as nursery:
                command = [sys.executable, "-c", OWNER, server.url("/"), upstream.url("/owned")]
                owner: trio.Process = await nursery.start(
                    partial(trio.run_process, command, stdout=subprocess.PIPE, check=False)
                )
                assert owner.stdout is not None
                output = b""
                with trio.fail_after(60):
                    while not output.endswith(b"\n"):
                        chunk = await owner.stdout.receive_some()
                        assert chunk, f"the owner exited early: {output!r}"
                        output += chunk
                pid, temp_dir = output.decode().split()
                leader = int(pid)
                conn = await upstream.next_connection()
                assert exists(temp_dir)
                owner.send_signal(signum)
                with trio.fail_after(STEP):
                    assert await owner.wait() == -signum
            await eventually(lambda: not group_members(int(pid)), "the browser's processes to exit", STEP)
            # The owner's upstream connection ended with it.
            await conn.wait_for(lambda c: c.closed is not None)
            return temp_dir
        finally:
            if leader is not None:  # on failure, do not leave a browser behind
                try:
                    os.killpg(leader, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_owner_killed_leaves_no_browser_and_no_upstream(signum: signal.Signals, server: StaticServer) -> None:
    """test_launch.py::test_browser_dies_with_its_owner checks the processes; here with a routed socket."""
    temp_dir = await kill_the_owner(signum, server)
    shutil.rmtree(temp_dir, ignore_errors=True)  # see test_owner_killed_leaves_no_temporary_profile


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_owner_killed_leaves_no_temporary_profile(signum: signal.Signals, server: StaticServer) -> None:
    temp_dir = await kill_the_owner(signum, server)
    try:
        # The janitor removes it once the browser's process group is gone.
        await eventually(lambda: not exists(temp_dir), "the temporary profile to be removed", STEP)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)  # the test's own cleanup, whatever the library did


# -- a route handler raises ------------------------------------------------------------------------------


class Boom(Exception):
    """The user's own exception."""


async def test_handler_raising_fails_the_block_and_leaks_nothing(server: StaticServer) -> None:
    """test_route_core.py checks what the page sees for each kind of handler; this checks the unwinding:
    the user's exception leaves launch() unchanged, other routed sockets' upstreams are closed, nothing leaks."""
    async with serve_ws() as upstream:
        before = Before.now()
        boom = Boom("raised by on_message")
        seen: list[Log] = []

        def explode(route: WebSocketRoute) -> None:
            def on_message(message: str | bytes) -> None:
                raise boom

            route.on_message(on_message)

        conns: list[ServerConnection] = []

        async def run() -> None:
            async with launch() as browser:
                before.owns(browser)
                page = await load(await browser.new_page(), server)
                await page.route_web_socket(upstream.url("/other"), lambda route: route.connect_to_server())
                await page.route_web_socket(upstream.url("/boom"), explode)
                other = await open_ws(page, upstream.url("/other"))
                await wait_log(page, other, "open")
                conns.append(await upstream.next_connection())
                index = await open_ws(page, upstream.url("/boom"))
                await wait_log(page, index, "open")
                # The exception cancels this block when it arrives: shield what looks at the page.
                with trio.CancelScope(shield=True):
                    await page.evaluate("(i) => socks[i].send('trigger')", index)
                    seen.append(await wait_closed(page, index))
                with trio.fail_after(STEP):
                    await trio.sleep_forever()  # cancelled by the handler's exception

        with pytest.raises(Boom) as raised:
            await run()
        assert raised.value is boom, "the handler's own exception, not a group or a wrapper"
        assert seen == [["open", "close 1011  true"]]
        await conns[0].wait_for(lambda c: c.closed is not None)  # its code: test_leaving_the_block_...
        await before.assert_nothing_leaked()


@pytest.mark.parametrize(
    "how",
    [
        "normal",
        "exception in the block",
        "cancelled",
        "handler raised",
    ],
)
async def test_leaving_the_block_closes_upstreams_as_native_sockets_are(how: str, server: StaticServer) -> None:
    """However the launch() block ends, each routed upstream is closed the way the browser closes a native one."""

    def explode(route: WebSocketRoute) -> None:
        def on_message(message: str | bytes) -> None:
            raise Boom("raised by on_message")

        route.on_message(on_message)

    closes: dict[str, int] = {}
    async with serve_ws() as upstream:
        expecting = pytest.raises(Boom) if how in ("exception in the block", "handler raised") else nullcontext()
        with expecting, trio.CancelScope() as scope:
            async with launch() as browser:
                page = await load(await browser.new_page(), server)
                await page.route_web_socket(upstream.url("/routed"), lambda route: route.connect_to_server())
                await page.route_web_socket(upstream.url("/boom"), explode)
                for name in ("native", "routed"):
                    index = await open_ws(page, upstream.url(f"/{name}"))
                    await wait_log(page, index, "open")
                await upstream.next_connection(1)
                if how == "exception in the block":
                    raise Boom("raised in the block")
                if how == "cancelled":
                    scope.cancel()
                elif how == "handler raised":
                    index = await open_ws(page, upstream.url("/boom"))
                    await wait_log(page, index, "open")
                    await page.evaluate("(i) => socks[i].send('trigger')", index)
                if how != "normal":
                    with trio.fail_after(STEP):
                        await trio.sleep_forever()
        for conn in upstream.connections:
            await conn.wait_for(lambda c: c.closed is not None)
            assert conn.closed is not None
            closes[conn.path] = conn.closed[0]
    assert closes["/native"] == 1001
    assert closes["/routed"] == closes["/native"]
