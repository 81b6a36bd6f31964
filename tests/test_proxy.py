"""Upstream connections through the context's proxy: HTTP CONNECT and SOCKS5 (test proxies on 127.0.0.1)."""

from __future__ import annotations

import base64
import functools
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import trio

from cdp_wsroute import Browser, NavigationError, UsageError, WebSocketRoute
from cdp_wsroute._http import StaticServer
from cdp_wsroute._proxy import ProxySettings
from tests.support import STEP
from tests.wsservers import serve_ws

# Installed into about:blank: a page loaded over http would itself go through the proxy.
SETUP = """() => {
  window.log = [];
  window.open_ws = (url) => {
    const ws = new WebSocket(url);
    ws.onopen = () => { log.push('open'); ws.send('through'); };
    ws.onmessage = (e) => log.push('message ' + e.data);
    ws.onerror = () => log.push('error');
    ws.onclose = (e) => log.push('close ' + e.code + ' ' + e.wasClean);
  };
}"""


@dataclass(eq=False)
class RecordingProxy:
    """A minimal proxy that records what it was asked and pipes bytes."""

    kind: str
    refuse: bool = False
    require: str | None = None  # "user:password" the HTTP proxy demands (407 otherwise)
    port: int = 0
    targets: list[str] = field(default_factory=list)
    credentials: list[str] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"{self.kind}://127.0.0.1:{self.port}"

    async def handle(self, client: trio.SocketStream) -> None:
        try:
            target = await (self._http(client) if self.kind == "http" else self._socks(client))
            if target is None:
                return
            host, port = target
            async with await trio.open_tcp_stream(host, port) as upstream, trio.open_nursery() as nursery:
                nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
                nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await client.aclose()

    async def _http(self, client: trio.SocketStream) -> tuple[str, int] | None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await client.receive_some(4096)
            if not chunk:
                return None
            head += chunk
        text, _, rest = head.partition(b"\r\n\r\n")
        lines = text.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
        self.targets.append(target)
        given = None
        for line in lines[1:]:
            if line.lower().startswith("proxy-authorization: basic "):
                given = base64.b64decode(line.split(" ", 2)[2]).decode()
                self.credentials.append(given)
        if self.refuse:
            await client.send_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            return None
        if self.require is not None and given != self.require:
            await client.send_all(
                b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n'
                b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
            return None
        if method == "CONNECT":
            await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            host, _, port = target.rpartition(":")
            return host, int(port)
        # A plain http:// request in absolute form: forward it in origin form, one per connection.
        url = urlsplit(target)
        kept = [line for line in lines[1:] if not line.lower().startswith(("proxy-", "connection:"))]
        request = "\r\n".join([f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} {version}", *kept])
        async with await trio.open_tcp_stream(url.hostname or "", url.port or 80) as upstream:
            await upstream.send_all(request.encode("latin-1") + b"\r\nconnection: close\r\n\r\n" + rest)
            while data := await upstream.receive_some(65536):
                await client.send_all(data)
        return None

    async def _socks(self, client: trio.SocketStream) -> tuple[str, int] | None:
        async def exactly(count: int) -> bytes:
            data = b""
            while len(data) < count:
                chunk = await client.receive_some(count - len(data))
                if not chunk:
                    raise trio.BrokenResourceError
                data += chunk
            return data

        _, count = await exactly(2)
        methods = await exactly(count)
        if 2 in methods:
            await client.send_all(b"\x05\x02")
            _, user_length = await exactly(2)
            user = (await exactly(user_length)).decode()
            password = (await exactly((await exactly(1))[0])).decode()
            self.credentials.append(f"{user}:{password}")
            await client.send_all(b"\x01\x00")
        else:
            await client.send_all(b"\x05\x00")
        _, _, _, kind = await exactly(4)
        if kind == 1:
            host = ".".join(str(b) for b in await exactly(4))
        else:
            host = (await exactly((await exactly(1))[0])).decode()
        (port,) = struct.unpack("!H", await exactly(2))
        self.targets.append(f"{host}:{port}")
        reply = 2 if self.refuse else 0
        await client.send_all(bytes([5, reply, 0, 1, 0, 0, 0, 0, 0, 0]))
        return None if self.refuse else (host, port)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


@asynccontextmanager
async def serve_proxy(kind: str, *, refuse: bool = False, require: str | None = None) -> AsyncIterator[RecordingProxy]:
    proxy = RecordingProxy(kind, refuse, require)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()


Run = Callable[..., Awaitable[tuple[list[str], list[WebSocketRoute]]]]


@pytest.fixture
def run_routed(browser: Browser) -> Run:
    async def run(url: str, **context_options: object) -> tuple[list[str], list[WebSocketRoute]]:
        context = await browser.new_context(**context_options)  # type: ignore[arg-type]
        try:
            page = await context.new_page()
            await page.evaluate(SETUP)
            routes: list[WebSocketRoute] = []
            await page.route_web_socket("**/ws", lambda route: routes.append(route.connect_to_server()))
            await page.evaluate("(url) => open_ws(url)", url)
            with trio.fail_after(STEP):
                log: list[str] = await page.wait_for_function(
                    "log.some((e) => e === 'message through' || e.startsWith('close')) && log"
                )
            return log, routes
        finally:
            await context.close()

    return run


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_upstream_goes_through_the_proxy(run_routed: Run, kind: str) -> None:
    async with serve_ws() as upstream, serve_proxy(kind) as proxy:
        log, _ = await run_routed(upstream.url("/ws"), proxy={"server": proxy.server, "bypass": "<-loopback>"})
    assert log == ["open", "message through"]
    assert proxy.targets == [f"127.0.0.1:{upstream.port}"]


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_proxy_credentials(run_routed: Run, kind: str) -> None:
    async with serve_ws() as upstream, serve_proxy(kind) as proxy:
        options = {"server": proxy.server, "bypass": "<-loopback>", "username": "user", "password": "p@ss"}
        log, _ = await run_routed(upstream.url("/ws"), proxy=options)
    assert log == ["open", "message through"]
    assert proxy.credentials == ["user:p@ss"]


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_a_refusing_proxy_is_a_network_failure(run_routed: Run, kind: str) -> None:
    async with serve_ws() as upstream, serve_proxy(kind, refuse=True) as proxy:
        log, routes = await run_routed(upstream.url("/ws"), proxy={"server": proxy.server, "bypass": "<-loopback>"})
    assert log == ["error", "close 1006 false"]
    assert routes[0].error is not None
    assert "proxy" in str(routes[0].error)
    assert upstream.connections == []


async def test_loopback_bypasses_the_proxy_by_default(run_routed: Run) -> None:
    async with serve_ws() as upstream, serve_proxy("http") as proxy:
        log, _ = await run_routed(upstream.url("/ws"), proxy={"server": proxy.server})
    assert log == ["open", "message through"]
    assert proxy.targets == []  # like Chromium: loopback is never proxied unless <-loopback>


async def test_the_browser_uses_the_proxy_too(browser: Browser) -> None:
    async with serve_ws() as upstream, serve_proxy("http") as proxy:
        context = await browser.new_context(proxy={"server": proxy.server, "bypass": "<-loopback>"})
        try:
            page = await context.new_page()
            # An unrouted (native) socket: Chromium itself tunnels it through the proxy.
            await page.goto("about:blank")
            await page.evaluate(
                "(url) => new Promise((resolve) => { const ws = new WebSocket(url); ws.onopen = resolve; })",
                upstream.url("/native"),
            )
        finally:
            await context.close()
    assert proxy.targets == [f"127.0.0.1:{upstream.port}"]


async def test_the_browser_answers_its_proxys_challenge(browser: Browser, server: StaticServer) -> None:
    server.route("/", "<title>through the proxy</title>")
    async with serve_ws() as upstream, serve_proxy("http", require="user:p@ss") as proxy:
        options = {"server": proxy.server, "bypass": "<-loopback>", "username": "user", "password": "p@ss"}
        context = await browser.new_context(proxy=options)
        try:
            page = await context.new_page()
            await page.goto(server.url("/"))
            assert await page.evaluate("document.title") == "through the proxy"
            # Chromium keeps the credentials for the proxy: its own (native) sockets use them too.
            await page.evaluate(
                "(url) => new Promise((resolve, reject) => {"
                " const ws = new WebSocket(url); ws.onopen = resolve; ws.onerror = reject; })",
                upstream.url("/native"),
            )
        finally:
            await context.close()
    assert proxy.targets[0] == server.url("/")
    assert "user:p@ss" in proxy.credentials
    assert f"127.0.0.1:{upstream.port}" in proxy.targets


async def test_wrong_proxy_credentials_fail_the_navigation(browser: Browser, server: StaticServer) -> None:
    server.route("/", "<title>unreachable</title>")
    async with serve_proxy("http", require="user:right") as proxy:
        options = {"server": proxy.server, "bypass": "<-loopback>", "username": "user", "password": "wrong"}
        context = await browser.new_context(proxy=options)
        try:
            page = await context.new_page()
            with trio.fail_after(STEP), pytest.raises(NavigationError):
                await page.goto(server.url("/"))
        finally:
            await context.close()
    assert proxy.credentials.count("user:wrong") == 1  # one try, no loop


@pytest.mark.parametrize(
    "proxy",
    [{"server": "ftp://x:1"}, {"server": "http://x:1", "username": "u"}, {"bypass": "a"}],
)
async def test_invalid_proxy_options(browser: Browser, proxy: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        await browser.new_context(proxy=proxy)


def test_bypass_rules() -> None:
    settings = ProxySettings.parse({"server": "http://p:1", "bypass": "example.com, .internal, <-loopback>"})
    assert not settings.applies_to("example.com")
    assert not settings.applies_to("a.internal")
    assert settings.applies_to("127.0.0.1")
    assert settings.applies_to("other.org")
    default = ProxySettings.parse({"server": "socks5://p"})
    assert (default.port, default.applies_to("localhost"), default.applies_to("::1")) == (1080, False, False)
