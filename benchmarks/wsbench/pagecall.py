"""One scenario of ``bench.js`` in a page, for the tools that drive a cdp_wsroute page directly.

``profile.py`` and ``ab.py`` call the bench page's scenarios themselves (``bench.py`` goes
through its workers and runner instead). Both want the same deadline on each run and the
same refusal of a run that lost or reordered a frame or stalled.
"""

from __future__ import annotations

from typing import Any

import trio

from cdp_wsroute import Page

IDLE_MS = 60_000  # the page gives up after this long without progress
RUN_TIMEOUT = 240.0  # and Python after this long per run


async def bench(page: Page, function: str, arg: dict[str, Any]) -> dict[str, Any]:
    """``window.bench[function](arg)`` in ``page``: its result, checked.

    Raises:
        RuntimeError: frames were lost or reordered, or the page stalled.
        trio.TooSlowError: the run took longer than RUN_TIMEOUT.
    """
    with trio.fail_after(RUN_TIMEOUT):
        result: dict[str, Any] = await page.evaluate(f"arg => window.bench.{function}(arg)", arg)
    if result.get("lost") or result.get("reordered") or result.get("stalled"):
        raise RuntimeError(f"{function}: frames lost or reordered, or the page stalled: {result}")
    return result
