"""The public surface: ``cdp_wsroute.__all__``, the names and call styles /work/shared/API.md fixes, the wheel."""

from __future__ import annotations

import builtins
import contextlib
import importlib
import inspect
import re
import subprocess
import sys
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

import cdp_wsroute
from cdp_wsroute import (
    Browser,
    BrowserContext,
    BrowserError,
    ConnectionClosedError,
    Error,
    Frame,
    JavaScriptError,
    LaunchError,
    NavigationError,
    Page,
    ProtocolError,
    TargetClosedError,
    TimeoutError,
    UsageError,
    WebSocket,
    connect,
    launch,
)

ROOT = Path(__file__).resolve().parent.parent

# -- __all__ ------------------------------------------------------------------------------


def test_all_is_sorted_and_unique() -> None:
    names = list(cdp_wsroute.__all__)
    assert names == sorted(set(names))


@pytest.mark.parametrize("name", cdp_wsroute.__all__)
def test_every_name_in_all_is_importable(name: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from cdp_wsroute import {name}", namespace)  # the way users import it
    assert namespace[name] is getattr(cdp_wsroute, name)
    assert not name.startswith("_")


def test_every_public_attribute_is_in_all() -> None:
    module = importlib.import_module("cdp_wsroute")
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(cdp_wsroute.__all__)


# -- call styles --------------------------------------------------------------------------

REQUIRED = inspect.Parameter.empty
ANY_DEFAULT = object()
POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
KW = inspect.Parameter.KEYWORD_ONLY


def assert_signature(func: Callable[..., Any], expected: list[tuple[str, Any, object]]) -> None:
    """``expected``: (name, kind, default) per parameter after ``self``; ANY_DEFAULT: has some default.

    The API.md parameters come first, in order; what later issues add after them must be
    keyword-only with a default, so no call written against API.md can break.
    """
    params = list(inspect.signature(func).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    extensions = params[len(expected) :]
    params = params[: len(expected)]
    for extra in extensions:
        assert extra.kind == KW, f"{func.__qualname__}: added parameter {extra.name} must be keyword-only"
        assert extra.default is not REQUIRED, f"{func.__qualname__}: added parameter {extra.name} needs a default"
    assert [p.name for p in params] == [name for name, _, _ in expected], func
    for param, (name, kind, default) in zip(params, expected, strict=True):
        assert param.kind == kind, f"{func.__qualname__}: {name} should be {kind}"
        if default is ANY_DEFAULT:
            assert param.default is not REQUIRED, f"{func.__qualname__}: {name} needs a default"
        else:
            assert param.default == default, f"{func.__qualname__}: {name}={param.default!r}, not {default!r}"


def test_launch_signature() -> None:
    assert_signature(
        launch,
        [("executable_path", KW, None), ("headless", KW, True), ("args", KW, ()), ("timeout", KW, 30.0)],
    )


def test_connect_signature() -> None:
    assert_signature(connect, [("endpoint_url", POS, REQUIRED), ("timeout", KW, 30.0)])


@pytest.mark.parametrize("entry", [launch, connect])
def test_entry_points_are_async_context_managers(entry: Callable[..., Any]) -> None:
    assert not inspect.iscoroutinefunction(entry)
    manager = entry("ws://127.0.0.1:9/") if entry is connect else entry()
    # Nothing starts until the block is entered, so this leaves nothing behind.
    assert isinstance(manager, contextlib.AbstractAsyncContextManager)
    assert not isinstance(manager, contextlib.AbstractContextManager)


async def test_connect_is_used_with_async_with() -> None:
    with pytest.raises(UsageError, match="ftp://nowhere"):
        async with connect("ftp://nowhere"):
            pytest.fail("connected to an ftp:// endpoint")


PROPERTIES: dict[type, list[str]] = {
    Browser: ["version", "contexts"],
    BrowserContext: ["pages"],
    Page: ["url", "main_frame", "frames", "context"],
    Frame: ["name", "url", "parent_frame"],
}

COROUTINES: dict[type, list[str]] = {
    Browser: ["new_context", "new_page", "close"],
    BrowserContext: ["new_page", "close", "set_extra_http_headers", "add_cookies", "cookies"],
    Page: ["goto", "reload", "evaluate", "wait_for_function", "close"],
    Frame: ["evaluate", "goto", "wait_for_function"],
}

SYNC_METHODS: dict[type, list[str]] = {Page: ["on", "remove_listener"]}


@pytest.mark.parametrize(("cls", "name"), [(cls, name) for cls, names in PROPERTIES.items() for name in names])
def test_properties(cls: type, name: str) -> None:
    assert isinstance(inspect.getattr_static(cls, name), property), f"{cls.__name__}.{name} should be a property"


@pytest.mark.parametrize(("cls", "name"), [(cls, name) for cls, names in COROUTINES.items() for name in names])
def test_coroutine_methods(cls: type, name: str) -> None:
    assert inspect.iscoroutinefunction(getattr(cls, name)), f"{cls.__name__}.{name} should be async def"


@pytest.mark.parametrize(("cls", "name"), [(cls, name) for cls, names in SYNC_METHODS.items() for name in names])
def test_sync_methods(cls: type, name: str) -> None:
    method = getattr(cls, name)
    assert callable(method)
    assert not inspect.iscoroutinefunction(method)
    assert_signature(method, [("event", POS, REQUIRED), ("callback", POS, REQUIRED)])


CONTEXT_OPTIONS = [("base_url", KW, None), ("ignore_https_errors", KW, False), ("extra_http_headers", KW, None)]


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (Browser.new_context, CONTEXT_OPTIONS),
        (Browser.new_page, CONTEXT_OPTIONS),
        (BrowserContext.new_page, []),
        (BrowserContext.set_extra_http_headers, [("headers", POS, REQUIRED)]),
        (BrowserContext.add_cookies, [("cookies", POS, REQUIRED)]),
        (BrowserContext.cookies, [("urls", POS, None)]),
        (Page.goto, [("url", POS, REQUIRED), ("wait_until", KW, "load"), ("timeout", KW, None)]),
        (Frame.goto, [("url", POS, REQUIRED), ("wait_until", KW, "load"), ("timeout", KW, None)]),
        (Page.evaluate, [("expression", POS, REQUIRED), ("arg", POS, None)]),
        (Frame.evaluate, [("expression", POS, REQUIRED), ("arg", POS, None)]),
        *[
            (
                cls.wait_for_function,
                [
                    ("expression", POS, REQUIRED),
                    ("arg", POS, None),
                    ("timeout", KW, None),
                    ("polling", KW, ANY_DEFAULT),
                ],
            )
            for cls in (Page, Frame)
        ],
    ],
    ids=lambda value: getattr(value, "__qualname__", None) if callable(value) else "",
)
def test_signatures(func: Callable[..., Any], expected: list[tuple[str, Any, object]]) -> None:
    assert_signature(func, expected)


@pytest.mark.parametrize(
    ("cls", "name"), [(Page, "expect_websocket"), (WebSocket, "expect_event"), (Page, "expect_web_socket_route")]
)
def test_expect_methods_are_async_context_managers(cls: type, name: str) -> None:
    method = inspect.getattr_static(cls, name)
    assert not inspect.iscoroutinefunction(method)  # used as `async with x.expect_...(...)`
    assert inspect.isasyncgenfunction(inspect.unwrap(method))


def test_observation_signatures() -> None:
    assert_signature(Page.expect_websocket, [("predicate", POS, None), ("timeout", POS, None)])
    for method in (WebSocket.expect_event, WebSocket.wait_for_event):
        assert_signature(method, [("event", POS, REQUIRED), ("predicate", POS, None), ("timeout", POS, None)])
    assert inspect.iscoroutinefunction(WebSocket.wait_for_event)
    assert isinstance(inspect.getattr_static(WebSocket, "url"), property)
    assert callable(WebSocket.is_closed)
    assert_signature(WebSocket.on, [("event", POS, REQUIRED), ("callback", POS, REQUIRED)])


async def test_call_styles_against_a_browser(browser: Browser, context: BrowserContext, page: Page) -> None:
    assert re.fullmatch(r"Chromium/\d+\.\d+\.\d+\.\d+", browser.version)
    assert context in browser.contexts
    assert page.context is context
    assert context.pages == [page]

    await page.goto("data:text/html,<title>t</title><iframe name=inner srcdoc='<p>x</p>'></iframe>")
    main = page.main_frame
    assert page.url.startswith("data:text/html,")
    assert main.url == page.url
    assert main.parent_frame is None
    assert main.name == ""
    assert [frame.name for frame in page.frames] == ["", "inner"]
    inner = page.frames[1]
    assert inner.parent_frame is main
    assert await main.evaluate("document.title") == "t"
    assert await inner.evaluate("document.body.textContent") == "x"
    assert await page.evaluate("n => n * 2", 21) == 42
    assert await page.wait_for_function("() => document.readyState === 'complete' && 7") == 7
    assert await main.wait_for_function("n => n + 1", 1) == 2
    await main.goto("data:text/html,<title>u</title>")
    await page.reload()
    assert await page.evaluate("document.title") == "u"

    kept: list[str] = []
    removed: list[str] = []
    delivered = trio.Event()

    def keep(message: Any) -> None:
        kept.append(message.text)
        delivered.set()

    def drop(message: Any) -> None:
        removed.append(message.text)

    page.on("console", drop)
    page.on("console", keep)
    page.remove_listener("console", drop)
    await page.evaluate("console.log('hi')")
    with trio.fail_after(10):
        await delivered.wait()
    assert kept == ["hi"]
    assert removed == []

    await context.set_extra_http_headers({"x-test": "1"})
    await context.add_cookies([{"name": "a", "value": "1", "url": "http://127.0.0.1/"}])
    assert [(c["name"], c["value"]) for c in await context.cookies("http://127.0.0.1/")] == [("a", "1")]
    assert await context.cookies("http://example.com/") == []

    second = await context.new_page()
    assert context.pages == [page, second]
    await second.close()
    assert context.pages == [page]

    own = await browser.new_page()
    assert own.context is not context
    assert own.context in browser.contexts
    await own.close()


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (Error, Exception),
        (TimeoutError, Error),
        (TimeoutError, builtins.TimeoutError),
        (TargetClosedError, Error),
        (ConnectionClosedError, TargetClosedError),
        (UsageError, Error),
        (BrowserError, Error),
        (LaunchError, BrowserError),
        (ProtocolError, BrowserError),
        (NavigationError, Error),
        (JavaScriptError, Error),
    ],
)
def test_error_hierarchy(cls: type[BaseException], base: type[BaseException]) -> None:
    assert issubclass(cls, base)


def test_errors_are_raised_and_caught_as_documented() -> None:
    assert cdp_wsroute.TimeoutError is not builtins.TimeoutError
    with pytest.raises(Error) as info:
        raise TimeoutError("waiting for x")
    assert info.value.message == "waiting for x"
    with pytest.raises(builtins.TimeoutError):
        raise TimeoutError("waiting for y")
    with pytest.raises(Error, match="closed"):
        raise TargetClosedError()
    assert not issubclass(TargetClosedError, builtins.TimeoutError)


# -- the wheel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--disable-pip-version-check", "-q"]
    result = subprocess.run(
        [*base, "--no-build-isolation", "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=90
    )
    if result.returncode != 0:  # no hatchling in this environment: let pip fetch it
        base.remove("--no-index")
        result = subprocess.run([*base, "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("cdp_wsroute-*.whl")
    return built


@pytest.mark.timeout(120)
def test_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for required in ("cdp_wsroute/py.typed", "cdp_wsroute/browsers.lock", "cdp_wsroute/injected_js/README.md"):
            assert required in names, sorted(names)
        assert archive.read("cdp_wsroute/browsers.lock") == (ROOT / "browsers.lock").read_bytes()
        (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert re.search(r"^\[pytest11\]\s*\ncdp_wsroute = cdp_wsroute\._pytest_plugin\s*$", text, re.MULTILINE), text


@pytest.mark.timeout(120)
def test_wheel_reads_its_own_lock(wheel: Path, tmp_path: Path) -> None:
    """Imported from the wheel (no source tree next to it), the package finds browsers.lock inside itself."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import cdp_wsroute, cdp_wsroute._browsers as b\n"
        "print(cdp_wsroute.__file__); print(b.load_lock().version)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(wheel)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    location, version = result.stdout.splitlines()
    assert location.startswith(str(wheel)), location
    assert version == cdp_wsroute._browsers.load_lock().version
