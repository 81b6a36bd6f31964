"""Flow control: a slow server, a slow page or slow user code never makes Python buffer without bound.

Each test stalls one party for real (a server that stops reading, a page whose main
thread is blocked in a synchronous XHR, a handler that waits), checks that the data
backs up where a browser keeps it (the page's ``bufferedAmount``, the server's TCP
window) rather than in Python, then lets it go and checks every frame arrived once,
in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from cdp_wsroute import Page, WebSocketRoute
from cdp_wsroute._codec import WINDOW
from cdp_wsroute._http import StaticServer
from cdp_wsroute._route import _BACKLOG, _RoutedSocket
from cdp_wsroute._tunnel import MAX_BATCH_BYTES, MAX_BATCHES_IN_FLIGHT, PAGE_HIGH_WATER, Document
from tests.support import STEP, eventually
from tests.wsservers import RawConnection, ServerConnection, serve_raw, serve_ws

pytestmark = pytest.mark.timeout(120)

FRAME = 64 * 1024
FRAMES = 640  # 40 MiB: far more than every buffer between the page and the server together

PAGE = """<!doctype html><script>
window.received = 0;
window.misordered = 0;
window.open_ws = (url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => resolve();
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') return;
    if (new DataView(e.data).getUint32(0) !== received) misordered++;
    received++;
  };
  ws.onclose = (e) => { window.closed = e.code + ' ' + e.reason; };
  window.ws = ws;
});
window.send_frames = (count, size) => {
  for (let i = 0; i < count; i++) {
    const frame = new Uint8Array(size);
    new DataView(frame.buffer).setUint32(0, i);
    frame[size - 1] = i % 251;
    ws.send(frame);
  }
};
// Block the main thread until the test answers this request.
window.block = (url) => {
  const xhr = new XMLHttpRequest();
  xhr.open('GET', url, false);
  try { xhr.send(); } catch (e) {}
};
</script>"""

HOLD_ANSWER = b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def frame_index(message: str | bytes) -> int:
    assert isinstance(message, bytes)
    assert len(message) == FRAME
    index = int.from_bytes(message[:4], "big")
    assert message[-1] == index % 251
    return index


def routed_socket(page: Page) -> tuple[Document, _RoutedSocket]:
    tunnel = page._tunnel
    assert tunnel is not None
    for document in tunnel._documents.values():
        for socket in document.sockets.values():
            return document, socket
    raise AssertionError("no routed socket")


async def open_page(page: Page, server: StaticServer, url: str | None) -> None:
    server.route("/", PAGE)
    await page.goto(server.url("/"))
    if url is not None:
        with trio.fail_after(STEP):
            await page.evaluate("(url) => open_ws(url)", url)


async def buffered_amount(page: Page) -> int:
    value: int = await page.evaluate("ws.bufferedAmount")
    return value


@pytest.fixture
async def hold_server() -> AsyncIterator[tuple[str, list[RawConnection]]]:
    """An HTTP endpoint that answers only when the test says so (to block a page in a sync XHR)."""
    async with serve_raw() as raw:
        yield f"http://127.0.0.1:{raw.port}/hold", raw.connections


async def test_slow_server_keeps_frames_in_the_page(page: Page, server: StaticServer) -> None:
    reading = trio.Event()

    async def reads_when_told(conn: ServerConnection) -> None:
        await reading.wait()
        while True:
            await conn.ws.get_message()

    async with serve_ws(reads_when_told) as upstream:
        await page.route_web_socket("**/ws", lambda route: route.connect_to_server())
        await open_page(page, server, upstream.url())
        await page.evaluate("([n, size]) => { send_frames(n, size); ws.close(1000, 'done'); }", [FRAMES, FRAME])
        document, socket = routed_socket(page)

        # The server does not read: once its TCP window is full the frames wait in the page,
        # counted in bufferedAmount as on a congested network, and Python holds about a window.
        with trio.fail_after(STEP):
            await page.wait_for_function("ws.bufferedAmount >= 20 * 1024 * 1024")
        await eventually(lambda: socket._upstream_bytes > 0, "the upstream writer to back up")
        assert socket._page_backlog() <= _BACKLOG + WINDOW + FRAME  # acknowledged below a backlog, plus a window

        reading.set()
        conn = await upstream.next_connection()
        await conn.wait_for(lambda c: c.closed is not None, timeout=60)
        assert [frame_index(m) for m in conn.messages] == list(range(FRAMES))
        assert conn.closed == (1000, "done")
        assert await buffered_amount(page) == 0
        assert not document.sockets or socket._upstream_bytes == 0


async def test_slow_page_stops_reading_the_server(
    page: Page, server: StaticServer, hold_server: tuple[str, list[RawConnection]]
) -> None:
    hold_url, holds = hold_server
    sent = 0

    async def floods_on_start(conn: ServerConnection) -> None:
        nonlocal sent
        assert await conn.ws.get_message() == "start"
        for index in range(FRAMES):
            frame = bytearray(FRAME)
            frame[:4] = index.to_bytes(4, "big")
            frame[-1] = index % 251
            await conn.ws.send_message(bytes(frame))
            sent += 1
        await trio.sleep_forever()

    async with serve_ws(floods_on_start) as upstream:
        await page.route_web_socket("**/ws", lambda route: route.connect_to_server())
        await open_page(page, server, upstream.url())
        await page.evaluate("(url) => { ws.send('start'); setTimeout(() => block(url), 0); }", hold_url)
        await eventually(lambda: bool(holds), "the page to block in its request")
        document, _ = routed_socket(page)

        # The page's main thread is blocked: Python stops reading once a high-water mark of
        # bytes is on its way to the page, and the server's sends stall behind TCP.
        await eventually(lambda: document.pending_bytes >= PAGE_HIGH_WATER, "Python to stop at the high-water mark")
        assert document.pending_bytes <= PAGE_HIGH_WATER + FRAME
        assert sent < FRAMES

        await holds[0].send_raw(HOLD_ANSWER)
        with trio.fail_after(60):
            await page.wait_for_function("(n) => received === n", FRAMES, timeout=0)
        assert await page.evaluate("misordered") == 0
        assert sent == FRAMES
        assert document.pending_bytes == 0


async def test_slow_handler_keeps_frames_in_the_page(page: Page, server: StaticServer) -> None:
    go = trio.Event()
    seen: list[int] = []

    def handler(route: WebSocketRoute) -> None:
        async def on_message(message: str | bytes) -> None:
            await go.wait()
            seen.append(frame_index(message))

        route.on_message(on_message)

    await page.route_web_socket("**/ws", handler)
    await open_page(page, server, "ws://127.0.0.1:1/ws")
    await page.evaluate("([n, size]) => send_frames(n, size)", [FRAMES // 2, FRAME])
    _, socket = routed_socket(page)

    with trio.fail_after(STEP):
        await page.wait_for_function("ws.bufferedAmount >= 10 * 1024 * 1024")
    assert socket._page_backlog() <= _BACKLOG + WINDOW + FRAME

    go.set()
    await eventually(lambda: len(seen) == FRAMES // 2, "every frame to reach the handler", timeout=60)
    assert seen == list(range(FRAMES // 2))
    assert await buffered_amount(page) == 0


async def test_unread_receive_queue_keeps_frames_in_the_page(page: Page, server: StaticServer) -> None:
    await open_page(page, server, None)
    async with page.expect_web_socket_route("**/ws") as info:
        await page.evaluate("(url) => open_ws(url)", "ws://127.0.0.1:1/ws")
    route = await info.value
    await page.evaluate("([n, size]) => send_frames(n, size)", [FRAMES // 2, FRAME])

    with trio.fail_after(STEP):
        await page.wait_for_function("ws.bufferedAmount >= 10 * 1024 * 1024")
    _, socket = routed_socket(page)
    assert socket._page_backlog() <= _BACKLOG + WINDOW + FRAME

    for index in range(FRAMES // 2):
        assert frame_index(await route.receive()) == index
    assert await buffered_amount(page) == 0


async def test_text_frames_of_every_width_flow_through_a_small_window(page: Page, server: StaticServer) -> None:
    """Astral and multi-byte text is counted consistently on both ends: nothing stalls."""
    received: list[str | bytes] = []
    await page.route_web_socket("**/ws", lambda route: route.on_message(received.append))
    await open_page(page, server, "ws://127.0.0.1:1/ws")
    count = await page.evaluate(
        """() => {
          const parts = ['a', 'é', '€', '😀'];
          let n = 0;
          for (const part of parts) for (let i = 0; i < 40; i++, n++) ws.send(n + ':' + part.repeat(20000));
          return n;
        }"""
    )
    await eventually(lambda: len(received) == count, "every text frame")
    assert [int(str(m).split(":", 1)[0]) for m in received] == list(range(count))
    assert await buffered_amount(page) == 0


async def test_messages_too_big_for_one_protocol_message_go_in_parts(page: Page, server: StaticServer) -> None:
    """Chromium fails a protocol message of about 100 MiB: large messages and bursts are split, and
    the page gets each one whole, in order, and the browser connection stays healthy."""
    big = bytes(range(256)) * (120 * 1024 * 1024 // 256)  # 120 MiB
    text = "é☃😀" * (7 * 1024 * 1024)  # 21 Mi characters, 63 MiB of UTF-8

    def handler(route: WebSocketRoute) -> None:
        def on_message(message: str | bytes) -> None:
            route.send(big)
            route.send(text)
            for index in range(40):  # a 160 MiB burst
                route.send(bytes([index]) * (4 * 1024 * 1024))
            route.send("end")

        route.on_message(on_message)

    await page.route_web_socket("**/ws", handler)
    await open_page(page, server, None)
    checks = await page.evaluate(
        """() => new Promise((resolve) => {
          const ws = new WebSocket('ws://127.0.0.1:1/ws');
          ws.binaryType = 'arraybuffer';
          const seen = [];
          ws.onopen = () => ws.send('go');
          ws.onmessage = (e) => {
            if (e.data === 'end') { resolve(seen); return; }
            if (typeof e.data === 'string') {
              seen.push(['text', e.data.length, e.data.slice(0, 4), e.data.slice(-4)]);
            } else {
              const bytes = new Uint8Array(e.data);
              let ok = true;
              const expected = (i) => (seen.length === 0 ? i % 256 : seen.length - 2);
              for (let i = 0; i < bytes.length; i += 4093) ok = ok && bytes[i] === expected(i);
              seen.push(['binary', bytes.length, ok]);
            }
          };
        })"""
    )
    assert checks[0] == ["binary", len(big), True]
    assert checks[1] == ["text", 4 * 7 * 1024 * 1024, "é☃😀", "é☃😀"]  # 😀 is two UTF-16 units
    assert checks[2:] == [["binary", 4 * 1024 * 1024, True] for _ in range(40)]
    assert await page.evaluate("1 + 1") == 2


async def test_full_batches_pipeline_and_small_ones_gather(page: Page, server: StaticServer) -> None:
    """Up to MAX_BATCHES_IN_FLIGHT full calls go to the page at once; a partial one waits while two
    are in flight, gathering what is queued meanwhile; the page gets everything once, in order."""
    routes: list[WebSocketRoute] = []
    await page.route_web_socket("**/gather", routes.append)
    await open_page(page, server, None)
    await page.evaluate(
        """() => new Promise((resolve) => {
          window.got = [];
          const ws = new WebSocket('ws://127.0.0.1:1/gather');
          ws.binaryType = 'arraybuffer';
          ws.onmessage = (e) => got.push(typeof e.data === 'string' ? e.data : e.data.byteLength);
          ws.onopen = resolve;
        })"""
    )
    document, _ = routed_socket(page)
    await eventually(lambda: document.batches_in_flight == 0, "the open to be delivered")
    # No answer can arrive in between: these run without a checkpoint.
    routes[0].send(b"x" * (4 * MAX_BATCH_BYTES))  # four full parts
    assert document.batches_in_flight == 4
    for k in range(10):
        routes[0].send(f"small {k}")
    assert document.batches_in_flight == 4  # the small ones wait, together
    assert len(document.outbox) == 10
    routes[0].send(b"y" * (MAX_BATCHES_IN_FLIGHT * MAX_BATCH_BYTES))  # fills the other slots, no more
    assert document.batches_in_flight == MAX_BATCHES_IN_FLIGHT
    expected = [4 * MAX_BATCH_BYTES, *(f"small {k}" for k in range(10)), MAX_BATCHES_IN_FLIGHT * MAX_BATCH_BYTES]
    await page.wait_for_function(f"got.length === {len(expected)}", timeout=STEP)
    assert await page.evaluate("got") == expected
    assert document.batches_in_flight == 0
    assert not document.outbox
