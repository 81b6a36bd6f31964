"""connect_to_server(...) options, the server's handshake response, and trace logging (real servers)."""

from __future__ import annotations

import logging
import ssl
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
import wsproto
import wsproto.events
import wsproto.utilities
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason

from cdp_wsroute import Browser, BrowserContext, HandshakeResponse, Page, UsageError, WebSocketRoute, enable_trace
from cdp_wsroute._http import StaticServer
from cdp_wsroute._upstream import Deflate
from tests.support import STEP, closed_port, eventually
from tests.wsservers import ServerConnection, WSServer, serve_deflate, serve_raw, serve_ws

PAGE = """<!doctype html><script>
window.log = [];
window.open_ws = (url, protocols) => {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => log.push('open ' + ws.protocol);
  ws.onmessage = (e) => log.push('message ' + (typeof e.data === 'string' ? e.data : e.data.byteLength));
  ws.onerror = () => log.push('error');
  ws.onclose = (e) => log.push('close ' + e.code + ' ' + e.wasClean);
  window.ws = ws;
};
</script>"""


@pytest.fixture
async def upstream() -> AsyncIterator[WSServer]:
    async with serve_ws() as ws_server:
        yield ws_server


async def open_page(page: Page, server: StaticServer) -> Page:
    server.route("/", PAGE)
    await page.goto(server.url("/"))
    return page


async def wait_log(page: Page, *entries: str) -> list[str]:
    with trio.fail_after(STEP):
        result: list[str] = await page.wait_for_function(
            "(want) => want.every((w) => log.includes(w)) && log", list(entries)
        )
    return result


async def test_url_option_connects_elsewhere(page: Page, server: StaticServer, upstream: WSServer) -> None:
    await open_page(page, server)
    await page.route_web_socket("**/nowhere", lambda route: route.connect_to_server(url=upstream.url("/elsewhere")))
    await page.evaluate("(url) => open_ws(url)", f"ws://127.0.0.1:{closed_port()}/nowhere")
    await wait_log(page, "open ")
    await page.evaluate("ws.send('hi')")
    assert await wait_log(page, "message hi") == ["open ", "message hi"]
    assert (await upstream.next_connection()).path == "/elsewhere"


async def test_headers_option_adds_replaces_and_removes(
    context: BrowserContext, server: StaticServer, upstream: WSServer
) -> None:
    page = await open_page(await context.new_page(), server)
    await context.add_cookies([{"name": "session", "value": "s1", "url": upstream.url("/").replace("ws:", "http:")}])

    def handler(route: WebSocketRoute) -> None:
        route.connect_to_server(headers={"origin": None, "X-Test": "1", "user-agent": "custom agent"})

    await page.route_web_socket("**/ws", handler)
    await page.evaluate("(url) => open_ws(url)", upstream.url("/ws"))
    headers = (await upstream.next_connection()).headers
    assert "origin" not in headers
    assert headers["x-test"] == "1"
    assert headers["user-agent"] == "custom agent"
    assert headers["cookie"] == "session=s1"  # defaults not overridden stay


async def test_subprotocols_option_and_the_handshake_response(
    page: Page, server: StaticServer, upstream: WSServer
) -> None:
    upstream.accept_headers = [(b"X-Server", b"yes")]
    await open_page(page, server)
    routes: list[WebSocketRoute] = []

    def handler(route: WebSocketRoute) -> None:
        routes.append(route.connect_to_server(subprotocols=["v2", "v1"]))

    await page.route_web_socket("**/ws", handler)
    await page.evaluate("(url) => open_ws(url, ['chat'])", upstream.url("/ws"))
    assert (await upstream.next_connection()).subprotocols == ["v2", "v1"]
    await wait_log(page, "open v2")  # the page sees what the server selected
    response = routes[0].response
    assert isinstance(response, HandshakeResponse)
    assert (response.status, response.subprotocol, response.header("x-server")) == (101, "v2", "yes")
    assert routes[0].protocol == "v2"
    assert routes[0].protocols() == ["chat"]  # what the page asked for


async def test_accept_language_matches_the_browser(page: Page, server: StaticServer, upstream: WSServer) -> None:
    await open_page(page, server)
    await page.evaluate("(url) => open_ws(url)", upstream.url("/native"))
    native = await upstream.next_connection(0)
    await page.route_web_socket("**/routed", lambda route: route.connect_to_server())
    await page.evaluate("(url) => open_ws(url)", upstream.url("/routed"))
    routed = await upstream.next_connection(1)
    assert native.headers["accept-language"]
    assert routed.headers["accept-language"] == native.headers["accept-language"]


async def test_rejection_is_readable_on_the_server_route(page: Page, server: StaticServer, upstream: WSServer) -> None:
    upstream.reject_status = 403
    await open_page(page, server)
    routes: list[WebSocketRoute] = []
    await page.route_web_socket("**/ws", lambda route: routes.append(route.connect_to_server()))
    await page.evaluate("(url) => open_ws(url)", upstream.url("/ws"))
    assert await wait_log(page, "close 1006 false") == ["error", "close 1006 false"]
    server_route = routes[0]
    assert server_route.response is not None
    assert server_route.response.status == 403
    assert server_route.error is not None
    assert "403" in str(server_route.error)


async def test_timeout_option_fails_a_server_that_never_answers(page: Page, server: StaticServer) -> None:
    await open_page(page, server)
    routes: list[WebSocketRoute] = []
    async with serve_raw() as raw:
        await page.route_web_socket("**/ws", lambda route: routes.append(route.connect_to_server(timeout=0.5)))
        await page.evaluate("(url) => open_ws(url)", raw.url("/ws"))
        await raw.next_connection()  # the handshake request arrived, and is never answered
        assert await wait_log(page, "close 1006 false") == ["error", "close 1006 false"]
    assert routes[0].error is not None
    assert "in time" in str(routes[0].error)


async def test_max_message_size_option(page: Page, server: StaticServer) -> None:
    async def big(conn: ServerConnection) -> None:
        await conn.ws.send_message(b"x" * 2048)
        await trio.sleep_forever()

    await open_page(page, server)
    routes: list[WebSocketRoute] = []
    async with serve_ws(big) as ws_server:
        await page.route_web_socket(
            "**/ws", lambda route: routes.append(route.connect_to_server(max_message_size=1024))
        )
        await page.evaluate("(url) => open_ws(url)", ws_server.url("/ws"))
        # Too big for the limit: the connection fails like one that sent an invalid frame.
        assert await wait_log(page, "close 1006 false") == ["open ", "error", "close 1006 false"]
    assert routes[0].error is not None
    assert "1009" in str(routes[0].error)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "ftp://x/"}, "ws://"),
        ({"url": "ws://exa mple/"}, "url"),
        ({"subprotocols": "chat"}, "subprotocols"),
        ({"subprotocols": ["bad token"]}, "subprotocols"),
        ({"timeout": 0}, "timeout"),
        ({"max_message_size": -1}, "max_message_size"),
    ],
)
async def test_invalid_options_raise_usage_error(
    page: Page, server: StaticServer, upstream: WSServer, options: dict[str, object], message: str
) -> None:
    await open_page(page, server)
    errors: list[Exception] = []

    def handler(route: WebSocketRoute) -> None:
        try:
            route.connect_to_server(**options)  # type: ignore[arg-type]
        except UsageError as exc:
            errors.append(exc)

    await page.route_web_socket("**/ws", handler)
    await page.evaluate("(url) => open_ws(url)", upstream.url("/ws"))
    await eventually(lambda: bool(errors), "the handler to run")
    assert message in str(errors[0])
    await wait_log(page, "open ")  # not connected: the socket is mocked and opens


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.websocket_url} {record.getMessage()}")  # type: ignore[attr-defined]


async def test_trace_logs_handshake_and_frames(
    context: BrowserContext, server: StaticServer, upstream: WSServer
) -> None:
    page = await open_page(await context.new_page(), server)
    await context.add_cookies([{"name": "secret", "value": "v" * 10, "url": upstream.url("/").replace("ws:", "http:")}])
    lines = Lines()
    enable_trace(handler=lines)
    try:
        await page.route_web_socket("**/ws", lambda route: route.connect_to_server())
        await page.evaluate("(url) => open_ws(url)", upstream.url("/ws"))
        await wait_log(page, "open ")
        await page.evaluate("ws.send('hello'); ws.send(new Uint8Array([1, 2, 3]))")
        await wait_log(page, "message hello", "message 3")
    finally:
        enable_trace(False)
        logging.getLogger("cdp_wsroute.trace").removeHandler(lines)
    text = "\n".join(lines.lines)
    assert f"GET {upstream.url('/ws')}" in text
    assert "Cookie: <" in text
    assert "v" * 10 not in text
    assert "HTTP/1.1 101" in text
    for direction in ("page -> route", "route -> server", "server -> route", "route -> page"):
        assert f"{direction}" in text, direction
    assert "text 5 bytes 'hello'" in text
    assert "binary 3 bytes 01 02 03" in text
    assert all(line.startswith(upstream.url("/ws")) for line in lines.lines)


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def serve_wss(ca: trustme.CA) -> AsyncIterator[WSServer]:
    """A wss:// echo server whose certificate only ``ca`` vouches for."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    async with serve_ws(ssl_context=context) as ws_server:
        yield ws_server


async def wss_log(
    browser: Browser, server: StaticServer, url: str, **options: Any
) -> tuple[list[str], list[WebSocketRoute]]:
    context = await browser.new_context(**options)
    try:
        page = await open_page(await context.new_page(), server)
        routes: list[WebSocketRoute] = []
        await page.route_web_socket("**/tls", lambda route: routes.append(route.connect_to_server()))
        await page.evaluate("(url) => open_ws(url)", url)
        with trio.fail_after(STEP):
            log: list[str] = await page.wait_for_function(
                "log.some((e) => e === 'open ' || e.startsWith('close')) && log"
            )
        if log == ["open "]:
            await page.evaluate("ws.send('over tls')")
            log = await wait_log(page, "message over tls")
        return log, routes
    finally:
        await context.close()


async def test_wss_with_a_certificate_nobody_trusts_fails_like_native(
    browser: Browser, server: StaticServer, certificate_authority: trustme.CA
) -> None:
    async with serve_wss(certificate_authority) as wss:
        log, routes = await wss_log(browser, server, wss.url("/tls").replace("ws:", "wss:"))
    assert log == ["error", "close 1006 false"]
    assert routes[0].error is not None
    assert "TLS" in str(routes[0].error)


async def test_wss_trusted_through_the_context_ca_file(
    browser: Browser, server: StaticServer, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca_file))
    async with serve_wss(certificate_authority) as wss:
        log, _ = await wss_log(browser, server, wss.url("/tls").replace("ws:", "wss:"), ca_file=ca_file)
    assert log == ["open ", "message over tls"]


async def test_wss_with_ignore_https_errors(
    browser: Browser, server: StaticServer, certificate_authority: trustme.CA
) -> None:
    async with serve_wss(certificate_authority) as wss:
        log, _ = await wss_log(browser, server, wss.url("/tls").replace("ws:", "wss:"), ignore_https_errors=True)
    assert log == ["open ", "message over tls"]


async def test_ca_file_must_exist(browser: Browser, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="ca_file"):
        await browser.new_context(ca_file=tmp_path / "missing.pem")


# -- keepalive ------------------------------------------------------------------------------------


async def test_keepalive_drops_an_upstream_that_stops_answering(page: Page, server: StaticServer) -> None:
    await open_page(page, server)
    routes: list[WebSocketRoute] = []
    async with serve_raw() as raw:
        await page.route_web_socket(
            "**/ws", lambda route: routes.append(route.connect_to_server(ping_interval=0.2, ping_timeout=0.3))
        )
        await page.evaluate("(url) => open_ws(url)", raw.url("/ws"))
        connection = await raw.next_connection()
        await connection.accept()  # then never reads: no pong will come
        assert await wait_log(page, "close 1006 false") == ["open ", "error", "close 1006 false"]
    assert routes[0].error is not None
    assert "ping" in str(routes[0].error)


async def test_keepalive_keeps_a_live_upstream(page: Page, server: StaticServer, upstream: WSServer) -> None:
    await open_page(page, server)
    await page.route_web_socket("**/ws", lambda route: route.connect_to_server(ping_interval=0.05))
    await page.evaluate("(url) => open_ws(url)", upstream.url("/ws"))
    await wait_log(page, "open ")
    for index in range(5):  # several intervals pass while the echo goes on
        await page.evaluate("(n) => ws.send('ping-' + n)", index)
        await wait_log(page, f"message ping-{index}")
    assert "close 1006 false" not in await page.evaluate("log")


# -- close codes pass through exactly --------------------------------------------------------------

SERVER_CODES = [(1000, "bye"), (1001, "going"), (1008, "policy"), (1011, "oops"), (3000, ""), (4999, "max"), (None, "")]


@pytest.mark.parametrize(("code", "reason"), SERVER_CODES)
async def test_server_close_codes_reach_the_page_as_natively(
    page: Page, server: StaticServer, code: int | None, reason: str
) -> None:
    async def close_at_once(conn: ServerConnection) -> None:
        await conn.ws.get_message()
        # wsproto sends an empty close frame (no code) only for its enum member.
        await conn.ws.aclose(CloseReason.NO_STATUS_RCVD if code is None else code, reason or None)

    await open_page(page, server)
    await page.evaluate(
        """() => { window.closes = []; window.closing = (url) => {
            const ws = new WebSocket(url);
            ws.onopen = () => ws.send('close please');
            ws.onclose = (e) => closes.push([e.code, e.reason, e.wasClean]);
        }; }"""
    )
    async with serve_ws(close_at_once) as ws_server:
        await page.evaluate("(url) => closing(url)", ws_server.url("/native"))
        await page.route_web_socket("**/routed", lambda route: route.connect_to_server())
        await page.evaluate("(url) => closing(url)", ws_server.url("/routed"))
        with trio.fail_after(STEP):
            native, routed = await page.wait_for_function("closes.length === 2 && closes")
    assert routed == native
    assert native == [1005 if code is None else code, reason, True]


@pytest.mark.parametrize(("code", "reason"), [(1000, "done"), (3001, "x" * 123), (4000, "ünïcode"), (None, "")])
async def test_page_close_codes_reach_the_server_as_natively(
    page: Page, server: StaticServer, upstream: WSServer, code: int | None, reason: str
) -> None:
    await open_page(page, server)
    await page.route_web_socket("**/routed", lambda route: route.connect_to_server())
    args = [] if code is None else [code, reason]
    seen = []
    for index, path in enumerate(("/native", "/routed")):
        await page.evaluate(
            """([url, args]) => new Promise((resolve) => {
                const ws = new WebSocket(url);
                ws.onopen = () => { ws.close(...args); resolve(); };
            })""",
            [upstream.url(path), args],
        )
        conn = await upstream.next_connection(index)
        await conn.wait_for(lambda c: c.closed is not None)
        seen.append(conn.closed)
    native, routed = seen
    assert routed == native
    assert native == ((1005, None) if code is None else (code, reason or None))


# -- bad input from the server: what the page sees matches native ---------------------------------

BAD_FRAMES = {
    "invalid UTF-8 in a text frame": b"\x81\x02\xff\xfe",
    "reserved opcode": b"\x83\x00",
    "unmasked length overflow": b"\x82\x7f" + b"\xff" * 8,
}


@pytest.mark.parametrize("frame", list(BAD_FRAMES), ids=list(BAD_FRAMES))
async def test_bad_frames_fail_the_socket_as_natively(page: Page, server: StaticServer, frame: str) -> None:
    await open_page(page, server)
    await page.evaluate(
        """() => { window.events = {}; window.watch = (name, url) => {
            const log = events[name] = [];
            const ws = new WebSocket(url);
            ws.onopen = () => log.push('open');
            ws.onmessage = () => log.push('message');
            ws.onerror = () => log.push('error');
            ws.onclose = (e) => log.push('close ' + e.code + ' ' + e.wasClean);
        }; }"""
    )
    routes: list[WebSocketRoute] = []
    async with serve_raw() as raw:
        await page.route_web_socket("**/routed", lambda route: routes.append(route.connect_to_server()))
        for index, name in enumerate(("native", "routed")):
            await page.evaluate("([name, url]) => watch(name, url)", [name, raw.url(f"/{name}")])
            connection = await raw.next_connection(index)
            await connection.accept()
            with trio.fail_after(STEP):
                await page.wait_for_function("(name) => events[name].includes('open')", name)
            await connection.send_raw(BAD_FRAMES[frame])
        with trio.fail_after(STEP):
            logs = await page.wait_for_function(
                "Object.values(events).every((log) => log.some((e) => e.startsWith('close'))) && events"
            )
    assert logs["routed"] == logs["native"]
    assert logs["native"] == ["open", "error", "close 1006 false"]
    assert routes[0].error is not None


@pytest.mark.parametrize("status", [401, 404, 500])
async def test_rejected_handshakes_look_native(page: Page, server: StaticServer, status: int) -> None:
    await open_page(page, server)
    routes: list[WebSocketRoute] = []
    async with serve_ws() as ws_server:
        ws_server.reject_status = status
        await page.route_web_socket("**/routed", lambda route: routes.append(route.connect_to_server()))
        await page.evaluate("(url) => open_ws(url)", ws_server.url("/native"))
        native = await wait_log(page, "close 1006 false")
        await page.evaluate("() => { window.log = []; }")
        await page.evaluate("(url) => open_ws(url)", ws_server.url("/routed"))
        routed = await wait_log(page, "close 1006 false")
    assert routed == native == ["error", "close 1006 false"]
    response = routes[0].response
    assert response is not None
    assert response.status == status
    assert str(status) in str(routes[0].error)


# -- SameSite: the cookies a handshake carries, as natively ------------------------------------------

COOKIE_PAGE = """<!doctype html><script>
window.done = [];
window.open_as = (url) => {
  const ws = new WebSocket(url);
  ws.onopen = () => { done.push(url); ws.close(); };
  ws.onerror = () => done.push(url);
};
</script>"""


@pytest.mark.parametrize(
    "where",
    [
        "same-site page",
        "cross-site page",
        "same-site iframe in a cross-site page",
        "cross-site page after a same-site one in the frame",
    ],
)
async def test_handshake_cookies_follow_samesite_as_natively(
    context: BrowserContext, server: StaticServer, other_server: StaticServer, upstream: WSServer, where: str
) -> None:
    cookie_url = upstream.url("/").replace("ws:", "http:")
    await context.add_cookies(
        [
            {"name": "strict", "value": "1", "url": cookie_url, "sameSite": "Strict"},
            {"name": "lax", "value": "1", "url": cookie_url, "sameSite": "Lax"},
            {"name": "unspecified", "value": "1", "url": cookie_url},
        ]
    )
    server.route("/cookies", COOKIE_PAGE)
    other_server.route("/cookies", COOKIE_PAGE)
    page = await context.new_page()
    await page.route_web_socket("**/routed", lambda route: route.connect_to_server())
    first = 0
    if where == "same-site page":
        await page.goto(server.url("/cookies"))
        frame = page.main_frame
    elif where.startswith("cross-site page after"):
        # The frame's site is read at each handshake: a navigation changes what is sent.
        await page.goto(server.url("/cookies"))
        await page.evaluate("(url) => open_as(url)", upstream.url("/routed"))
        first_conn = await upstream.next_connection(0)
        assert "strict=1" in first_conn.headers.get("cookie", "")
        first = 1
        await page.goto(other_server.url("/cookies"))
        frame = page.main_frame
    elif where == "cross-site page":
        await page.goto(other_server.url("/cookies"))
        frame = page.main_frame
    else:
        other_server.route("/outer", f'<iframe src="{server.url("/cookies")}"></iframe>')
        await page.goto(other_server.url("/outer"))
        frame = page.frames[1]
        await frame.wait_for_function("typeof open_as === 'function'")
    for index, path in enumerate(("/native", "/routed")):
        await frame.evaluate("(url) => open_as(url)", upstream.url(path))
        await upstream.next_connection(first + index)
    native, routed = (conn.headers.get("cookie", "") for conn in upstream.connections[first:])
    assert sorted(routed.split("; ")) == sorted(native.split("; "))
    expected = "lax=1; strict=1; unspecified=1" if where == "same-site page" else ""
    assert "; ".join(sorted(filter(None, native.split("; ")))) == expected


# -- permessage-deflate ------------------------------------------------------------------------------


async def test_permessage_deflate_is_offered_and_reported_like_native(page: Page, server: StaticServer) -> None:
    async with serve_deflate() as upstream:
        await open_page(page, server)
        await page.evaluate("(url) => open_ws(url)", upstream.url("/native"))
        await wait_log(page, "open ")
        native = await page.evaluate("ws.extensions")
        await page.evaluate("ws.close(); log.length = 0")

        routes: list[WebSocketRoute] = []
        await page.route_web_socket("**/routed", lambda route: routes.append(route.connect_to_server()))
        await page.evaluate("(url) => open_ws(url)", upstream.url("/routed"))
        await wait_log(page, "open ")
        assert native.startswith("permessage-deflate")
        assert await page.evaluate("ws.extensions") == native
        assert upstream.offers[1] == upstream.offers[0]  # the same offer as Chromium's own
        response = routes[0].response
        assert response is not None
        assert ("sec-websocket-extensions", native) in response.headers

        # Compressed on the wire both ways: 100 kB of one letter is a few hundred bytes.
        before = upstream.wire_bytes
        await page.evaluate("ws.send('a'.repeat(100000))")
        with trio.fail_after(STEP):
            await page.wait_for_function("log.includes('message ' + 'a'.repeat(100000))")
        assert upstream.messages[-1] == "a" * 100000
        assert upstream.wire_bytes - before < 2000


def test_deflate_stops_inflating_at_max_message_size() -> None:
    """A small compressed frame cannot make Python allocate more than a message may hold."""
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    server = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
    deflate = Deflate(max_message_size=1024 * 1024)
    server.receive_data(client.send(wsproto.events.Request(host="x", target="/", extensions=[deflate])))
    assert isinstance(next(server.events()), wsproto.events.Request)
    client.receive_data(server.send(wsproto.events.AcceptConnection(extensions=[PerMessageDeflate()])))
    assert isinstance(next(client.events()), wsproto.events.AcceptConnection)
    bomb = server.send(wsproto.events.BytesMessage(bytes(64 * 1024 * 1024)))
    assert len(bomb) < 256 * 1024

    tracemalloc.start()
    try:
        client.receive_data(bomb)
        events = list(client.events())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(events[0], wsproto.events.CloseConnection)
    assert events[0].code == CloseReason.MESSAGE_TOO_BIG
    assert peak < 8 * 1024 * 1024


def test_deflate_rejects_a_malformed_answer() -> None:
    with pytest.raises(wsproto.utilities.RemoteProtocolError):
        Deflate(1024).finalize("permessage-deflate; client_max_window_bits=99")
