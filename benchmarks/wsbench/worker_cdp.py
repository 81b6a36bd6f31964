"""The cdp_wsroute and native side, on trio: ``python -m wsbench.worker_cdp CONFIG.json``.

One Chromium (cdp_wsroute's ``launch``) serves both: ``cdp_wsroute`` pages route
their sockets, ``native`` pages have no route at all, so no shim is even installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

import cdp_wsroute
from cdp_wsroute import Browser, Page, launch
from wsbench.mock import mock, pass_through
from wsbench.protocol import Ports
from wsbench.runner import (
    PAGE_TIMEOUT,
    BenchPage,
    Driver,
    JSONDict,
    ScenarioTimeout,
    WorkerConfig,
    die_with_parent,
    run_cases,
    stderr_log,
)
from wsbench.scenarios import Impl, Mode

__all__ = ["CdpDriver"]

IDLE_ROUTE = "ws://127.0.0.1:1/never-used"  # a route no socket matches: the shim, nothing else
CLOSE_TIMEOUT = 10.0


class CdpPage:
    def __init__(self, page: Page, url: str) -> None:
        self._page = page
        self._url = url

    async def call(self, function: str, arg: JSONDict, timeout: float) -> JSONDict:
        with trio.move_on_after(timeout):
            result: JSONDict = await self._page.evaluate(f"arg => window.bench.{function}(arg)", arg)
            return result
        raise ScenarioTimeout(f"{function} did not finish within {timeout:.0f} s")

    async def reload(self, timeout: float) -> None:
        await self._page.goto(self._url, timeout=timeout)

    async def close(self) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._page.close()


class CdpDriver:
    """Pages of one cdp_wsroute browser: routed (``cdp_wsroute``) or not (``native``)."""

    helper: str | None = None

    def __init__(self, browser: Browser, impl: Impl, ports: Ports) -> None:
        self.impl = impl
        self._browser = browser
        self._ports = ports

    async def open_page(self, mode: Mode) -> BenchPage:
        page = await self._browser.new_page()
        if mode == "mock":
            await page.route_web_socket(self._ports.ws_glob, mock)
        elif mode == "pass":
            await page.route_web_socket(self._ports.ws_glob, pass_through)
        elif mode == "idle":
            await page.route_web_socket(IDLE_ROUTE, mock)
        bench_page = CdpPage(page, self._ports.page_url)
        await bench_page.reload(PAGE_TIMEOUT)
        return bench_page


async def main(config: WorkerConfig) -> None:
    async with launch(executable_path=config.executable, args=config.browser_args) as browser:
        drivers: dict[Impl, Driver] = {
            impl: CdpDriver(browser, impl, config.ports) for impl in config.impls if impl != "playwright"
        }
        meta = {"browser_version": browser.version, "cdp_wsroute_version": cdp_wsroute.__version__}
        await run_cases(drivers, config, stderr_log, meta)


if __name__ == "__main__":
    die_with_parent()
    trio.run(main, WorkerConfig.load(Path(sys.argv[1])))
