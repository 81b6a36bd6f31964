"""Observation: page.on("websocket"), expect_websocket and the WebSocket class, native and routed sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from cdp_wsroute import Error, Page, TargetClosedError, TimeoutError, WebSocket, WebSocketRoute
from cdp_wsroute._http import StaticServer
from tests.support import STEP, eventually
from tests.wsservers import ServerConnection, WSServer, serve_ws

pytestmark = pytest.mark.timeout(60)

PAGE = """<!doctype html><script>
window.log = [];
window.open_ws = (url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { log.push('open'); resolve(); };
  ws.onmessage = (e) => log.push('message ' + (typeof e.data === 'string' ? e.data : 'bytes ' + e.data.byteLength));
  ws.onerror = () => { log.push('error'); resolve(); };
  ws.onclose = (e) => log.push('close ' + e.code);
  window.ws = ws;
});
</script>"""


class Recorder:
    """Records every event of every WebSocket the page reports, in order."""

    def __init__(self, page: Page) -> None:
        self.sockets: list[WebSocket] = []
        self.events: list[tuple[Any, ...]] = []
        page.on("websocket", self.on_websocket)

    def on_websocket(self, ws: WebSocket) -> None:
        index = len(self.sockets)
        self.sockets.append(ws)
        self.events.append(("websocket", index, ws.url))
        ws.on("framesent", lambda payload: self.events.append(("sent", index, payload)))
        ws.on("framereceived", lambda payload: self.events.append(("received", index, payload)))
        ws.on("socketerror", lambda message: self.events.append(("socketerror", index, message)))
        ws.on("close", lambda closed: self.events.append(("close", index, closed is ws)))

    async def wait_closed(self, index: int = 0) -> None:
        await eventually(lambda: any(e[:2] == ("close", index) for e in self.events), f"socket {index} to close")


@pytest.fixture
async def upstream() -> AsyncIterator[WSServer]:
    async with serve_ws() as ws_server:
        yield ws_server


async def open_page(page: Page, server: StaticServer) -> Page:
    server.route("/", PAGE)
    await page.goto(server.url("/"))
    return page


async def test_native_frames_both_ways_and_a_close_with_a_message(
    page: Page, server: StaticServer, upstream: WSServer
) -> None:
    await open_page(page, server)
    recorder = Recorder(page)
    await page.evaluate("(url) => open_ws(url)", upstream.url("/native"))
    await page.evaluate("ws.send('hello'); ws.send(new Uint8Array([1, 2, 3]))")
    with trio.fail_after(STEP):
        await page.wait_for_function("log.includes('message bytes 3')")
    await page.evaluate("ws.close(1000, 'bye')")
    await recorder.wait_closed()
    url = upstream.url("/native")
    assert recorder.events == [
        ("websocket", 0, url),
        ("sent", 0, "hello"),
        ("sent", 0, b"\x01\x02\x03"),
        ("received", 0, "hello"),
        ("received", 0, b"\x01\x02\x03"),
        ("close", 0, True),  # no frame event for the close opcode; the same object
    ]
    assert recorder.sockets[0].is_closed()
    assert repr(recorder.sockets[0]) == f"<WebSocket url={url!r}>"


async def test_native_close_from_the_server(page: Page, server: StaticServer) -> None:
    async def greet_and_close(conn: ServerConnection) -> None:
        await conn.send("bye soon")
        await conn.close(4000, "server done")

    async with serve_ws(greet_and_close) as upstream:
        await open_page(page, server)
        async with page.expect_websocket() as info:
            await page.evaluate("(url) => open_ws(url)", upstream.url())
        ws = await info.value
        closed = await ws.wait_for_event("close")
    assert closed is ws
    assert ws.is_closed()
    with trio.fail_after(STEP):
        await page.wait_for_function("log.includes('close 4000')")


@pytest.mark.parametrize("routed", [False, True])
async def test_handshake_404_is_a_socketerror(
    page: Page, server: StaticServer, upstream: WSServer, routed: bool
) -> None:
    upstream.reject_status = 404
    await open_page(page, server)
    if routed:
        await page.route_web_socket("**/ws", lambda route: route.connect_to_server())
    recorder = Recorder(page)
    await page.evaluate("(url) => open_ws(url)", upstream.url())
    await recorder.wait_closed()
    assert recorder.events == [
        ("websocket", 0, upstream.url()),
        ("socketerror", 0, "Error during WebSocket handshake: Unexpected response code: 404"),
        ("close", 0, True),
    ]


async def test_waiters_fail_when_the_socket_closes_first(page: Page, server: StaticServer, upstream: WSServer) -> None:
    await open_page(page, server)
    async with page.expect_websocket(lambda ws: ws.url.endswith("/quiet")) as info:
        await page.evaluate("(url) => open_ws(url)", upstream.url("/quiet"))
    ws = await info.value
    async with trio.open_nursery() as nursery:
        failures: list[BaseException] = []

        async def wait() -> None:
            try:
                await ws.wait_for_event("framereceived", timeout=STEP)
            except Error as exc:
                failures.append(exc)

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        await page.evaluate("ws.close()")
    assert len(failures) == 1
    assert type(failures[0]) is Error
    assert str(failures[0]) == "Socket closed"
    # Waiting on a closed socket fails at once; waiting for its close does not.
    with pytest.raises(Error, match="Socket closed"):
        await ws.wait_for_event("framesent")
    assert await ws.wait_for_event("close") is ws


async def test_waiters_fail_with_target_closed_when_the_page_closes_first(
    page: Page, server: StaticServer, upstream: WSServer
) -> None:
    await open_page(page, server)
    async with page.expect_websocket() as info:
        await page.evaluate("(url) => open_ws(url)", upstream.url())
    ws = await info.value
    page_waiter: list[BaseException] = []
    socket_waiter: list[BaseException] = []

    async def wait_for_socket() -> None:
        try:
            await ws.wait_for_event("framereceived")
        except Error as exc:
            socket_waiter.append(exc)

    async def wait_for_page() -> None:
        try:
            async with page.expect_websocket():
                pass
        except Error as exc:
            page_waiter.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_socket)
        nursery.start_soon(wait_for_page)
        await trio.testing.wait_all_tasks_blocked()
        await page.close()
    assert [type(e) for e in socket_waiter] == [TargetClosedError]
    assert [type(e) for e in page_waiter] == [TargetClosedError]
    assert ws.is_closed()


async def test_expect_websocket_times_out_naming_what_it_waited_for(page: Page) -> None:
    with pytest.raises(TimeoutError, match='waiting for event "websocket"'):
        async with page.expect_websocket(timeout=0.2):
            pass


async def test_sockets_in_a_cross_origin_iframe_and_a_worker_are_observed(
    page: Page, server: StaticServer, other_server: StaticServer, upstream: WSServer
) -> None:
    other_server.route("/frame.html", PAGE)
    server.route("/", f'<iframe src="{other_server.url("/frame.html")}"></iframe>')
    recorder = Recorder(page)
    await page.goto(server.url("/"))
    frame = page.frames[1]
    assert frame._session is not page.main_frame._session  # an out-of-process iframe
    await frame.evaluate("(url) => open_ws(url)", upstream.url("/iframe"))
    await frame.evaluate("ws.send('from the iframe')")

    worker = (
        f"const ws = new WebSocket({upstream.url('/worker')!r}); ws.onopen = () => ws.send('from the worker');"
        " ws.onmessage = (e) => postMessage(e.data);"
    )
    await page.evaluate(
        """(code) => new Promise((resolve) => {
          const worker = new Worker(URL.createObjectURL(new Blob([code])));
          worker.onmessage = (e) => resolve(e.data);
        })""",
        worker,
    )
    await eventually(lambda: ("received", 1, "from the worker") in recorder.events, "the worker's echo")
    assert ("websocket", 0, upstream.url("/iframe")) in recorder.events
    assert ("sent", 0, "from the iframe") in recorder.events
    assert ("websocket", 1, upstream.url("/worker")) in recorder.events
    assert ("sent", 1, "from the worker") in recorder.events


async def test_mocked_route_frames_as_the_page_sends_and_receives_them(page: Page, server: StaticServer) -> None:
    def handler(route: WebSocketRoute) -> None:
        route.on_message(lambda message: route.send(f"echo {message!s}"))

    await open_page(page, server)
    await page.route_web_socket("**/mock", handler)
    recorder = Recorder(page)
    await page.evaluate("(url) => open_ws(url)", "ws://127.0.0.1:1/mock")
    await page.evaluate("ws.send('one'); ws.send('two')")
    with trio.fail_after(STEP):
        await page.wait_for_function("log.includes('message echo two')")
    await page.evaluate("ws.close()")
    await recorder.wait_closed()
    assert recorder.events == [
        ("websocket", 0, "ws://127.0.0.1:1/mock"),
        ("sent", 0, "one"),
        ("received", 0, "echo one"),
        ("sent", 0, "two"),
        ("received", 0, "echo two"),
        ("close", 0, True),
    ]


async def test_connected_route_frames_as_they_cross_the_wire(
    page: Page, server: StaticServer, upstream: WSServer
) -> None:
    def handler(route: WebSocketRoute) -> None:
        server_side = route.connect_to_server()
        route.on_message(lambda message: server_side.send(f"rewritten {message!s}"))

    await open_page(page, server)
    await page.route_web_socket("**/connected", handler)
    recorder = Recorder(page)
    await page.evaluate("(url) => open_ws(url)", upstream.url("/connected"))
    await page.evaluate("ws.send('hi')")
    with trio.fail_after(STEP):
        await page.wait_for_function("log.includes('message rewritten hi')")
    assert recorder.events == [
        ("websocket", 0, upstream.url("/connected")),
        ("sent", 0, "rewritten hi"),  # what the server got, not what the page sent
        ("received", 0, "rewritten hi"),
    ]


async def test_expect_websocket_frame_does_not_miss_a_greeting(page: Page, server: StaticServer) -> None:
    """The frame waiter is listening before the action creates the socket: no race."""

    async def greet(conn: ServerConnection) -> None:
        await conn.send("noise")
        await conn.send("welcome 42")
        await trio.sleep_forever()

    async with serve_ws(greet) as upstream:
        await open_page(page, server)
        async with page.expect_websocket_frame(lambda m: str(m).startswith("welcome"), url="**/chat") as info:
            await page.evaluate("(url) => open_ws(url)", upstream.url("/chat"))
        frame = await info.value
    assert frame.payload == "welcome 42"
    assert frame.direction == "received"
    assert frame.websocket.url == upstream.url("/chat")


async def test_the_network_domain_is_on_only_while_observed(
    page: Page, server: StaticServer, upstream: WSServer
) -> None:
    await open_page(page, server)
    assert not page._network_enabled  # unobserved native sockets cost nothing
    seen: list[WebSocket] = []
    page.on("websocket", seen.append)
    assert page._network_enabled
    await page.evaluate("(url) => open_ws(url)", upstream.url())
    await eventually(lambda: len(seen) == 1, "the socket to be reported")
    page.remove_listener("websocket", seen.append)
    assert page._network_enabled  # an observed socket is still open
    await page.evaluate("ws.close()")
    await seen[0].wait_for_event("close")
    assert not page._network_enabled


async def test_every_frame_in_order(page: Page, server: StaticServer, upstream: WSServer) -> None:
    await open_page(page, server)
    async with page.expect_websocket() as info:
        await page.evaluate("(url) => open_ws(url)", upstream.url())
    ws = await info.value
    received: list[str | bytes] = []
    ws.on("framereceived", received.append)
    count = 3000
    await page.evaluate("(n) => { for (let i = 0; i < n; i++) ws.send(String(i)); }", count)
    await eventually(lambda: len(received) == count, "every echo")
    assert received == [str(i) for i in range(count)]
