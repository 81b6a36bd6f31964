"""pytest plugin (entry point ``pytest11``): ``browser``, ``context`` and ``page`` fixtures for pytest-trio.

Every test runs in its own ``trio.run``, so trio objects cannot outlive a test.
The *process* can: by default one Chromium is started for the whole session
(listening on a loopback port in its temporary profile), and each test connects
to it over CDP and gets fresh contexts, which are closed when the test ends.
``--cdp-wsroute-fresh-browser`` launches a browser per test instead.

Options: ``--cdp-wsroute-headed``, ``--cdp-wsroute-executable PATH``,
``--cdp-wsroute-fresh-browser``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ._browser import Browser, BrowserContext, connect, launch
from ._browsers import find_executable
from ._errors import LaunchError
from ._page import Page
from ._process import BrowserProcess

__all__ = ["browser", "context", "page"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("cdp_wsroute", "cdp_wsroute browser fixtures")
    group.addoption("--cdp-wsroute-headed", action="store_true", help="run Chromium with a window")
    group.addoption("--cdp-wsroute-executable", default=None, help="the Chromium binary (default: browsers.lock)")
    group.addoption(
        "--cdp-wsroute-fresh-browser",
        action="store_true",
        help="launch a browser per test instead of sharing one per session",
    )


def _launch_options(config: pytest.Config) -> dict[str, object]:
    return {
        "executable_path": config.getoption("--cdp-wsroute-executable"),
        "headless": not config.getoption("--cdp-wsroute-headed"),
    }


class SharedBrowser:
    """One Chromium process for a test session; tests connect to it over a loopback port."""

    def __init__(self, process: BrowserProcess, endpoint: str) -> None:
        self.process = process
        self.endpoint = endpoint

    @classmethod
    def start(cls, *, executable_path: str | None, headless: bool, timeout: float = 30.0) -> SharedBrowser:
        executable = find_executable(executable_path)
        process = BrowserProcess.spawn(executable, headless=headless, args=("--remote-debugging-port=0",))
        # The pipe stays open and unread: when pytest dies, the browser sees it close and exits.
        port_file = process.user_data_dir / "DevToolsActivePort"
        stop = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                tail = process.stderr_tail()
                process.cleanup()
                raise LaunchError(f"Failed to launch {executable}: it exited.\nFlags: {process.flags}\n{tail}")
            endpoint = _read_port_file(port_file)
            if endpoint is not None:
                return cls(process, endpoint)
            if time.monotonic() > stop:
                tail = process.stderr_tail()
                process.cleanup()
                raise LaunchError(f"Failed to launch {executable}: no DevTools port within {timeout}s.\n{tail}")
            time.sleep(0.02)  # polling a file the browser writes; no event to wait on

    def close(self) -> None:
        self.process.cleanup()


def _read_port_file(path: Path) -> str | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 2 or not lines[0].isdigit():
        return None
    return f"ws://127.0.0.1:{lines[0]}{lines[1]}"


@pytest.fixture(scope="session")
def cdp_wsroute_shared_browser(pytestconfig: pytest.Config) -> Iterator[SharedBrowser | None]:
    """The session's shared Chromium process (None with --cdp-wsroute-fresh-browser)."""
    if pytestconfig.getoption("--cdp-wsroute-fresh-browser"):
        yield None
        return
    options = _launch_options(pytestconfig)
    shared = SharedBrowser.start(
        executable_path=options["executable_path"],  # type: ignore[arg-type]
        headless=bool(options["headless"]),
    )
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
async def browser(
    pytestconfig: pytest.Config, cdp_wsroute_shared_browser: SharedBrowser | None
) -> AsyncIterator[Browser]:
    """A Browser for this test: connected to the shared process, or launched for the test."""
    if cdp_wsroute_shared_browser is None:
        async with launch(**_launch_options(pytestconfig)) as launched:  # type: ignore[arg-type]
            yield launched
    else:
        async with connect(cdp_wsroute_shared_browser.endpoint) as connected:
            yield connected


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh, isolated BrowserContext, closed after the test."""
    ctx = await browser.new_context()
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    """A new page in the test's own context."""
    return await context.new_page()
