"""WebSocket routing against real Chromium: handlers, the pull API, lifecycle, matching, upstreams.

Every page socket is made by ``openWs`` (below), which logs what the page's own
WebSocket API shows: ``open <protocol>``, ``message <text>``, ``binary <bytes>``,
``error`` and ``close <code> <reason> <wasClean>``. Expected logs for upstream
failures are taken from native Chromium against the same server, not guessed.

Synchronisation is by events, ``wait_for_function`` or bounded polling; never by sleeping.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import os
import re
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trio_websocket

import cdp_wsroute
from cdp_wsroute import (
    Browser,
    BrowserContext,
    Frame,
    Page,
    UpstreamError,
    UsageError,
    WebSocketClosedError,
    WebSocketRoute,
    launch,
)
from cdp_wsroute._http import StaticServer
from tests.socklog import Log, get_log, wait_closed, wait_log
from tests.support import STEP, closed_port, eventually

from .wsservers import RawConnection, RawServer, ServerConnection, serve_raw, serve_ws

pytestmark = pytest.mark.browser

HELPERS = """
window.socks = [];
window.logs = [];
window.openWs = (url, protocols) => {
  const i = socks.length;
  const log = [];
  logs.push(log);
  let ws;
  try {
    ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
  } catch (e) {
    log.push("throw " + e.name);
    socks.push(null);
    return i;
  }
  socks.push(ws);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => log.push("open " + ws.protocol);
  ws.onmessage = (e) =>
    log.push(typeof e.data === "string" ? "message " + e.data : "binary " + new Uint8Array(e.data).join(","));
  ws.onerror = () => log.push("error");
  ws.onclose = (e) => log.push(`close ${e.code} ${e.reason} ${e.wasClean}`);
  return i;
};
"""
PAGE = f"<!doctype html><title>ws</title><script>{HELPERS}</script>"

Closes = list[tuple[int | None, str | None]]


# -- helpers -----------------------------------------------------------------------------


async def open_ws(target: Page | Frame, url: str, protocols: list[str] | None = None) -> int:
    index: int = await target.evaluate("([url, protocols]) => openWs(url, protocols ?? undefined)", [url, protocols])
    return index


async def ready_state(target: Page | Frame, index: int) -> int:
    state: int = await target.evaluate("(i) => socks[i].readyState", index)
    return state


async def page_send(target: Page | Frame, index: int, *messages: str) -> None:
    await target.evaluate("([i, ms]) => { for (const m of ms) socks[i].send(m); }", [index, list(messages)])


async def load(page: Page, server: StaticServer) -> Page:
    server.route("/", PAGE)
    await page.goto(server.url("/"))
    return page


def route_tasks(browser: Browser, url: str) -> list[str]:
    """The library's tasks (handler runners, upstream connections) still running for ``url``."""
    return [task.name for task in browser._nursery.child_tasks if task.name in (f"upstream {url}", f"handlers {url}")]


@pytest.fixture
async def app(page: Page, server: StaticServer) -> Page:
    """The test's page, at an http://127.0.0.1 origin with ``openWs`` loaded."""
    return await load(page, server)


@pytest.fixture
def dead() -> str:
    """A ws:// origin on a closed loopback port: unrouted sockets to it fail at once."""
    return f"ws://127.0.0.1:{closed_port()}"


class Boom(Exception):
    """A user handler's own exception."""


# -- handlers: sync and async, in order ----------------------------------------------------


async def test_async_on_message_is_awaited_in_order(app: Page, dead: str) -> None:
    release = trio.Event()
    barrier = trio.Event()
    seen: list[str | bytes] = []

    def handler(route: WebSocketRoute) -> None:
        if route.url.endswith("/barrier"):
            route.on_message(lambda message: barrier.set())
            return

        async def on_message(message: str | bytes) -> None:
            seen.append(message)
            if message == "m0":
                await release.wait()  # later messages must wait for this one
            await trio.lowlevel.checkpoint()
            route.send(f"echo {message!s}")

        route.on_message(on_message)

    await app.route_web_socket(f"{dead}/**", handler)
    ordered = await open_ws(app, f"{dead}/ordered")
    other = await open_ws(app, f"{dead}/barrier")
    await wait_log(app, ordered, "open ")
    await wait_log(app, other, "open ")

    # The page sends m0..m4 on one socket, then "go" on the other: when the barrier
    # socket's handler has run, all five messages have reached Python.
    await app.evaluate(
        "([a, b]) => { for (let k = 0; k < 5; k++) socks[a].send('m' + k); socks[b].send('go'); }", [ordered, other]
    )
    with trio.fail_after(STEP):
        await barrier.wait()
    assert seen == ["m0"], "the async handler for m0 has not returned: m1.. must wait"
    assert await get_log(app, ordered) == ["open "]

    release.set()
    await app.wait_for_function("(i) => logs[i].length === 6", ordered, timeout=STEP)
    assert seen == ["m0", "m1", "m2", "m3", "m4"]
    assert await get_log(app, ordered) == ["open "] + [f"message echo m{k}" for k in range(5)]


async def test_sync_and_async_route_handlers(app: Page, dead: str) -> None:
    started = trio.Event()
    release = trio.Event()

    def sync_handler(route: WebSocketRoute) -> None:
        route.on_message(lambda message: route.send(f"sync got {message!s}"))
        route.send("hello from sync")

    async def async_handler(route: WebSocketRoute) -> None:
        started.set()
        await release.wait()

        async def on_message(message: str | bytes) -> None:
            await trio.lowlevel.checkpoint()
            route.send(f"async got {message!s}")

        route.on_message(on_message)

    await app.route_web_socket(f"{dead}/sync", sync_handler)
    await app.route_web_socket(f"{dead}/async", async_handler)

    sync_ws = await open_ws(app, f"{dead}/sync")
    await wait_log(app, sync_ws, "message hello from sync")
    await page_send(app, sync_ws, "x")
    assert await wait_log(app, sync_ws, "message sync got x") == [
        "open ",
        "message hello from sync",
        "message sync got x",
    ]

    async_ws = await open_ws(app, f"{dead}/async")
    with trio.fail_after(STEP):
        await started.wait()
    # A mocked socket opens when its handler returns; this one is still awaiting.
    assert await ready_state(app, async_ws) == 0
    assert await get_log(app, async_ws) == []
    release.set()
    await wait_log(app, async_ws, "open ")
    await page_send(app, async_ws, "y", "z")
    assert await wait_log(app, async_ws, "message async got z") == [
        "open ",
        "message async got y",
        "message async got z",
    ]


async def test_async_on_close_decides_how_the_page_socket_closes(app: Page, dead: str) -> None:
    closes: Closes = []
    release = trio.Event()

    def handler(route: WebSocketRoute) -> None:
        async def on_close(code: int | None, reason: str | None) -> None:
            closes.append((code, reason))
            await release.wait()
            await route.close(3002, "ack")

        route.on_close(on_close)

    await app.route_web_socket(f"{dead}/closing", handler)
    index = await open_ws(app, f"{dead}/closing")
    await wait_log(app, index, "open ")
    await app.evaluate("(i) => socks[i].close(3001, 'bye')", index)
    await eventually(lambda: closes == [(3001, "bye")], "on_close(3001, 'bye')")
    assert await ready_state(app, index) == 2, "the page stays CLOSING until the route closes it"
    release.set()
    assert await wait_closed(app, index) == ["open ", "close 3002 ack true"]
    assert closes == [(3001, "bye")]


# -- a handler raising ---------------------------------------------------------------------


HANDLER_FAILURES = {
    # where the exception is raised -> what the page sees
    "sync route handler": ["error", "close 1006  false"],
    "async route handler": ["error", "close 1006  false"],
    "sync on_message": ["open ", "close 1011  true"],
    "async on_message": ["open ", "close 1011  true"],
    "async on_close": ["open ", "close 1011  true"],
}


async def run_until_the_handler_fails(
    server: StaticServer, handler: Callable[[WebSocketRoute], Any], trigger: str, seen: Log
) -> None:
    """Launch, route a socket to ``handler``, trigger it; put what the page saw in ``seen``."""
    dead = f"ws://127.0.0.1:{closed_port()}"
    async with launch() as browser:
        page = await load(await browser.new_page(), server)
        await page.route_web_socket(f"{dead}/boom", handler)
        # The exception cancels this block when it arrives: shield what looks at the page.
        with trio.CancelScope(shield=True):
            index = await open_ws(page, f"{dead}/boom")
            if trigger:
                await wait_log(page, index, "open ")
                await page.evaluate(trigger, index)
            seen.extend(await wait_closed(page, index))
        with trio.fail_after(STEP):
            await trio.sleep_forever()  # cancelled by the handler's exception


@pytest.mark.parametrize("where", list(HANDLER_FAILURES))
async def test_handler_exception_closes_the_socket_and_propagates(where: str, server: StaticServer) -> None:
    server.route("/", PAGE)

    def sync_raise(*args: Any) -> None:
        raise Boom(f"kaboom in {where}")

    async def async_raise(*args: Any) -> None:
        await trio.lowlevel.checkpoint()
        raise Boom(f"kaboom in {where}")

    def handler(route: WebSocketRoute) -> None:
        if where == "sync on_message":
            route.on_message(sync_raise)
        elif where == "async on_message":
            route.on_message(async_raise)
        else:
            route.on_close(async_raise)

    route_handler: Callable[[WebSocketRoute], Any] = {
        "sync route handler": sync_raise,
        "async route handler": async_raise,
    }.get(where, handler)
    trigger = {
        "sync on_message": "(i) => socks[i].send('trigger')",
        "async on_message": "(i) => socks[i].send('trigger')",
        "async on_close": "(i) => socks[i].close(1000)",
    }.get(where, "")
    seen: Log = []
    with pytest.raises(Boom, match=f"kaboom in {where}") as raised:
        await run_until_the_handler_fails(server, route_handler, trigger, seen)
    assert type(raised.value) is Boom, "the bare exception, not an ExceptionGroup"
    assert seen == HANDLER_FAILURES[where]


# -- the pull API ------------------------------------------------------------------------------


async def test_expect_web_socket_route_receive_and_async_for(app: Page, dead: str) -> None:
    async with app.expect_web_socket_route("**/pull") as info:
        index = await open_ws(app, f"{dead}/pull")
    route = await info.value
    assert route.url == f"{dead}/pull"
    await wait_log(app, index, "open ")  # mocked: opens at once

    await app.evaluate(
        """(i) => {
            socks[i].send("a");
            socks[i].send(new Uint8Array([1, 2, 255]));
            socks[i].send("c");
            socks[i].close(1000, "done");
        }""",
        index,
    )
    assert await route.receive() == "a"
    rest = [message async for message in route]  # ends when the page closed the socket
    assert rest == [b"\x01\x02\xff", "c"]
    assert await wait_closed(app, index) == ["open ", "close 1000 done true"]
    with pytest.raises(WebSocketClosedError):
        await route.receive()

    # The expectation routed one socket only: the next one is native (and fails on the dead port).
    again = await open_ws(app, f"{dead}/pull")
    assert await wait_closed(app, again) == ["error", "close 1006  false"]


async def test_receive_times_out(app: Page, dead: str) -> None:
    async with app.expect_web_socket_route(f"{dead}/quiet") as info:
        index = await open_ws(app, f"{dead}/quiet")
    route = await info.value
    await wait_log(app, index, "open ")
    with pytest.raises(cdp_wsroute.TimeoutError) as caught:
        await route.receive(timeout=0.2)
    assert isinstance(caught.value, TimeoutError)
    # Nothing was lost by the timeout: the next message still arrives.
    await page_send(app, index, "late")
    assert await route.receive() == "late"


async def test_receive_after_the_page_closed_the_socket_raises(app: Page, dead: str) -> None:
    async with app.expect_web_socket_route(f"{dead}/closed") as info:
        index = await open_ws(app, f"{dead}/closed")
    route = await info.value
    await wait_log(app, index, "open ")
    await app.evaluate("(i) => socks[i].close(3000, 'gone')", index)
    assert await wait_closed(app, index) == ["open ", "close 3000 gone true"]
    with trio.fail_after(STEP), pytest.raises(WebSocketClosedError) as caught:
        await route.receive()
    assert (caught.value.code, caught.value.reason) == (3000, "gone")
    with pytest.raises(WebSocketClosedError):
        await route.receive()  # and again: it never waits


async def test_connect_to_server_on_a_pulled_route(app: Page) -> None:
    async with serve_ws() as upstream:
        url = upstream.url("/pulled")
        async with app.expect_web_socket_route(url) as info:
            index = await open_ws(app, url)
        route = await info.value
        server = route.connect_to_server()
        with pytest.raises(cdp_wsroute.Error, match="Already connected to the server"):
            route.connect_to_server()
        conn = await upstream.next_connection()
        assert conn.path == "/pulled"
        await wait_log(app, index, "open ")

        # The page side is pulled: the page's messages come to receive(), not to the server.
        await page_send(app, index, "up")
        message = await route.receive()
        assert message == "up"
        server.send(f"{message!s}".upper())
        await conn.wait_for(lambda c: c.messages == ["UP"])
        await wait_log(app, index, "message UP")  # the server's echo reaches the page by default

        # Pulling the server side too: the server's messages stop reaching the page.
        server.send("ping")
        assert await server.receive() == "ping"
        assert conn.messages == ["UP", "ping"]

        await app.evaluate("(i) => socks[i].close(1000, 'bye')", index)
        assert await wait_closed(app, index) == ["open ", "message UP", "close 1000 bye true"]
        await conn.wait_for(lambda c: c.closed is not None)
        assert conn.closed == (1000, "bye")


# -- lifecycle -----------------------------------------------------------------------------------


@dataclass
class Recorder:
    """A route handler that connects to the server and records both sides' closes."""

    routes: list[WebSocketRoute] = field(default_factory=list)
    page_closes: Closes = field(default_factory=list)
    server_closes: Closes = field(default_factory=list)

    def __call__(self, route: WebSocketRoute) -> None:
        self.routes.append(route)
        server = route.connect_to_server()
        route.on_close(lambda code, reason: self.page_closes.append((code, reason)))
        server.on_close(lambda code, reason: self.server_closes.append((code, reason)))


async def check_route_closed_by_lifecycle(
    browser: Browser, recorder: Recorder, conn: ServerConnection, url: str
) -> None:
    await eventually(lambda: bool(recorder.page_closes), "the page-side on_close")
    assert recorder.page_closes == [(None, None)]
    assert recorder.server_closes == [(None, None)]
    await conn.wait_for(lambda c: c.closed is not None)
    assert conn.closed is not None
    assert conn.closed[0] == 1001, f"the upstream is closed with 1001 (going away), got {conn.closed}"
    route = recorder.routes[0]
    assert route._socket.document.sockets == {}
    await eventually(lambda: not route_tasks(browser, url), f"no task left for {url}")
    await check_upstream_released(urlsplit(url).port or 0)
    route.send("after the page went away")  # dropped, never raises
    route._socket.server_route.send("after the page went away")  # type: ignore[union-attr]
    assert recorder.page_closes == [(None, None)]


@asynccontextmanager
async def connected_socket(page: Page, target: Page | Frame) -> AsyncIterator[tuple[Recorder, ServerConnection, str]]:
    """An echo server and a socket in ``target`` routed to it, open and echoing."""
    async with serve_ws() as upstream:
        recorder = Recorder()
        url = upstream.url("/life")
        await page.route_web_socket(url, recorder)
        index = await open_ws(target, url)
        await wait_log(target, index, "open ")
        await page_send(target, index, "hi")
        await wait_log(target, index, "message hi")
        conn = await upstream.next_connection()
        assert route_tasks(page.context.browser, url), "the upstream task runs while the socket is open"
        yield recorder, conn, url


async def test_navigation_closes_the_routes_of_the_old_document(
    browser: Browser, app: Page, server: StaticServer
) -> None:
    async with connected_socket(app, app) as (recorder, conn, url):
        server.route("/next", "<title>next</title>")
        await app.goto(server.url("/next"))
        await check_route_closed_by_lifecycle(browser, recorder, conn, url)


async def test_iframe_detach_closes_only_the_iframe_routes(browser: Browser, app: Page, server: StaticServer) -> None:
    server.route("/frame", PAGE)
    await app.evaluate(
        """(src) => new Promise((resolve) => {
            const f = document.createElement("iframe");
            f.onload = resolve;
            f.src = src;
            document.body.append(f);
        })""",
        server.url("/frame"),
    )
    frame = app.frames[1]
    assert frame.url == server.url("/frame")
    async with serve_ws() as main_upstream:
        main_url = main_upstream.url("/main")
        await app.route_web_socket(main_url, connect)
        main_index = await open_ws(app, main_url)
        await wait_log(app, main_index, "open ")

        async with connected_socket(app, frame) as (recorder, conn, url):
            await app.evaluate("document.querySelector('iframe').remove()")
            await check_route_closed_by_lifecycle(browser, recorder, conn, url)

        # The main frame's routed socket is not affected.
        await page_send(app, main_index, "still here")
        assert await wait_log(app, main_index, "message still here") == ["open ", "message still here"]
        await app.evaluate("(i) => socks[i].close(1000)", main_index)
        assert await wait_closed(app, main_index) == ["open ", "message still here", "close 1000  true"]


async def test_page_close_closes_its_routes(browser: Browser, app: Page) -> None:
    async with connected_socket(app, app) as (recorder, conn, url):
        with trio.fail_after(STEP):
            await app.close()
        await check_route_closed_by_lifecycle(browser, recorder, conn, url)
        await recorder.routes[0].close()  # closing after the page went away does not raise either


async def test_page_crash_closes_its_routes(browser: Browser, app: Page) -> None:
    async with connected_socket(app, app) as (recorder, conn, url):
        crashed = trio.Event()
        app.on("crash", lambda page: crashed.set())
        async with trio.open_nursery() as nursery:

            async def crash() -> None:
                try:
                    await app._session.send("Page.crash")
                except cdp_wsroute.Error:
                    pass  # the renderer is gone: there may be no answer

            nursery.start_soon(crash)
            with trio.fail_after(STEP):
                await crashed.wait()
            await check_route_closed_by_lifecycle(browser, recorder, conn, url)
            nursery.cancel_scope.cancel()


async def test_browser_close_closes_routes(server: StaticServer) -> None:
    async with serve_ws() as upstream:
        recorder = Recorder()
        url = upstream.url("/browser")
        async with launch() as browser:
            page = await load(await browser.new_page(), server)
            await page.route_web_socket(url, recorder)
            index = await open_ws(page, url)
            await wait_log(page, index, "open ")
            conn = await upstream.next_connection()
            with trio.fail_after(STEP):
                await browser.close()
            await check_route_closed_by_lifecycle(browser, recorder, conn, url)
        assert conn.closed is not None


# -- which route takes a socket ------------------------------------------------------------------


def answering(name: str, calls: list[tuple[str, str]] | None = None) -> Callable[[WebSocketRoute], None]:
    """A route handler that says its name to the page (and records the call)."""

    def handler(route: WebSocketRoute) -> None:
        if calls is not None:
            calls.append((name, route.url))
        route.on_message(lambda message: route.send(f"{name} echo {message!s}"))
        route.send(name)

    return handler


async def taken_by(target: Page | Frame, url: str) -> str:
    """Which answering() route took a new socket to ``url``; "native" if none (it fails)."""
    index = await open_ws(target, url)
    await target.wait_for_function(
        "(i) => logs[i].some((e) => e.startsWith('message ') || e.startsWith('close '))", index, timeout=STEP
    )
    log = await get_log(target, index)
    if log[:1] == ["error"]:
        return "native"
    assert log[0] == "open ", log
    return log[1].removeprefix("message ")


async def test_glob_routes_resolve_against_base_url_and_normalise(browser: Browser, server: StaticServer) -> None:
    port, other_port = closed_port(), closed_port()
    host = f"127.0.0.1:{port}"
    context = await browser.new_context(base_url=f"http://{host}/app/")
    try:
        page = await load(await context.new_page(), server)
        calls: list[tuple[str, str]] = []
        await page.route_web_socket("feed", answering("relative", calls))
        await page.route_web_socket("/root/*", answering("absolute path", calls))
        await page.route_web_socket(f"ws://127.0.0.1:{other_port}", answering("no slash", calls))
        await page.route_web_socket(f"WS://{host}/upper", answering("upper scheme", calls))
        await page.route_web_socket(f"http://{host}/http", answering("http glob", calls))
        await page.route_web_socket(f"https://{host}/https", answering("https glob", calls))
        await page.route_web_socket(f"ws://{host}/slash/", answering("slash", calls))
        await page.route_web_socket("**/{one,two}.ws", answering("alternatives", calls))

        expected = {
            f"ws://{host}/app/feed": "relative",
            f"ws://{host}/app/feed/x": "native",
            f"ws://{host}/feed": "native",
            f"ws://{host}/root/a": "absolute path",
            f"ws://{host}/root/a/b": "native",
            f"ws://127.0.0.1:{other_port}": "no slash",
            f"ws://127.0.0.1:{other_port}/": "no slash",
            f"ws://127.0.0.1:{other_port}/x": "native",
            f"ws://{host}/upper": "upper scheme",
            f"WS://{host}/upper": "upper scheme",
            f"ws://{host}/http": "http glob",
            f"http://{host}/http": "http glob",  # the page may say http:, the socket is ws:
            f"wss://{host}/https": "https glob",
            f"ws://{host}/https": "native",
            f"ws://{host}/slash/": "slash",
            f"ws://{host}/slash": "native",
            f"ws://{host}/x/one.ws": "alternatives",
            f"ws://{host}/x/two.ws": "alternatives",
            f"ws://{host}/x/three.ws": "native",
        }
        seen = {url: await taken_by(page, url) for url in expected}
        assert seen == expected
        # route.url is the normalised URL the browser uses.
        assert ("no slash", f"ws://127.0.0.1:{other_port}/") in calls
        assert ("upper scheme", f"ws://{host}/upper") in calls
        assert ("http glob", f"ws://{host}/http") in calls
    finally:
        await context.close()


async def test_regex_and_predicate_routes(app: Page, dead: str) -> None:
    predicate_urls: list[str] = []

    def predicate(url: str) -> bool:
        predicate_urls.append(url)
        return url.endswith("?mine=1")

    await app.route_web_socket(re.compile(r"/feed\d+"), answering("regex"))
    await app.route_web_socket(re.compile(r"(?i)LOUD(?=/)"), answering("regex flags"))
    await app.route_web_socket(predicate, answering("predicate"))
    expected = {
        f"{dead}/x/feed12/y?z": "regex",  # search, not match: anywhere in the URL
        f"{dead}/feed": "native",
        f"{dead}/loud/x": "regex flags",
        f"{dead}/loud": "native",
        f"{dead}/p?mine=1": "predicate",
        f"{dead}/p?mine=2": "native",
    }
    seen = {url: await taken_by(app, url) for url in expected}
    assert seen == expected
    assert f"{dead}/p?mine=1" in predicate_urls
    assert all(url.startswith("ws://") for url in predicate_urls)


@pytest.mark.parametrize("glob", ["ws://h/{a,b", "ws://h/a}", "ws://h/{a,{b}}", "ws://h/a\\"])
async def test_invalid_globs_are_rejected_when_added(app: Page, glob: str) -> None:
    with pytest.raises(UsageError, match="glob"):
        await app.route_web_socket(glob, answering("never"))
    with pytest.raises(UsageError, match="glob"):
        await app.context.route_web_socket(glob, answering("never"))
    with pytest.raises(UsageError):
        await app.route_web_socket(42, answering("never"))  # type: ignore[arg-type]
    assert app._ws_routes == []
    assert app.context._ws_routes == []


async def test_newest_page_route_then_newest_context_route_no_chaining(app: Page, dead: str) -> None:
    calls: list[tuple[str, str]] = []
    context = app.context
    c1, c2, p1, p2 = (answering(name, calls) for name in ("C1", "C2", "P1", "P2"))
    await context.route_web_socket("**/prec", c1)
    await app.route_web_socket("**/prec", p1)
    await app.route_web_socket("**/prec", p2)
    await context.route_web_socket("**/prec", c2)  # newer, but a page route still comes first
    await context.route_web_socket("**/ctx", c1)
    await context.route_web_socket("**/ctx", c2)

    url = f"{dead}/prec"
    kept = len(await app.evaluate("logs"))
    assert await taken_by(app, url) == "P2"
    assert await taken_by(app, f"{dead}/ctx") == "C2"
    assert calls == [("P2", url), ("C2", f"{dead}/ctx")], "one handler per socket: no chaining"

    # Unrouting affects new sockets only: the first socket keeps its route (checked below).
    await app.unroute_web_socket("**/prec", p1)  # removes P1 only
    assert await taken_by(app, url) == "P2"
    await app.unroute_web_socket("**/prec")
    assert await taken_by(app, url) == "C2"
    await context.unroute_web_socket("**/prec", c2)
    assert await taken_by(app, url) == "C1"
    await context.unroute_web_socket("**/prec")
    assert await taken_by(app, url) == "native"

    await page_send(app, kept, "still routed")
    assert await wait_log(app, kept, "message P2 echo still routed") == [
        "open ",
        "message P2",
        "message P2 echo still routed",
    ]


async def test_context_routes_apply_to_popups(context: BrowserContext, server: StaticServer) -> None:
    dead = f"ws://127.0.0.1:{closed_port()}"
    page = await load(await context.new_page(), server)
    await context.route_web_socket(f"{dead}/popup", answering("context route"))
    server.route("/popup", PAGE + f"<script>openWs({dead + '/popup'!r})</script>")
    popups: list[Page] = []
    opened = trio.Event()

    def on_popup(popup: Page) -> None:
        popups.append(popup)
        opened.set()

    page.on("popup", on_popup)
    await page.evaluate("(url) => { window.open(url); }", server.url("/popup"))
    with trio.fail_after(STEP):
        await opened.wait()
    popup = popups[0]
    assert popup.context is context
    await popup.wait_for_function("() => window.logs?.[0]?.includes('message context route')", timeout=STEP)
    assert await get_log(popup, 0) == ["open ", "message context route"]


# -- the upstream sees what the browser would send ------------------------------------------------


@dataclass
class Handshake:
    path: str
    headers: dict[str, str]
    subprotocols: list[str]


@asynccontextmanager
async def serve_last_protocol() -> AsyncIterator[tuple[str, list[Handshake]]]:
    """A WebSocket server that selects the *last* subprotocol offered and records each handshake."""
    handshakes: list[Handshake] = []

    async def handle(request: trio_websocket.WebSocketRequest) -> None:
        offered = list(request.proposed_subprotocols)
        handshakes.append(
            Handshake(request.path, {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}, offered)
        )
        ws = await request.accept(subprotocol=offered[-1] if offered else None)
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        listener = await nursery.start(trio_websocket.serve_websocket, handle, "127.0.0.1", 0, None)
        try:
            yield f"ws://127.0.0.1:{listener.port}", handshakes
        finally:
            nursery.cancel_scope.cancel()


async def test_connect_to_server_sends_the_page_identity(browser: Browser, server: StaticServer) -> None:
    context = await browser.new_context(extra_http_headers={"X-Extra": "extra value"})
    other = await browser.new_context()
    try:
        async with serve_last_protocol() as (origin, handshakes):
            ws_cookie_url = origin.replace("ws://", "http://") + "/"
            await context.add_cookies(
                [
                    {"name": "mine", "value": "1", "url": ws_cookie_url},
                    {"name": "elsewhere", "value": "2", "domain": "127.0.0.1", "path": "/elsewhere"},
                ]
            )
            await other.add_cookies([{"name": "theirs", "value": "3", "url": ws_cookie_url}])
            page = await load(await context.new_page(), server)
            servers: list[WebSocketRoute] = []
            await page.route_web_socket("**/routed", lambda route: servers.append(route.connect_to_server()))

            native = await open_ws(page, f"{origin}/native", ["p1", "p2"])
            routed = await open_ws(page, f"{origin}/routed", ["p1", "p2"])
            assert await wait_log(page, native, "open p2") == ["open p2"]
            assert await wait_log(page, routed, "open p2") == ["open p2"]
            assert await page.evaluate("(i) => socks[i].protocol", routed) == "p2"
            assert servers[0].protocol == "p2"

            by_path = {h.path: h for h in handshakes}
            sent = by_path["/routed"]
            assert sent.subprotocols == ["p1", "p2"]
            assert sent.headers["origin"] == server.origin
            assert sent.headers["user-agent"] == browser.user_agent
            assert sent.headers["cookie"] == "mine=1"
            assert sent.headers["x-extra"] == "extra value"
            # What native Chromium sends for the same socket.
            real = by_path["/native"]
            for name in ("origin", "user-agent", "cookie"):
                assert sent.headers[name] == real.headers[name], name

            await page_send(page, routed, "through")
            await wait_log(page, routed, "message through")
            for index in (native, routed):
                await page.evaluate("(i) => socks[i].close(1000)", index)
                await wait_closed(page, index)
    finally:
        await other.close()
        await context.close()


# -- upstream failures look like native failures --------------------------------------------------


@dataclass
class FailureRoutes:
    """Routes ``/routed*`` to the server; ``/routed-handled`` also sets the server-side on_close."""

    servers: dict[str, WebSocketRoute] = field(default_factory=dict)
    closes: Closes = field(default_factory=list)
    closed: trio.Event = field(default_factory=trio.Event)

    def __call__(self, route: WebSocketRoute) -> None:
        server = route.connect_to_server()
        self.servers[route.url.rsplit("/", 1)[1]] = server
        if route.url.endswith("/routed-handled"):

            def on_close(code: int | None, reason: str | None) -> None:
                self.closes.append((code, reason))
                self.closed.set()

            server.on_close(on_close)


async def raw_connection_for(raw: RawServer, path: str) -> RawConnection:
    """The raw server's connection whose handshake asks for ``path``, waiting for it."""
    with trio.fail_after(STEP):
        while True:
            for conn in raw.connections:
                if conn.request.startswith(f"GET {path} ".encode()):
                    return conn
            await raw.changed.wait()


RFC6455_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def raw_accept(conn: RawConnection, *, token: str | None = None) -> None:
    """Answer the handshake with 101 (and the RFC 6455 accept token, unless ``token`` overrides it).

    ``RawConnection.accept`` is not used: its GUID is not RFC 6455's, so its token is wrong.
    """
    if token is None:
        token = base64.b64encode(hashlib.sha1(conn.key.encode() + RFC6455_GUID).digest()).decode()
    await conn.send_raw(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {token}\r\n\r\n"
        ).encode()
    )


_TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "09": "LAST_ACK"}


def client_sockets(port: int) -> list[str]:
    """The states of this process's own TCP sockets connected to ``port`` (Linux /proc).

    The library's upstream connections are the only ones this process opens to a
    test server; Chromium's native sockets belong to other processes.
    """
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
            states.append(_TCP_STATES.get(fields[3], fields[3]))
    return states


async def check_upstream_released(port: int) -> None:
    """The library closed every connection it opened to ``port`` (not left to the garbage collector)."""
    await eventually(lambda: client_sockets(port) == [], f"the upstream sockets to port {port} to be closed")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


RAW_FAILURES = {"bad accept", "dropped", "garbage"}


async def run_failure(
    page: Page, failure: str, url_for: Callable[[str], str], raw: RawServer
) -> tuple[Log, Log, FailureRoutes, Log]:
    """Native, routed and routed-with-on_close sockets against the same failing server."""
    routes = FailureRoutes()
    await page.route_web_socket("**/routed*", routes)
    logs: list[Log] = []
    for number, path in enumerate(("native", "routed", "routed-handled")):
        index = await open_ws(page, url_for(path))
        if failure in RAW_FAILURES:
            conn = await raw.next_connection(number)
            assert f"GET /{path} ".encode() in conn.request
            if failure == "bad accept":
                await raw_accept(conn, token=base64.b64encode(b"not the right token!").decode())
            else:
                await raw_accept(conn)
                await wait_log(page, index, "open ")
                if failure == "dropped":
                    await conn.drop()
                else:
                    await conn.send_raw(b"\x83\x00")  # a frame with a reserved opcode
        if path == "routed-handled":
            with trio.fail_after(STEP):
                await routes.closed.wait()
            logs.append(await get_log(page, index))
        else:
            logs.append(await wait_closed(page, index))
    return logs[0], logs[1], routes, logs[2]


NATIVE_FAILURE_LOGS = {
    # What native Chromium shows; checked against the browser in every run.
    "refused": ["error", "close 1006  false"],
    "rejected": ["error", "close 1006  false"],
    "bad accept": ["error", "close 1006  false"],
    "dropped": ["open ", "close 1006  false"],
    "garbage": ["open ", "error", "close 1006  false"],
}


@pytest.mark.parametrize("failure", list(NATIVE_FAILURE_LOGS))
async def test_upstream_failure_looks_native(app: Page, failure: str) -> None:
    async with serve_ws() as ws_server, serve_raw() as raw:
        ws_server.reject_status = 403
        port = closed_port()
        url_for: Callable[[str], str] = {
            "refused": lambda path: f"ws://127.0.0.1:{port}/{path}",
            "rejected": lambda path: ws_server.url(f"/{path}"),
        }.get(failure, lambda path: raw.url(f"/{path}"))
        native, routed, routes, handled = await run_failure(app, failure, url_for, raw)
        await check_upstream_released(urlsplit(url_for("routed")).port or 0)

    assert native == NATIVE_FAILURE_LOGS[failure], "native Chromium changed: review the expectations"
    assert routed == native
    server = routes.servers["routed"]
    assert isinstance(server.error, UpstreamError)
    if failure == "rejected":
        assert "403" in str(server.error)

    # With a server-side on_close, the route decides: the handler gets 1006 and the page is left alone.
    assert len(routes.closes) == 1
    code, reason = routes.closes[0]
    assert code == 1006
    assert isinstance(reason, str)
    assert isinstance(routes.servers["routed-handled"].error, UpstreamError)
    assert handled == (["open "] if failure in ("dropped", "garbage") else [])


def connect(route: WebSocketRoute) -> None:
    """A route handler that forwards everything to the real server."""
    route.connect_to_server()


async def test_upstream_closed_by_the_server_is_forwarded_and_released(app: Page) -> None:
    async def close_after_one(conn: ServerConnection) -> None:
        message = await conn.ws.get_message()
        await conn.ws.aclose(4000, f"bye {message!s}")

    async with serve_ws(close_after_one) as upstream:
        await app.route_web_socket("**/routed", connect)
        logs = []
        for path in ("/native", "/routed"):
            index = await open_ws(app, upstream.url(path))
            await wait_log(app, index, "open ")
            await page_send(app, index, "x")
            logs.append(await wait_closed(app, index))
        await check_upstream_released(upstream.port)
    assert logs[0] == ["open ", "close 4000 bye x true"]
    assert logs[1] == logs[0]


async def test_upstream_that_never_answers_the_handshake(app: Page) -> None:
    async with serve_raw() as raw:
        closes: Closes = []
        server_closes: Closes = []

        def handler(route: WebSocketRoute) -> None:
            server = route.connect_to_server()
            route.on_close(lambda code, reason: closes.append((code, reason)))
            server.on_close(lambda code, reason: server_closes.append((code, reason)))

        await app.route_web_socket("**/held-routed", handler)
        native = await open_ws(app, raw.url("/held-native"))
        routed = await open_ws(app, raw.url("/held-routed"))
        await raw_connection_for(raw, "/held-native")
        routed_conn = await raw_connection_for(raw, "/held-routed")
        # Both wait for the handshake, as native Chromium does.
        assert await ready_state(app, native) == 0
        assert await ready_state(app, routed) == 0
        assert await get_log(app, routed) == await get_log(app, native) == []

        with trio.fail_after(STEP):
            await app.close()
            assert await routed_conn.stream.receive_some() == b"", "the upstream connection is closed"
        assert closes == [(None, None)]
        assert server_closes == [(None, None)]
        await check_upstream_released(raw.port)


# -- many sockets at once -----------------------------------------------------------------------


async def test_200_concurrent_sockets_deliver_every_message_once_in_order(app: Page, dead: str) -> None:
    sockets, count = 200, 10
    received: dict[str, list[str | bytes]] = {}

    def handler(route: WebSocketRoute) -> None:
        got = received.setdefault(route.url, [])
        number = int(route.url.rsplit("/", 1)[1])
        if number % 2:

            async def on_message(message: str | bytes) -> None:
                got.append(message)
                await trio.lowlevel.checkpoint()
                route.send(f"echo {message!s}")

            route.on_message(on_message)
        else:

            def on_sync_message(message: str | bytes) -> None:
                got.append(message)
                route.send(f"echo {message!s}")

            route.on_message(on_sync_message)

    await app.route_web_socket(f"{dead}/many/*", handler)
    await app.evaluate(
        """([base, n, count]) => {
            window.got = [];
            window.done = 0;
            for (let i = 0; i < n; i++) {
                const ws = new WebSocket(base + i);
                const mine = [];
                got.push(mine);
                ws.onopen = () => { for (let j = 0; j < count; j++) ws.send(i + ":" + j); };
                ws.onmessage = (e) => { mine.push(e.data); if (mine.length === count) done++; };
            }
        }""",
        [f"{dead}/many/", sockets, count],
    )
    await app.wait_for_function("(n) => done === n", sockets, timeout=60)
    got: list[list[str]] = await app.evaluate("got")
    assert got == [[f"echo {i}:{j}" for j in range(count)] for i in range(sockets)]
    assert received == {f"{dead}/many/{i}": [f"{i}:{j}" for j in range(count)] for i in range(sockets)}


async def test_text_that_is_not_unicode_is_refused_where_it_is_sent(app: Page, dead: str) -> None:
    """A lone surrogate cannot be UTF-8: a clear UsageError at the call, and the connection lives on."""
    routes: list[WebSocketRoute] = []
    await app.route_web_socket(f"{dead}/text", routes.append)
    index = await open_ws(app, f"{dead}/text")
    await wait_log(app, index, "open ")
    with pytest.raises(UsageError, match="lone surrogate"):
        routes[0].send("bad \ud800 text")
    with pytest.raises(UsageError, match="valid Unicode"):
        await routes[0].close(1000, "bad \udfff")
    with pytest.raises(UsageError, match="lone surrogate"):
        await app.evaluate("(s) => s.length", "bad \ud800")
    routes[0].send("fine é ☃ 😀")
    assert await wait_log(app, index, "message fine é ☃ 😀") == ["open ", "message fine é ☃ 😀"]
