"""Page, Frame, BrowserContext and Browser against real Chromium, with Playwright semantics.

Synchronisation is by events, ``wait_for_function`` or polling with a deadline; never by
sleeping. Slow subresources come from a "gate" server that holds every request until the
test releases it, so "load" can be delayed as long as a test needs.
"""

from __future__ import annotations

import builtins
import functools
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import cdp_wsroute
from cdp_wsroute import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Frame,
    JavaScriptError,
    NavigationError,
    Page,
    TargetClosedError,
    UsageError,
)
from cdp_wsroute._http import Request, Response, StaticServer
from tests.support import closed_port, eventually

pytestmark = pytest.mark.browser

STEP = 5.0  # seconds any single expected thing may take before a test fails

_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


# -- helpers -----------------------------------------------------------------------------


class Gate:
    """An HTTP server on 127.0.0.1 that answers nothing until ``release.set()``."""

    def __init__(self) -> None:
        self.port = 0
        self.release = trio.Event()
        self.requested = trio.Event()
        self.paths: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, stream: trio.SocketStream) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            path = data.split(b" ", 2)[1].decode()
            self.paths.append(path)
            self.requested.set()
            await self.release.wait()
            if path.endswith(".js"):
                body, content_type = b"window.log.push('script')", b"text/javascript"
            else:
                body, content_type = _GIF, b"image/gif"
            head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            await stream.send_all(head % (content_type, len(body)) + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    result = Gate()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, result._serve, 0, host="127.0.0.1"))
        result.port = listeners[0].socket.getsockname()[1]
        yield result
        nursery.cancel_scope.cancel()


def requests_for(server: StaticServer, path: str) -> list[Request]:
    return [request for request in server.requests if request.target.split("?", 1)[0] == path]


LOG_SCRIPT = """<script>
window.log = [];
addEventListener("DOMContentLoaded", () => log.push("dcl"));
addEventListener("load", () => log.push("load"));
</script>"""


# -- goto / url / reload ------------------------------------------------------------------


async def test_goto_commit_returns_while_the_parser_is_blocked(page: Page, server: StaticServer, gate: Gate) -> None:
    server.route("/blocked", f'{LOG_SCRIPT}<script src="{gate.url("/block.js")}"></script><p id="after">x</p>')
    await page.goto(server.url("/blocked"), wait_until="commit", timeout=STEP)
    assert page.url == server.url("/blocked")
    assert await page.evaluate("location.href") == server.url("/blocked")
    assert await page.evaluate("document.readyState") == "loading"
    assert await page.evaluate("document.getElementById('after')") is None
    assert await page.evaluate("window.log") == []
    gate.release.set()
    assert await page.wait_for_function("window.log.includes('load') && window.log", timeout=STEP) == [
        "script",
        "dcl",
        "load",
    ]


async def test_goto_domcontentloaded_does_not_wait_for_images(page: Page, server: StaticServer, gate: Gate) -> None:
    server.route("/img", f'{LOG_SCRIPT}<img src="{gate.url("/slow.gif")}">')
    await page.goto(server.url("/img"), wait_until="domcontentloaded", timeout=STEP)
    assert await page.evaluate("window.log") == ["dcl"]
    with trio.fail_after(STEP):
        await gate.requested.wait()
    assert gate.paths == ["/slow.gif"]
    assert await page.evaluate("document.readyState") == "interactive"
    gate.release.set()
    await page.wait_for_function("window.log.includes('load')", timeout=STEP)


async def test_goto_load_waits_for_the_load_event(page: Page, server: StaticServer, gate: Gate) -> None:
    server.route("/img", f'{LOG_SCRIPT}<img src="{gate.url("/slow.gif")}">')
    returned = trio.Event()

    async def navigate() -> None:
        await page.goto(server.url("/img"), timeout=STEP)  # wait_until="load" is the default
        returned.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(navigate)
        # The document is parsed and the image requested: only "load" is still missing.
        await page.wait_for_function("window.log && window.log.includes('dcl')", timeout=STEP)
        with trio.fail_after(STEP):
            await gate.requested.wait()
        assert await page.evaluate("document.readyState") == "interactive"
        assert not returned.is_set(), "goto(wait_until='load') returned before the load event"
        gate.release.set()
    assert await page.evaluate("window.log") == ["dcl", "load"]
    assert await page.evaluate("document.readyState") == "complete"


async def test_goto_timeout_names_what_it_waited_for(page: Page, server: StaticServer, gate: Gate) -> None:
    server.route("/img", f'{LOG_SCRIPT}<img src="{gate.url("/slow.gif")}">')
    server.route("/blocked", f'{LOG_SCRIPT}<script src="{gate.url("/block.js")}"></script>')
    with pytest.raises(cdp_wsroute.TimeoutError) as load_info:
        await page.goto(server.url("/img"), timeout=0.5)
    assert isinstance(load_info.value, builtins.TimeoutError)
    message = str(load_info.value)
    assert "500ms" in message
    assert server.url("/img") in message
    assert '"load"' in message

    with pytest.raises(cdp_wsroute.TimeoutError) as dcl_info:
        await page.goto(server.url("/blocked"), wait_until="domcontentloaded", timeout=0.5)
    assert server.url("/blocked") in str(dcl_info.value)
    assert '"domcontentloaded"' in str(dcl_info.value)

    # The page is still usable after a timed-out navigation.
    gate.release.set()
    server.route("/ok", "<title>ok</title>")
    await page.goto(server.url("/ok"), timeout=STEP)
    assert await page.evaluate("document.title") == "ok"


async def test_goto_rejects_unknown_wait_until(page: Page, server: StaticServer) -> None:
    with pytest.raises(UsageError):
        await page.goto(server.url("/"), wait_until="networkidle")  # type: ignore[arg-type]


async def test_url_after_goto_hash_change_push_state_and_reload(page: Page, server: StaticServer) -> None:
    server.route("/a", "<title>a</title>")
    assert page.url == "about:blank"
    await page.goto(server.url("/a"))
    assert page.url == server.url("/a")
    await page.evaluate("window.marker = 'same document'")

    await page.evaluate("location.hash = 'part2'")
    await eventually(lambda: page.url == server.url("/a#part2"), "the url after location.hash")
    await page.evaluate("history.pushState({}, '', '/pushed?q=1')")
    await eventually(lambda: page.url == server.url("/pushed?q=1"), "the url after history.pushState")
    assert await page.evaluate("window.marker") == "same document"
    assert len(requests_for(server, "/a")) == 1

    await page.goto(server.url("/a"))
    await page.evaluate("window.marker = 'old document'")
    await page.reload()
    assert page.url == server.url("/a")
    assert await page.evaluate("window.marker") is None
    assert await page.evaluate("document.readyState") == "complete"
    assert len(requests_for(server, "/a")) == 3


async def test_goto_within_the_document_updates_url_before_returning(page: Page, server: StaticServer) -> None:
    server.route("/a", "<title>a</title>")
    await page.goto(server.url("/a"))
    await page.evaluate("window.marker = 'same document'")
    await page.goto(server.url("/a#anchor"))  # a same-document navigation: no new document
    assert page.url == server.url("/a#anchor")
    await page.goto(server.url("/a#other"))
    assert page.url == server.url("/a#other")
    assert await page.evaluate("[location.hash, window.marker]") == ["#other", "same document"]
    assert len(requests_for(server, "/a")) == 1


async def test_reload_keeps_the_fragment_and_honours_wait_until(page: Page, server: StaticServer, gate: Gate) -> None:
    server.route("/img", f'{LOG_SCRIPT}<img src="{gate.url("/slow.gif")}">')
    await page.goto(server.url("/img#frag"), wait_until="domcontentloaded", timeout=STEP)
    await page.evaluate("window.marker = 1")
    await page.reload(wait_until="domcontentloaded", timeout=STEP)
    assert page.url == server.url("/img#frag")
    assert await page.evaluate("window.marker") is None
    assert await page.evaluate("window.log") == ["dcl"]
    with pytest.raises(cdp_wsroute.TimeoutError, match="reloading"):
        await page.reload(timeout=0.5)
    gate.release.set()


async def test_goto_to_a_closed_port_raises_navigation_error(page: Page) -> None:
    url = f"http://127.0.0.1:{closed_port()}/nothing"
    with pytest.raises(NavigationError) as info:
        await page.goto(url)
    assert "net::ERR_CONNECTION_REFUSED" in str(info.value)
    assert url in str(info.value)


async def test_relative_goto_uses_base_url(browser: Browser, server: StaticServer) -> None:
    server.route("/app/page", "<title>app page</title>")
    server.route("/root", "<title>root</title>")
    context = await browser.new_context(base_url=server.url("/app/"))
    try:
        page = await context.new_page()
        await page.goto("page")
        assert page.url == server.url("/app/page")
        assert await page.evaluate("document.title") == "app page"
        await page.goto("/root")
        assert page.url == server.url("/root")
        await page.goto("../app/page?x=1")
        assert page.url == server.url("/app/page?x=1")
        absolute = "data:text/html,<title>abs</title>"
        await page.goto(absolute)
        assert await page.evaluate("document.title") == "abs"
    finally:
        await context.close()


# -- evaluate -----------------------------------------------------------------------------


async def test_evaluate_expressions(page: Page) -> None:
    assert await page.evaluate("1 + 2") == 3
    assert await page.evaluate("'a' + 'b'") == "ab"
    assert await page.evaluate("[1, 'x', null, true]") == [1, "x", None, True]
    assert await page.evaluate("({a: 1, b: 'two'})") == {"a": 1, "b": "two"}
    assert await page.evaluate("1.5") == 1.5
    assert await page.evaluate("undefined") is None
    assert await page.evaluate("null") is None
    assert await page.evaluate("var declared = 5; declared * 2") == 10


async def test_evaluate_function_sources_with_an_argument(page: Page) -> None:
    assert await page.evaluate("x => x * 2", 21) == 42
    assert await page.evaluate("(x) => x + '!'", "hi") == "hi!"
    assert await page.evaluate("function (a) { return a.b }", {"b": [1, 2]}) == [1, 2]
    assert await page.evaluate("function named(a) { return a.length }", [1, 2, 3]) == 3
    assert await page.evaluate("async () => { await new Promise(r => setTimeout(r, 10)); return 'later' }") == "later"
    assert await page.evaluate("async x => x.map(v => v + 1)", [1, 2]) == [2, 3]
    assert await page.evaluate("({a, b}) => a + b", {"a": 1, "b": 2}) == 3
    assert await page.evaluate("([first, ...rest]) => rest.concat(first)", [1, 2, 3]) == [2, 3, 1]
    assert await page.evaluate("() => 7") == 7
    assert await page.evaluate("() => {}") is None


async def test_evaluate_awaits_promises(page: Page) -> None:
    assert await page.evaluate("new Promise(r => setTimeout(() => r(5), 10))") == 5
    assert await page.evaluate("Promise.resolve({nested: [1, {deep: 'yes'}]})") == {"nested": [1, {"deep": "yes"}]}
    assert await page.evaluate("() => Promise.resolve(undefined)") is None


async def test_evaluate_special_numbers(page: Page) -> None:
    assert math.isnan(await page.evaluate("NaN"))
    assert await page.evaluate("Infinity") == math.inf
    assert await page.evaluate("-Infinity") == -math.inf
    negative_zero = await page.evaluate("-0")
    assert negative_zero == 0
    assert math.copysign(1.0, negative_zero) == -1.0
    assert math.copysign(1.0, await page.evaluate("0")) == 1.0
    assert await page.evaluate("x => Number.isNaN(x)", math.nan) is True
    assert await page.evaluate("x => x === Infinity", math.inf) is True
    assert await page.evaluate("x => x === -Infinity", -math.inf) is True
    assert await page.evaluate("x => Object.is(x, 0)", 0.0) is True


async def test_evaluate_passes_negative_zero(page: Page) -> None:
    # Playwright serializes -0 as itself; plain JSON would turn it into 0.
    assert await page.evaluate("x => Object.is(x, -0)", -0.0) is True


async def test_evaluate_round_trips_nested_json(page: Page) -> None:
    value: dict[str, Any] = {
        "list": [1, 2.5, "three", None, True, False, [], {}],
        "nested": {"deeper": {"deepest": ["x", {"y": -1}]}},
        "unicode": "héllo ✓ 漢字",
        "empty": "",
    }
    assert await page.evaluate("x => x", value) == value
    assert await page.evaluate("x => JSON.stringify(x) === JSON.stringify(x) && typeof x.nested", value) == "object"
    assert await page.evaluate("x => x.nested.deeper.deepest[1].y", value) == -1


async def test_evaluate_rejects_a_non_json_argument(page: Page) -> None:
    with pytest.raises(UsageError):
        await page.evaluate("x => x", object())
    with pytest.raises(UsageError):
        await page.evaluate("x => x", {"a": {1, 2}})
    # The page is still fine afterwards.
    assert await page.evaluate("x => x", [1]) == [1]


async def test_evaluate_raises_javascript_errors(page: Page) -> None:
    with pytest.raises(JavaScriptError, match="boom from page"):
        await page.evaluate("() => { throw new Error('boom from page') }")
    with pytest.raises(JavaScriptError, match="thrown string"):
        await page.evaluate("() => { throw 'thrown string' }")
    with pytest.raises(JavaScriptError, match="rejected here"):
        await page.evaluate("Promise.reject(new Error('rejected here'))")
    with pytest.raises(JavaScriptError, match="async boom"):
        await page.evaluate("async () => { await null; throw new TypeError('async boom') }")
    with pytest.raises(JavaScriptError, match="notDefinedAnywhere"):
        await page.evaluate("notDefinedAnywhere.x")
    with pytest.raises(JavaScriptError):
        await page.evaluate("this is not javascript")
    assert issubclass(JavaScriptError, cdp_wsroute.Error)


async def test_evaluate_right_after_navigation_runs_in_the_new_document(page: Page, server: StaticServer) -> None:
    for name in ("one", "two", "three", "four"):
        server.route(f"/{name}", f"<script>window.which = '{name}'</script>")
    await page.goto(server.url("/one"))
    assert await page.evaluate("window.which") == "one"
    await page.goto(server.url("/two"))
    assert await page.evaluate("window.which") == "two"
    # Even with only "commit" awaited, evaluate never reaches the previous document.
    await page.goto(server.url("/three"), wait_until="commit")
    assert await page.evaluate("location.pathname") == "/three"
    await page.goto(server.url("/four"), wait_until="domcontentloaded")
    assert await page.evaluate("[location.pathname, window.which]") == ["/four", "four"]


# -- wait_for_function ----------------------------------------------------------------------


async def test_wait_for_function_resolves_after_a_timer(page: Page) -> None:
    await page.evaluate("setTimeout(() => { window.flag = 'set by timer' }, 50)")
    assert await page.evaluate("window.flag") is None
    assert await page.wait_for_function("window.flag", timeout=STEP) == "set by timer"


async def test_wait_for_function_with_an_arg_returns_the_value(page: Page) -> None:
    await page.evaluate("window.count = 0; setInterval(() => window.count++, 10)")
    value = await page.wait_for_function("n => window.count >= n && {count: window.count}", 3, timeout=STEP)
    assert isinstance(value, dict)
    assert value["count"] >= 3
    assert await page.wait_for_function("() => [1, 'two']", timeout=STEP) == [1, "two"]


async def test_wait_for_function_polls_at_the_given_interval(page: Page) -> None:
    predicate = "() => { window.calls = (window.calls || 0) + 1; return window.calls >= 4 && window.calls }"
    start = trio.current_time()
    assert await page.wait_for_function(predicate, polling=40, timeout=STEP) == 4
    # three intervals of 40 ms passed between the first and the fourth call
    assert trio.current_time() - start >= 0.1
    with pytest.raises(UsageError):
        await page.wait_for_function("true", polling=0)


async def test_wait_for_function_times_out(page: Page) -> None:
    with pytest.raises(cdp_wsroute.TimeoutError) as info:
        await page.wait_for_function("window.neverSet === 1", timeout=0.3)
    assert isinstance(info.value, builtins.TimeoutError)
    assert "waiting for function" in str(info.value)
    assert "window.neverSet === 1" in str(info.value)
    # Falsy but defined values do not count either.
    with pytest.raises(cdp_wsroute.TimeoutError):
        await page.wait_for_function("() => 0", timeout=0.2, polling=20)


async def test_wait_for_function_survives_a_navigation(page: Page, server: StaticServer) -> None:
    server.route("/first", "<title>first</title>")
    server.route("/second", "<script>setTimeout(() => { window.ready = 'from second' }, 30)</script>")
    await page.goto(server.url("/first"))
    result: list[Any] = []

    async def waiter() -> None:
        result.append(await page.wait_for_function("(window.polled = true) && window.ready", timeout=STEP))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await page.wait_for_function("window.polled === true", timeout=STEP)  # polling in /first
        await page.goto(server.url("/second"))
    assert result == ["from second"]


async def test_wait_for_function_raises_when_the_predicate_throws(page: Page) -> None:
    with pytest.raises(JavaScriptError, match="predicate failed"):
        await page.wait_for_function("() => { throw new Error('predicate failed') }", timeout=STEP)
    # Throwing on a later poll, not the first.
    await page.evaluate("window.polls = 0")
    with pytest.raises(JavaScriptError, match="third poll"):
        await page.wait_for_function(
            "() => { if (++window.polls === 3) throw new Error('third poll'); return false }",
            polling=10,
            timeout=STEP,
        )


async def test_wait_for_function_raises_when_the_page_closes(page: Page) -> None:
    async with trio.open_nursery() as nursery:

        async def waiter() -> None:
            with pytest.raises(TargetClosedError):
                await page.wait_for_function("false", timeout=STEP)

        nursery.start_soon(waiter)
        await page.evaluate("1")  # the waiter's poll is sent before this reply arrives
        await page.close()


# -- frames ---------------------------------------------------------------------------------


def frame_named(page: Page, name: str) -> Frame:
    frame = page.frame(name)
    assert frame is not None, f"no frame named {name!r} in {page.frames}"
    return frame


async def test_frames_include_same_and_cross_origin_iframes(
    page: Page, server: StaticServer, other_server: StaticServer
) -> None:
    server.route(
        "/parent",
        f'<title>parent</title><iframe name="same" src="/child"></iframe>'
        f'<iframe name="cross" src="{other_server.url("/xchild")}"></iframe>',
    )
    server.route("/child", "<title>same child</title><script>window.who = 'same'</script>")
    other_server.route("/xchild", "<title>cross child</title><script>window.who = 'cross'</script>")
    await page.goto(server.url("/parent"))

    main = page.main_frame
    await eventually(lambda: len(page.frames) == 3, "three frames")
    same, cross = frame_named(page, "same"), frame_named(page, "cross")
    assert page.frames[0] is main
    assert set(page.frames) == {main, same, cross}
    assert main.parent_frame is None
    assert main.name == ""
    assert main.url == server.url("/parent")
    assert same.parent_frame is main
    assert cross.parent_frame is main
    assert main.child_frames == [same, cross]
    assert same.child_frames == []
    assert cross.child_frames == []
    await eventually(lambda: cross.url == other_server.url("/xchild"), "the cross-origin frame's url")
    assert same.url == server.url("/child")
    assert not same.is_detached()
    assert not cross.is_detached()
    assert page.frame(url=other_server.url("/xchild")) is cross
    assert page.frame(url=lambda url: url.endswith("/child")) is same
    assert page.frame("missing") is None

    # The cross-origin frame really is cross-origin: its parent cannot reach into it.
    assert await page.evaluate("document.querySelector('iframe[name=cross]').contentDocument === null") is True
    assert await page.evaluate("document.querySelector('iframe[name=same]').contentDocument.title") == "same child"

    # Each frame evaluates in its own document.
    assert await cross.evaluate("[location.href, document.title, window.who]") == [
        other_server.url("/xchild"),
        "cross child",
        "cross",
    ]
    assert await same.evaluate("[location.href, document.title, window.who]") == [
        server.url("/child"),
        "same child",
        "same",
    ]
    assert await main.evaluate("document.title") == "parent"
    assert await cross.evaluate("x => x + window.who", "hello ") == "hello cross"
    assert await cross.wait_for_function("window.who", timeout=STEP) == "cross"
    with pytest.raises(JavaScriptError, match="cross boom"):
        await cross.evaluate("() => { throw new Error('cross boom') }")


async def test_frame_goto_navigates_only_that_frame(
    page: Page, server: StaticServer, other_server: StaticServer
) -> None:
    server.route(
        "/parent",
        f'<iframe name="same" src="/child"></iframe><iframe name="cross" src="{other_server.url("/xchild")}"></iframe>',
    )
    server.route("/child", "<title>child</title>")
    server.route("/child2", "<title>child2</title>")
    other_server.route("/xchild", "<title>xchild</title>")
    other_server.route("/xchild2", "<title>xchild2</title>")
    await page.goto(server.url("/parent"))
    await page.evaluate("window.marker = 'parent intact'")
    await eventually(lambda: len(page.frames) == 3, "three frames")
    same, cross = frame_named(page, "same"), frame_named(page, "cross")

    await cross.goto(other_server.url("/xchild2"))
    assert cross.url == other_server.url("/xchild2")
    assert await cross.evaluate("document.title") == "xchild2"
    await same.goto(server.url("/child2"))
    assert same.url == server.url("/child2")
    assert await same.evaluate("document.title") == "child2"

    assert page.url == server.url("/parent")
    assert await page.evaluate("window.marker") == "parent intact"
    assert page.frames[1:] == [same, cross]
    assert not same.is_detached()
    assert not cross.is_detached()


async def test_frame_goto_across_origins_moves_the_frame_between_processes(
    page: Page, server: StaticServer, other_server: StaticServer
) -> None:
    server.route("/parent", '<iframe name="f" src="/child"></iframe>')
    server.route("/child", "<title>child</title>")
    other_server.route("/xchild", "<title>xchild</title>")
    await page.goto(server.url("/parent"))
    frame = frame_named(page, "f")

    # same-origin (in-process) -> cross-origin (out-of-process)
    await frame.goto(other_server.url("/xchild"), timeout=STEP)
    assert frame.url == other_server.url("/xchild")
    assert await frame.evaluate("[location.href, document.title]") == [other_server.url("/xchild"), "xchild"]
    assert page.frames == [page.main_frame, frame]
    assert not frame.is_detached()

    # cross-origin -> back to the parent's origin
    await frame.goto(server.url("/child"), timeout=STEP)
    assert frame.url == server.url("/child")
    assert await frame.evaluate("document.title") == "child"
    assert await page.evaluate("document.querySelector('iframe').contentDocument.title") == "child"
    assert page.frames == [page.main_frame, frame]


async def test_iframe_navigated_by_its_parent_updates_its_url(
    page: Page, server: StaticServer, other_server: StaticServer
) -> None:
    server.route("/parent", '<iframe name="f" src="/child"></iframe>')
    server.route("/child", "<title>child</title>")
    other_server.route("/xchild", "<title>xchild</title>")
    await page.goto(server.url("/parent"))
    frame = frame_named(page, "f")
    await page.evaluate("url => { document.querySelector('iframe').src = url }", other_server.url("/xchild"))
    await eventually(lambda: frame.url == other_server.url("/xchild"), "the iframe's new url")
    assert await frame.wait_for_function("document.title === 'xchild' && location.href", timeout=STEP) == (
        other_server.url("/xchild")
    )


async def test_removed_iframes_are_detached(page: Page, server: StaticServer, other_server: StaticServer) -> None:
    server.route(
        "/parent",
        f'<iframe name="same" src="/child"></iframe><iframe name="cross" src="{other_server.url("/xchild")}"></iframe>',
    )
    server.route("/child", "<title>child</title>")
    other_server.route("/xchild", "<title>xchild</title>")
    await page.goto(server.url("/parent"))
    await eventually(lambda: len(page.frames) == 3, "three frames")
    same, cross = frame_named(page, "same"), frame_named(page, "cross")

    await page.evaluate("document.querySelector('iframe[name=same]').remove()")
    await eventually(same.is_detached, "the same-origin iframe to detach")
    assert page.frames == [page.main_frame, cross]
    assert page.main_frame.child_frames == [cross]
    with pytest.raises(cdp_wsroute.Error, match="detached"):
        await same.evaluate("1")

    await page.evaluate("document.querySelector('iframe[name=cross]').remove()")
    await eventually(cross.is_detached, "the cross-origin iframe to detach")
    assert page.frames == [page.main_frame]
    assert page.main_frame.child_frames == []
    assert page.frame("cross") is None
    with pytest.raises(cdp_wsroute.Error, match="detached"):
        await cross.evaluate("1")
    assert not page.main_frame.is_detached()


async def test_nested_iframes(page: Page, server: StaticServer, other_server: StaticServer) -> None:
    # main (server) -> a (other_server, out-of-process) -> b (server again, out-of-process from a)
    #               -> c (server, in-process) -> d (server, in-process)
    server.route(
        "/top",
        f'<iframe name="a" src="{other_server.url("/a")}"></iframe><iframe name="c" src="/c"></iframe>',
    )
    other_server.route("/a", f'<script>window.who = "a"</script><iframe name="b" src="{server.url("/b")}"></iframe>')
    server.route("/b", '<script>window.who = "b"</script>')
    server.route("/c", '<script>window.who = "c"</script><iframe name="d" src="/d"></iframe>')
    server.route("/d", '<script>window.who = "d"</script>')
    await page.goto(server.url("/top"))
    await eventually(lambda: len(page.frames) == 5, "five frames")
    a, b, c, d = (frame_named(page, name) for name in "abcd")
    assert page.frames == [page.main_frame, a, b, c, d]  # depth-first
    assert a.parent_frame is page.main_frame
    assert b.parent_frame is a
    assert c.parent_frame is page.main_frame
    assert d.parent_frame is c
    assert a.child_frames == [b]
    assert c.child_frames == [d]
    await eventually(lambda: b.url == server.url("/b"), "the nested cross-origin frame's url")
    for frame, expected in ((a, other_server.url("/a")), (b, server.url("/b")), (d, server.url("/d"))):
        assert frame.url == expected
        assert await frame.evaluate("[location.href, window.who]") == [expected, frame.name]

    # Removing a frame detaches its descendants too.
    await page.evaluate("document.querySelector('iframe[name=a]').remove()")
    await eventually(lambda: a.is_detached() and b.is_detached(), "a and b to detach")
    assert page.frames == [page.main_frame, c, d]


# -- cookies --------------------------------------------------------------------------------


async def test_contexts_isolate_cookies(browser: Browser, context: BrowserContext, server: StaticServer) -> None:
    server.route("/", "<title>cookies</title>")
    other = await browser.new_context()
    try:
        page = await context.new_page()
        other_page = await other.new_page()
        await page.goto(server.url("/"))
        await other_page.goto(server.url("/"))
        await page.evaluate("document.cookie = 'from_js=1; path=/'")
        await context.add_cookies([{"name": "from_api", "value": "2", "url": server.url("/")}])

        assert await page.evaluate("document.cookie.split('; ').sort()") == ["from_api=2", "from_js=1"]
        assert await other_page.evaluate("document.cookie") == ""
        assert sorted(cookie["name"] for cookie in await context.cookies()) == ["from_api", "from_js"]
        assert await other.cookies() == []

        await other_page.reload()
        assert "cookie" not in requests_for(server, "/")[-1].headers
        await page.reload()
        assert sorted(requests_for(server, "/")[-1].headers["cookie"].split("; ")) == ["from_api=2", "from_js=1"]
    finally:
        await other.close()


async def test_add_cookies_and_read_them_back(context: BrowserContext, server: StaticServer) -> None:
    await context.add_cookies([{"name": "plain", "value": "v1", "url": server.url("/")}])
    cookies = await context.cookies()
    assert len(cookies) == 1
    cookie = cookies[0]
    assert cookie["name"] == "plain"
    assert cookie["value"] == "v1"
    assert cookie["domain"] == "127.0.0.1"
    assert cookie["path"] == "/"
    assert cookie["expires"] == -1
    assert cookie["httpOnly"] is False
    assert cookie["secure"] is False
    assert cookie["sameSite"] in ("Lax", "None", "Strict")

    expires = int(time.time()) + 10 * 86400  # Chromium caps expiry at 400 days from now
    await context.add_cookies(
        [
            {
                "name": "full",
                "value": "v2",
                "domain": "127.0.0.1",
                "path": "/",
                "expires": expires,
                "httpOnly": True,
                "sameSite": "Strict",
            }
        ]
    )
    full = next(cookie for cookie in await context.cookies() if cookie["name"] == "full")
    assert abs(full["expires"] - expires) < 1
    assert full["httpOnly"] is True
    assert full["sameSite"] == "Strict"


async def test_cookies_filter_by_domain_path_and_secure(
    context: BrowserContext, server: StaticServer, other_server: StaticServer
) -> None:
    await context.add_cookies(
        [
            {"name": "root", "value": "1", "url": server.url("/")},
            {"name": "deep", "value": "2", "domain": "127.0.0.1", "path": "/deep"},
            {"name": "other", "value": "3", "url": other_server.url("/")},
            # Storage only: no request ever goes to example.com.
            {"name": "secure", "value": "4", "domain": "example.com", "path": "/", "secure": True},
            {"name": "dotted", "value": "5", "domain": ".example.com", "path": "/"},
        ]
    )

    async def names(urls: str | list[str]) -> list[str]:
        return sorted(cookie["name"] for cookie in await context.cookies(urls))

    assert await names(server.url("/")) == ["root"]
    assert await names(server.url("/deep")) == ["deep", "root"]
    assert await names(server.url("/deep/er/page")) == ["deep", "root"]
    assert await names(server.url("/deeper")) == ["root"]
    assert await names(other_server.url("/anything")) == ["other"]
    assert await names([server.url("/deep/x"), other_server.url("/")]) == ["deep", "other", "root"]
    assert await names("http://example.com/") == ["dotted"]
    assert await names("https://example.com/") == ["dotted", "secure"]
    assert await names("https://sub.example.com/") == ["dotted"]
    assert await names("https://notexample.com/") == []
    assert len(await context.cookies()) == 5


async def test_cookies_are_sent_to_the_server(page: Page, server: StaticServer) -> None:
    server.route("/", "<title>c</title>")
    server.route("/deep/page", "<title>deep</title>")
    await page.context.add_cookies(
        [
            {"name": "k", "value": "v", "url": server.url("/")},
            {"name": "deep", "value": "d", "domain": "127.0.0.1", "path": "/deep"},
        ]
    )
    await page.goto(server.url("/"))
    assert requests_for(server, "/")[-1].headers["cookie"] == "k=v"
    await page.goto(server.url("/deep/page"))
    assert sorted(requests_for(server, "/deep/page")[-1].headers["cookie"].split("; ")) == ["deep=d", "k=v"]
    # A cookie set by the page is sent with its next request too.
    await page.evaluate("document.cookie = 'js=1; path=/'")
    await page.goto(server.url("/"))
    assert sorted(requests_for(server, "/")[-1].headers["cookie"].split("; ")) == ["js=1", "k=v"]


async def test_invalid_cookies_raise_usage_error(context: BrowserContext, server: StaticServer) -> None:
    with pytest.raises(UsageError):
        await context.add_cookies([{"name": "a", "value": "b"}])
    with pytest.raises(UsageError):
        await context.add_cookies([{"value": "b", "url": server.url("/")}])
    with pytest.raises(UsageError):
        await context.add_cookies([{"name": "a", "value": "b", "url": "data:text/html,x"}])
    with pytest.raises(UsageError):
        await context.add_cookies([{"name": "a", "value": "b", "url": server.url("/"), "sameSite": "lax"}])
    assert await context.cookies() == []


async def test_cookie_with_both_url_and_domain_raises_usage_error(
    context: BrowserContext, server: StaticServer
) -> None:
    # Playwright: "Cookie should have either url or domain" / "... either url or path".
    with pytest.raises(UsageError):
        await context.add_cookies([{"name": "a", "value": "b", "url": server.url("/"), "domain": "127.0.0.1"}])
    with pytest.raises(UsageError):
        await context.add_cookies([{"name": "a", "value": "b", "url": server.url("/"), "path": "/x"}])
    assert await context.cookies() == []


# -- extra HTTP headers ---------------------------------------------------------------------


async def test_set_extra_http_headers(page: Page, server: StaticServer) -> None:
    server.route("/", "<title>h</title>")
    server.route("/sub.js", Response("window.subLoaded = true", "text/javascript"))
    server.route("/with-sub", '<script src="/sub.js"></script>')
    await page.context.set_extra_http_headers({"x-test": "one"})
    await page.goto(server.url("/"))
    assert requests_for(server, "/")[-1].headers["x-test"] == "one"

    await page.context.set_extra_http_headers({"x-other": "two"})  # replaces, does not add
    await page.goto(server.url("/with-sub"))
    for path in ("/with-sub", "/sub.js"):
        headers = requests_for(server, path)[-1].headers
        assert headers["x-other"] == "two"
        assert "x-test" not in headers

    # Pages opened later in the context send them too.
    later = await page.context.new_page()
    await later.goto(server.url("/"))
    assert requests_for(server, "/")[-1].headers["x-other"] == "two"
    assert await later.evaluate("fetch('/sub.js').then(response => response.status)") == 200
    assert requests_for(server, "/sub.js")[-1].headers["x-other"] == "two"
    with pytest.raises(UsageError):
        await page.context.set_extra_http_headers({"x-bad": 1})  # type: ignore[dict-item]


async def test_new_context_extra_http_headers(
    browser: Browser, server: StaticServer, other_server: StaticServer
) -> None:
    server.route("/", f'<iframe src="{other_server.url("/frame")}"></iframe>')
    other_server.route("/frame", "<title>frame</title>")
    context = await browser.new_context(extra_http_headers={"x-from-context": "yes"})
    try:
        page = await context.new_page()
        await page.goto(server.url("/"))
        assert requests_for(server, "/")[-1].headers["x-from-context"] == "yes"
        # The out-of-process iframe's requests carry them as well.
        assert requests_for(other_server, "/frame")[-1].headers["x-from-context"] == "yes"
        await page.evaluate("fetch('/').then(r => r.text())")
        assert requests_for(server, "/")[-1].headers["x-from-context"] == "yes"
    finally:
        await context.close()


# -- events -----------------------------------------------------------------------------------


async def test_console_event(page: Page, server: StaticServer, other_server: StaticServer) -> None:
    messages: list[ConsoleMessage] = []
    arrived = trio.Event()

    def on_console(message: ConsoleMessage) -> None:
        messages.append(message)
        if len(messages) == 4:
            arrived.set()

    page.on("console", on_console)
    await page.evaluate("console.log('hello', 5, true, null, 1.5)")
    await page.evaluate("console.warn('careful')")
    await page.evaluate("console.error('bad', 'things')")
    await page.evaluate("console.info('fyi')")
    with trio.fail_after(STEP):
        await arrived.wait()
    log, warn, error, info = messages
    assert log.type == "log"
    assert log.text == "hello 5 true null 1.5"
    assert log.args == ["hello", 5, True, None, 1.5]
    assert log.page is page
    assert (warn.type, warn.text) == ("warning", "careful")
    assert (error.type, error.text, error.args) == ("error", "bad things", ["bad", "things"])
    assert (info.type, info.text) == ("info", "fyi")

    # Console calls in an out-of-process iframe reach the page's listeners too.
    from_frame = trio.Event()
    page.on("console", lambda message: from_frame.set() if message.text == "from the iframe" else None)
    server.route("/parent", f'<iframe src="{other_server.url("/frame")}"></iframe>')
    other_server.route("/frame", "<script>console.log('from the iframe')</script>")
    await page.goto(server.url("/parent"))
    with trio.fail_after(STEP):
        await from_frame.wait()


async def test_console_text_previews_objects_like_playwright(page: Page) -> None:
    # Playwright's ConsoleMessage.text for console.log('hello', 5, {foo: 'bar'}) is "hello 5 {foo: bar}".
    messages: list[ConsoleMessage] = []
    arrived = trio.Event()

    def on_console(message: ConsoleMessage) -> None:
        messages.append(message)
        arrived.set()

    page.on("console", on_console)
    await page.evaluate("console.log('hello', 5, {foo: 'bar'})")
    with trio.fail_after(STEP):
        await arrived.wait()
    assert messages[0].text == "hello 5 {foo: bar}"


async def test_pageerror_event(page: Page) -> None:
    errors: list[Exception] = []
    arrived = trio.Event()

    def on_error(error: Exception) -> None:
        errors.append(error)
        arrived.set()

    page.on("pageerror", on_error)
    # An exception that evaluate() reports is not also a page error.
    with pytest.raises(JavaScriptError):
        await page.evaluate("() => { throw new Error('evaluated, not uncaught') }")
    await page.evaluate("setTimeout(() => { throw new Error('uncaught boom') }, 0)")
    with trio.fail_after(STEP):
        await arrived.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], JavaScriptError)
    assert "uncaught boom" in str(errors[0])


async def test_close_event_and_closing_twice(page: Page) -> None:
    closed: list[Page] = []
    page.on("close", closed.append)
    assert page in page.context.pages
    assert not page.is_closed()
    await page.close()
    assert closed == [page]
    assert page.is_closed()
    assert page not in page.context.pages
    await page.close()  # closing again does nothing
    assert closed == [page]
    with pytest.raises(TargetClosedError):
        await page.evaluate("1")
    with pytest.raises(TargetClosedError):
        await page.goto("data:text/html,x")
    with pytest.raises(TargetClosedError):
        await page.wait_for_function("true")


async def test_closing_the_context_closes_its_pages(browser: Browser) -> None:
    context = await browser.new_context()
    first, second = await context.new_page(), await context.new_page()
    closed: list[Page] = []
    first.on("close", closed.append)
    second.on("close", closed.append)
    await context.close()
    assert sorted(map(id, closed)) == sorted(map(id, [first, second]))
    assert first.is_closed()
    assert second.is_closed()
    with pytest.raises(TargetClosedError):
        await first.evaluate("1")
    with pytest.raises(TargetClosedError):
        await context.new_page()


async def test_popup_event(page: Page, server: StaticServer) -> None:
    server.route("/", "<title>opener</title>")
    server.route("/popup", "<title>popup</title>")
    await page.goto(server.url("/"))
    popups: list[Page] = []
    arrived = trio.Event()

    def on_popup(popup: Page) -> None:
        popups.append(popup)
        arrived.set()

    page.on("popup", on_popup)
    await page.evaluate("url => { window.opened = window.open(url) }", server.url("/popup"))
    with trio.fail_after(STEP):
        await arrived.wait()
    [popup] = popups
    assert popup is not page
    assert popup.context is page.context
    assert page.context.pages == [page, popup]
    await popup.wait_for_function("location.pathname === '/popup' && document.readyState === 'complete'")
    await eventually(lambda: popup.url == server.url("/popup"), "the popup's url")
    assert await popup.evaluate("[document.title, window.opener.document.title]") == ["popup", "opener"]
    await popup.close()
    assert page.context.pages == [page]
    await page.wait_for_function("window.opened.closed", timeout=STEP)


async def test_context_pages_lists_open_pages_in_order(context: BrowserContext) -> None:
    assert context.pages == []
    first = await context.new_page()
    second = await context.new_page()
    third = await context.new_page()
    assert context.pages == [first, second, third]
    assert all(page.context is context for page in context.pages)
    await second.close()
    assert context.pages == [first, third]


async def test_browser_new_page_owns_its_context(browser: Browser) -> None:
    page = await browser.new_page()
    context = page.context
    assert context in browser.contexts
    assert context.pages == [page]
    with pytest.raises(UsageError):
        await context.new_page()
    assert await page.evaluate("1 + 1") == 2
    await page.close()
    assert context not in browser.contexts
    with pytest.raises(TargetClosedError):
        await context.new_page()


# -- concurrency ------------------------------------------------------------------------------


async def test_concurrent_pages_evaluate_independently(context: BrowserContext, server: StaticServer) -> None:
    names = ["p0", "p1", "p2", "p3"]
    for name in names:
        server.route(f"/{name}", f"<script>window.who = '{name}'</script>")
    pages = [await context.new_page() for _ in names]
    results: dict[str, list[Any]] = {}

    async def drive(page: Page, name: str) -> None:
        await page.goto(server.url(f"/{name}"))
        results[name] = [
            await page.evaluate("window.who"),
            await page.evaluate("async n => { await new Promise(r => setTimeout(r, n)); return window.who }", 20),
            await page.wait_for_function("window.who"),
        ]

    async with trio.open_nursery() as nursery:
        for page, name in zip(pages, names, strict=True):
            nursery.start_soon(drive, page, name)
    assert results == {name: [name, name, name] for name in names}
    assert [page.url for page in pages] == [server.url(f"/{name}") for name in names]

    # Many evaluations in flight on one page come back to their own callers.
    page = pages[0]
    values: dict[int, Any] = {}

    async def one(i: int) -> None:
        values[i] = await page.evaluate("async i => { await null; return i * i }", i)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert values == {i: i * i for i in range(20)}


async def test_evaluate_of_a_result_json_cannot_carry_raises_usage_error(page: Page) -> None:
    with pytest.raises(UsageError, match="JSON-able"):
        await page.evaluate("window")
    with pytest.raises(UsageError, match="JSON-able"):
        await page.evaluate("(() => { const a = {}; a.self = a; return a; })()")
    assert await page.evaluate("1 + 1") == 2  # the page is fine afterwards
