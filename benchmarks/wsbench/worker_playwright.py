"""The Playwright side, on asyncio: ``python -m wsbench.worker_playwright CONFIG.json``.

Playwright (Python, async API) launches the same Chromium binary through
``executable_path``; its Node.js driver is a child process of this one, whose CPU
time the runner adds as "helper" time. When Playwright is missing or cannot launch,
the output file says why (``meta.error``) and the process exits with status 2; any
other failure is a traceback and status 1, with the cases finished so far saved.
"""

from __future__ import annotations

import asyncio
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from wsbench.mock import mock, pass_through
from wsbench.protocol import Ports
from wsbench.runner import (
    PAGE_TIMEOUT,
    BenchPage,
    JSONDict,
    ScenarioTimeout,
    WorkerConfig,
    die_with_parent,
    run_cases,
    save_records,
    stderr_log,
)
from wsbench.scenarios import Impl, Mode

if TYPE_CHECKING:  # Playwright is in the bench session only: type-check without it, too
    from playwright.async_api import Browser, BrowserContext, Page  # type: ignore[import-not-found, unused-ignore]

__all__ = ["PlaywrightDriver"]

IDLE_ROUTE = "ws://127.0.0.1:1/never-used"
CLOSE_TIMEOUT = 10.0
UNAVAILABLE = 2  # exit status: Playwright is not installed or could not launch the browser


class PlaywrightPage:
    def __init__(self, context: BrowserContext, page: Page, url: str) -> None:
        self._context = context
        self._page = page
        self._url = url

    async def call(self, function: str, arg: JSONDict, timeout: float) -> JSONDict:
        try:
            async with asyncio.timeout(timeout):
                result: JSONDict = await self._page.evaluate(f"arg => window.bench.{function}(arg)", arg)
                return result
        except TimeoutError:
            raise ScenarioTimeout(f"{function} did not finish within {timeout:.0f} s") from None

    async def reload(self, timeout: float) -> None:
        await self._page.goto(self._url, timeout=timeout * 1000)

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._context.close()
        except TimeoutError:
            stderr_log(f"playwright: closing a context took over {CLOSE_TIMEOUT} s; going on")


class PlaywrightDriver:
    impl: Impl = "playwright"
    helper: str | None = "node"

    def __init__(self, browser: Browser, ports: Ports) -> None:
        self._browser = browser
        self._ports = ports

    async def open_page(self, mode: Mode) -> BenchPage:
        context = await self._browser.new_context()
        page = await context.new_page()
        if mode == "mock":
            await page.route_web_socket(self._ports.ws_glob, mock)
        elif mode == "pass":
            await page.route_web_socket(self._ports.ws_glob, pass_through)
        elif mode == "idle":
            await page.route_web_socket(IDLE_ROUTE, mock)
        bench_page = PlaywrightPage(context, page, self._ports.page_url)
        await bench_page.reload(PAGE_TIMEOUT)
        return bench_page


def _unavailable(config: WorkerConfig, why: str) -> int:
    stderr_log(f"playwright: unavailable: {why}")
    save_records(Path(config.out), [], {"error": why})
    return UNAVAILABLE


async def main(config: WorkerConfig) -> int:
    try:
        from playwright.async_api import Error, async_playwright  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        return _unavailable(
            config, f"playwright is not installed ({exc}); `nox -s bench` installs it (see pip's output if it failed)"
        )
    version = metadata.version("playwright")
    async with async_playwright() as playwright:
        try:
            browser = await playwright.chromium.launch(executable_path=config.executable, args=config.browser_args)
        except Error as exc:
            return _unavailable(config, f"playwright {version} could not launch {config.executable}: {exc.message}")
        try:
            meta = {"playwright_browser_version": browser.version, "playwright_version": version}
            await run_cases({"playwright": PlaywrightDriver(browser, config.ports)}, config, stderr_log, meta)
        finally:
            await browser.close()
    return 0


if __name__ == "__main__":
    die_with_parent()
    sys.exit(asyncio.run(main(WorkerConfig.load(Path(sys.argv[1])))))
