"""Browser and BrowserContext, and the ``launch()`` / ``connect()`` entry points.

The browser session auto-attaches (flat sessions, paused on start) to every
top-level page; each page is configured while paused and then released, so
nothing the library needs can be missed by a page script. Pages are grouped by
their ``browserContextId``: contexts we created, plus the browser's default
context (listed in ``Browser.contexts`` only for ``connect()``, as Playwright does).
"""

from __future__ import annotations

import json
import math
import os
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import trio
import trio_websocket

from ._browsers import check_version, find_executable, parse_version
from ._connection import JSON, CDPConnection, CDPSession, open_connection
from ._errors import ConnectionClosedError, LaunchError, ProtocolError, TargetClosedError, UsageError
from ._events import DEFAULT_TIMEOUT, Changes, EventEmitter, deadline, open_service_nursery, timeout_seconds
from ._page import Page, _same_route, gather
from ._process import BrowserProcess
from ._proxy import ProxySettings
from ._route import RouteEntry, RouteHandler
from ._transport import WebSocketTransport
from ._urlmatch import UrlMatcher, UrlPattern

__all__ = ["Browser", "BrowserContext", "connect", "launch"]

_SAME_SITE = {"Strict", "Lax", "None"}


class BrowserContext(EventEmitter):
    """An isolated browser session (cookies, storage, cache). Events: "page", "close"."""

    def __init__(
        self,
        browser: Browser,
        context_id: str | None,
        *,
        owned: bool,
        base_url: str | None = None,
        ignore_https_errors: bool = False,
        extra_http_headers: dict[str, str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        proxy: ProxySettings | None = None,
    ) -> None:
        super().__init__(browser._nursery)
        self._ca_file = os.fspath(ca_file) if ca_file is not None else None
        self._proxy = proxy
        self._browser = browser
        self._id = context_id
        self._owned = owned
        self._base_url = base_url
        self._ignore_https_errors = ignore_https_errors
        self._extra_http_headers = dict(extra_http_headers or {})
        self._pages: list[Page] = []
        self._owner_page: Page | None = None
        self._closed = False
        self._ws_routes: list[RouteEntry] = []

    def __repr__(self) -> str:
        return f"<BrowserContext pages={len(self._pages)}>"

    @property
    def browser(self) -> Browser:
        return self._browser

    @property
    def pages(self) -> list[Page]:
        """The open pages of this context, in the order they opened."""
        return [page for page in self._pages if page._ready.is_set()]

    def _check_open(self) -> None:
        if self._closed:
            raise TargetClosedError("Target page, context or browser has been closed")
        self._browser._check_connected()

    async def new_page(self) -> Page:
        """Open a new page (tab) in this context, at about:blank."""
        self._check_open()
        if self._owner_page is not None:
            raise UsageError("Please use browser.new_context() to create more pages: this context belongs to a page")
        params: JSON = {"url": "about:blank"}
        if self._id is not None:
            params["browserContextId"] = self._id
        result = await self._browser._root.send("Target.createTarget", params)
        target_id = result["targetId"]
        browser = self._browser
        with deadline(DEFAULT_TIMEOUT, "waiting for the new page to attach"):
            await browser._changes.wait_for(
                lambda: (
                    browser._closed or ((page := browser._pages.get(target_id)) is not None and page._ready.is_set())
                )
            )
        browser._check_connected()
        page = browser._pages[target_id]
        page._check_open()
        return page

    async def close(self) -> None:
        """Close the context and all its pages. Closing it again does nothing."""
        if self._closed:
            return
        self._closed = True
        browser = self._browser
        if not browser._closed:
            try:
                if self._owned and self._id is not None:
                    await browser._root.send("Target.disposeBrowserContext", {"browserContextId": self._id})
                else:
                    for page in list(self._pages):
                        await page.close()
            except (ProtocolError, TargetClosedError):
                pass
            with deadline(DEFAULT_TIMEOUT, "closing the context's pages"):
                await browser._changes.wait_for(lambda: browser._closed or not self._pages)
        for page in list(self._pages):
            page._on_target_closed()
        browser._contexts.pop(self._id, None)
        self._emit("close", self)

    async def set_extra_http_headers(self, headers: dict[str, str]) -> None:
        """Send these headers with every request of every page of the context (replaces earlier ones)."""
        self._check_open()
        bad = [name for name, value in headers.items() if not isinstance(value, str)]
        if bad:
            raise UsageError(f"extra HTTP header values must be strings: {bad}")
        self._extra_http_headers = dict(headers)
        calls = []
        for page in self._pages:
            for session in list(page._sessions.values()):
                if not session.closed:
                    calls.append(_apply_headers(session, self._extra_http_headers))
        await gather(*calls)

    async def add_cookies(self, cookies: Sequence[dict[str, Any]]) -> None:
        """Add cookies, each with ``name``, ``value`` and either ``url`` or ``domain`` + ``path``."""
        self._check_open()
        params: JSON = {"cookies": [_cookie_param(cookie) for cookie in cookies]}
        if self._id is not None:
            params["browserContextId"] = self._id
        await self._browser._root.send("Storage.setCookies", params)

    async def cookies(self, urls: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The context's cookies; with ``urls``, only those a request to one of them would send."""
        self._check_open()
        params: JSON = {}
        if self._id is not None:
            params["browserContextId"] = self._id
        result = await self._browser._root.send("Storage.getCookies", params)
        cookies = [_cookie_out(cookie) for cookie in result.get("cookies", [])]
        if urls is None:
            return cookies
        return filter_cookies(cookies, [urls] if isinstance(urls, str) else list(urls))

    async def clear_cookies(self) -> None:
        """Remove all cookies of the context."""
        self._check_open()
        params: JSON = {}
        if self._id is not None:
            params["browserContextId"] = self._id
        await self._browser._root.send("Storage.clearCookies", params)

    async def route_web_socket(self, url: UrlPattern, handler: RouteHandler) -> None:
        """Route WebSockets of every page of the context (popups too); see ``Page.route_web_socket``.

        Page routes are tried first; among context routes the newest matching wins.
        """
        self._check_open()
        self._ws_routes.insert(0, RouteEntry(UrlMatcher.compile(url, self._base_url), handler))
        await gather(*(page._sync_ws_routes() for page in list(self._pages)))

    async def unroute_web_socket(self, url: UrlPattern, handler: RouteHandler | None = None) -> None:
        """Remove context routes added with this ``url`` (and ``handler``); routed sockets stay so."""
        self._ws_routes = [e for e in self._ws_routes if not _same_route(e, url, handler)]
        await gather(*(page._sync_ws_routes() for page in list(self._pages)))

    def _page_closed(self, page: Page) -> None:
        if page in self._pages:
            self._pages.remove(page)


async def _apply_headers(session: CDPSession, headers: dict[str, str]) -> None:
    try:
        await session.send("Network.enable")
        await session.send("Network.setExtraHTTPHeaders", {"headers": headers})
    except (ProtocolError, TargetClosedError):
        if not session.closed:
            raise


def _cookie_param(cookie: dict[str, Any]) -> JSON:
    if "name" not in cookie or "value" not in cookie:
        raise UsageError(f"a cookie needs a name and a value: {cookie!r}")
    has_url = bool(cookie.get("url"))
    if has_url and (cookie.get("domain") or cookie.get("path")):
        raise UsageError(f"a cookie should have either url or domain and path, not both: {cookie!r}")
    has_domain = bool(cookie.get("domain")) and bool(cookie.get("path"))
    if has_url == has_domain:
        raise UsageError(f"a cookie needs either url, or domain and path: {cookie!r}")
    param: JSON = {"name": str(cookie["name"]), "value": str(cookie["value"])}
    if has_url:
        url = str(cookie["url"])
        if not url.startswith(("http:", "https:")):
            raise UsageError(f"a cookie url must be http(s): {url!r}")
        param["url"] = url
    else:
        param["domain"] = str(cookie["domain"])
        param["path"] = str(cookie["path"])
    expires = cookie.get("expires")
    if expires is not None and expires != -1:
        param["expires"] = float(expires)
    for key in ("httpOnly", "secure"):
        if key in cookie:
            param[key] = bool(cookie[key])
    same_site = cookie.get("sameSite")
    if same_site is not None:
        if same_site not in _SAME_SITE:
            raise UsageError(f'sameSite must be "Strict", "Lax" or "None", not {same_site!r}')
        param["sameSite"] = same_site
    return param


def _cookie_out(cookie: JSON) -> dict[str, Any]:
    return {
        "name": cookie["name"],
        "value": cookie["value"],
        "domain": cookie["domain"],
        "path": cookie["path"],
        "expires": -1 if cookie.get("session") else cookie.get("expires", -1),
        "httpOnly": bool(cookie.get("httpOnly")),
        "secure": bool(cookie.get("secure")),
        "sameSite": cookie.get("sameSite", "Lax"),
    }


def _is_local(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost") or host.startswith("127.") or host in ("[::1]", "::1")


def filter_cookies(cookies: list[dict[str, Any]], urls: list[str]) -> list[dict[str, Any]]:
    """The cookies a request to at least one of ``urls`` would carry (domain, path, secure)."""
    parsed = [urllib.parse.urlsplit(url) for url in urls]
    result = []
    for cookie in cookies:
        domain = str(cookie["domain"]).lower()
        for url in parsed:
            host = (url.hostname or "").lower()
            if domain.startswith("."):
                if not (host == domain[1:] or host.endswith(domain)):
                    continue
            elif host != domain:
                continue
            path = url.path or "/"
            cookie_path = str(cookie["path"])
            if not (path == cookie_path or path.startswith(cookie_path.rstrip("/") + "/") or cookie_path == "/"):
                continue
            if cookie["secure"] and url.scheme not in ("https", "wss") and not _is_local(host):
                continue
            result.append(cookie)
            break
    return result


class Browser(EventEmitter):
    """A connected Chromium. Events: "disconnected".

    Resource handling: made and owned by :func:`launch` or :func:`connect`; leaving
    their block closes it. ``close()`` may also be called inside the block.
    """

    def __init__(self, connection: CDPConnection, nursery: trio.Nursery, *, process: BrowserProcess | None) -> None:
        super().__init__(nursery)
        self._connection = connection
        self._root = connection.root
        self._nursery = nursery
        self._process = process
        self._version = ""
        self._user_agent = ""
        self._accept_language: str | None = None  # as Chromium sends it; read once, from a page
        self._pages: dict[str, Page] = {}
        self._page_sessions: dict[str, Page] = {}
        self._contexts: dict[str | None, BrowserContext] = {}
        self._changes = Changes()
        self._closed = False
        self._default_context = BrowserContext(self, None, owned=False)
        self._contexts[None] = self._default_context

    def __repr__(self) -> str:
        return f"<Browser version={self._version!r} connected={not self._closed}>"

    @property
    def version(self) -> str:
        """The browser's version, e.g. ``"Chromium/156.0.8078.79"``."""
        return self._version

    @property
    def user_agent(self) -> str:
        """The browser's default User-Agent header."""
        return self._user_agent

    @property
    def contexts(self) -> list[BrowserContext]:
        """Open contexts; for ``connect()`` the browser's default context comes first."""
        contexts = [c for c in self._contexts.values() if c is not self._default_context]
        if self._process is None:
            contexts.insert(0, self._default_context)
        return contexts

    def is_connected(self) -> bool:
        return not self._closed

    @property
    def process_id(self) -> int | None:
        """The browser's process id when we launched it, else None."""
        return self._process.pid if self._process is not None else None

    def _check_connected(self) -> None:
        if self._closed:
            raise TargetClosedError("Browser has been closed")

    async def new_context(
        self,
        *,
        base_url: str | None = None,
        ignore_https_errors: bool = False,
        extra_http_headers: dict[str, str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        proxy: dict[str, Any] | None = None,
    ) -> BrowserContext:
        """Create an isolated context (its own cookies, storage and cache).

        Args:
            base_url: what relative ``goto`` URLs and route globs resolve against.
            ignore_https_errors: accept invalid certificates, in the pages and for the
                upstream wss:// connections of routed sockets.
            extra_http_headers: sent with every request of the context's pages, and with
                routed sockets' upstream handshakes.
            ca_file: a PEM bundle of extra certificate authorities trusted for routed
                sockets' upstream wss:// connections (the browser keeps its own store).
            proxy: ``{"server": "http://host:port" | "socks5://host:port", "bypass": "a.com,.b.com",
                "username": ..., "password": ...}``: the pages' traffic and routed sockets'
                upstreams both go through it. As in Chromium, loopback hosts bypass it unless
                ``bypass`` contains ``<-loopback>``. Credentials are used by the upstreams (HTTP
                basic auth or SOCKS5 user/password) and answer the browser's proxy challenges
                (every request of the context's pages then passes through CDP's Fetch domain).
        """
        self._check_connected()
        if ca_file is not None and not await trio.Path(ca_file).is_file():
            raise UsageError(f"ca_file {os.fspath(ca_file)!r} is not a file")
        if extra_http_headers and any(not isinstance(v, str) for v in extra_http_headers.values()):
            raise UsageError("extra HTTP header values must be strings")
        settings = ProxySettings.parse(proxy) if proxy is not None else None
        params: JSON = {"disposeOnDetach": True}
        if settings is not None:
            params["proxyServer"] = settings.chromium_server
            if settings.chromium_bypass:
                params["proxyBypassList"] = settings.chromium_bypass
        result = await self._root.send("Target.createBrowserContext", params)
        context_id = result["browserContextId"]
        context = BrowserContext(
            self,
            context_id,
            owned=True,
            base_url=base_url,
            ignore_https_errors=ignore_https_errors,
            extra_http_headers=extra_http_headers,
            ca_file=ca_file,
            proxy=settings,
        )
        self._contexts[context_id] = context
        return context

    async def new_page(
        self,
        *,
        base_url: str | None = None,
        ignore_https_errors: bool = False,
        extra_http_headers: dict[str, str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        proxy: dict[str, Any] | None = None,
    ) -> Page:
        """A page in a new context of its own (same options); closing the page closes that context."""
        context = await self.new_context(
            base_url=base_url,
            ignore_https_errors=ignore_https_errors,
            extra_http_headers=extra_http_headers,
            ca_file=ca_file,
            proxy=proxy,
        )
        page = await context.new_page()
        context._owner_page = page
        return page

    async def close(self) -> None:
        """Close the browser (launched) or our contexts and the connection (connected)."""
        if self._closed:
            return
        connection = self._connection
        if self._process is not None:
            if not connection.closed:
                connection.send_nowait("Browser.close")
                with trio.move_on_after(10):
                    await self._process.wait()
        else:
            with trio.move_on_after(10):
                for context in list(self._contexts.values()):
                    if context._owned:
                        await context.close()
        self._on_disconnected("Browser has been closed")
        with trio.CancelScope(shield=True):
            await connection.aclose()

    # -- setup and bookkeeping ---------------------------------------------------------

    async def _start(self) -> None:
        root = self._root
        root.on("Target.attachedToTarget", self._on_attached)
        root.on("Target.detachedFromTarget", self._on_detached)
        version = await root.send("Browser.getVersion")
        product = str(version.get("product", ""))
        self._version = f"Chromium/{parse_version(product) or product}"
        self._user_agent = str(version.get("userAgent", ""))
        check_version(product)
        await root.send("Target.setAutoAttach", {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True})
        self._nursery.start_soon(self._watch_connection)

    async def _watch_connection(self) -> None:
        await self._connection.closed_event.wait()
        self._on_disconnected(f"Browser closed: {self._connection.closed_reason}")

    def _on_disconnected(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        for page in list(self._pages.values()):
            page._on_target_closed(reason)
        self._changes.notify()
        self._emit("disconnected", self)

    def _on_attached(self, params: JSON) -> None:
        info = params.get("targetInfo", {})
        session = self._connection.session(params["sessionId"])
        if session is None:
            return
        if info.get("type") != "page":
            # Service workers, shared workers, ...: nothing to do with them yet.
            self._connection.send_nowait("Runtime.runIfWaitingForDebugger", None, session.session_id)
            return
        context_id = info.get("browserContextId")
        context = self._contexts.get(context_id) or self._default_context
        page = Page(context, session, self._nursery)
        self._pages[session.target_id] = page
        self._page_sessions[params["sessionId"]] = page
        context._pages.append(page)
        self._nursery.start_soon(self._initialize_page, page)

    async def _initialize_page(self, page: Page) -> None:
        await page._initialize()
        if page._closed:
            return
        page._context._emit("page", page)
        opener = self._pages.get(page._opener_id or "")
        if opener is not None:
            opener._emit("popup", page)

    def _on_detached(self, params: JSON) -> None:
        page = self._page_sessions.pop(params.get("sessionId", ""), None)
        if page is not None:
            self._pages.pop(page._target_id, None)
            page._on_target_closed()
            self._changes.notify()


@contextmanager
def _single_errors() -> Iterator[None]:
    """Raise the one real error out of nested nurseries' exception groups, not the group."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1:
            raise leaves[0] from leaves[0].__cause__
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


@asynccontextmanager
async def launch(
    *,
    executable_path: str | os.PathLike[str] | None = None,
    headless: bool = True,
    args: Sequence[str] = (),
    timeout: float = 30.0,
) -> AsyncIterator[Browser]:
    """Launch Chromium (the one browsers.lock pins, unless told otherwise) for the block.

    Args:
        executable_path: the browser binary; default $CDP_WSROUTE_CHROMIUM, then browsers.lock.
        headless: run without a window (the default).
        args: extra command-line flags, after ours.
        timeout: seconds to wait for the browser to start (0: no limit).

    Raises:
        LaunchError: the browser did not start; names the executable, flags and its last stderr lines.

    Resource handling: the browser process, its temporary profile and every
    background task belong to the block; leaving it (normally, by an exception or
    by cancellation) closes the browser, kills what is left of its process group
    and removes the profile.
    """
    limit = timeout_seconds(timeout) or math.inf
    executable = find_executable(executable_path)
    try:
        process = BrowserProcess.spawn(executable, headless=headless, args=tuple(args))
    except OSError as exc:
        raise LaunchError(f"Failed to launch {executable}: {exc}") from exc
    try:
        with _single_errors():
            async with open_connection(process.transport()) as connection, trio.open_nursery() as nursery:
                browser = Browser(connection, nursery, process=process)
                try:
                    with trio.move_on_after(limit) as scope:
                        await browser._start()
                    if scope.cancelled_caught:
                        raise _launch_error(process, f"the browser did not answer within {timeout}s")
                except ConnectionClosedError as exc:
                    with trio.move_on_after(2):
                        await process.wait()
                    raise _launch_error(process, f"the browser exited (status {process.poll()})") from exc
                try:
                    yield browser
                finally:
                    with trio.CancelScope(shield=True):
                        await browser.close()
                    nursery.cancel_scope.cancel(reason="the browser closed")
    finally:
        process.cleanup()


def _launch_error(process: BrowserProcess, what: str) -> LaunchError:
    flags = " ".join(process.flags)
    tail = process.stderr_tail() or "(nothing)"
    return LaunchError(f"Failed to launch {process.executable}: {what}.\nFlags: {flags}\nLast stderr lines:\n{tail}")


async def _resolve_endpoint(endpoint_url: str) -> str:
    scheme = urllib.parse.urlsplit(endpoint_url).scheme.lower()
    if scheme in ("ws", "wss"):
        return endpoint_url
    if scheme not in ("http", "https"):
        raise UsageError(f"connect() takes a ws:// or http:// endpoint, not {endpoint_url!r}")
    version_url = endpoint_url.rstrip("/") + "/json/version"

    def fetch() -> Any:
        with urllib.request.urlopen(version_url, timeout=30) as response:  # noqa: S310 - http(s) checked above
            return json.load(response)

    try:
        info = await trio.to_thread.run_sync(fetch, abandon_on_cancel=True)
    except (OSError, ValueError) as exc:
        raise LaunchError(f"Cannot read {version_url}: {exc}") from exc
    ws_url = info.get("webSocketDebuggerUrl") if isinstance(info, dict) else None
    if not isinstance(ws_url, str):
        raise LaunchError(f"{version_url} has no webSocketDebuggerUrl: {info!r}")
    return ws_url


@asynccontextmanager
async def connect(endpoint_url: str, *, timeout: float = 30.0) -> AsyncIterator[Browser]:
    """Connect to a running Chromium for the block (``ws://...`` or ``http://host:port``).

    Leaving the block closes the contexts this client created and disconnects; the
    browser itself keeps running.

    Raises:
        LaunchError: the endpoint could not be reached or is not a browser.
    """
    limit = timeout_seconds(timeout) or math.inf
    with _single_errors():
        async with open_service_nursery() as ws_nursery:
            with trio.move_on_after(limit) as scope:
                ws_url = await _resolve_endpoint(endpoint_url)
                try:
                    transport = await WebSocketTransport.open(ws_nursery, ws_url)
                except (OSError, ValueError, trio_websocket.HandshakeError) as exc:
                    raise LaunchError(f"Cannot connect to {ws_url}: {exc}") from exc
            if scope.cancelled_caught:
                raise LaunchError(f"Timed out after {timeout}s connecting to {endpoint_url}")
            async with open_connection(transport) as connection, trio.open_nursery() as nursery:
                browser = Browser(connection, nursery, process=None)
                try:
                    with trio.move_on_after(limit) as scope:
                        await browser._start()
                    if scope.cancelled_caught:
                        raise LaunchError(f"{endpoint_url} did not answer Browser.getVersion within {timeout}s")
                    yield browser
                finally:
                    with trio.CancelScope(shield=True):
                        await browser.close()
                    nursery.cancel_scope.cancel(reason="disconnected")
