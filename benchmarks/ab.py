"""Interleaved A/B runs of tunnel settings: one Chromium, a page per setting, runs alternating.

    python benchmarks/ab.py '{}' '{"WINDOW": 1048576}'                      # 64 KiB mocked echo
    python benchmarks/ab.py --size 1048576 --count 10 '{}' '{"WINDOW": 1048576}'
    python benchmarks/ab.py --pass-through --rounds 60 '{}' '{"MAX_BATCHES_IN_FLIGHT": 16}'
    python benchmarks/ab.py '{}' '{"SHIM": "/tmp/websocket_shim.js"}'         # an edited shim

This machine's speed drifts by a third or more over minutes, so two benchmark runs one after
the other cannot tell a 10% change from noise. Here each setting gets a page of its own in the
same browser (its shim installed with the setting), and the runs alternate, ABAB then BABA, so
drift hits every setting alike. Each run is ``bench.js``'s echo: ``--count`` binary messages of
``--size`` bytes at once; the table gives each setting's msg/s (median and quartiles).

A setting is a JSON object of tunnel constants, applied to the modules while its page is set up
and while its runs go (they are private: this is a tool for changing them, not an API):
``WINDOW``, ``FRAME_COST`` (the shim's config and the acknowledgement step, ``WINDOW // 4``),
``ACK_AT``, ``BACKLOG``, ``MAX_BATCHES_IN_FLIGHT``, ``PARTIAL_BATCHES_IN_FLIGHT``,
``MAX_BATCH_BYTES``, ``PAGE_HIGH_WATER``, and ``SHIM``, the path of a shim source to use instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio
from wsbench.mock import mock, pass_through
from wsbench.pagecall import IDLE_MS, bench
from wsbench.server import ServerProcess

import cdp_wsroute._codec as codec
import cdp_wsroute._route as route_module
import cdp_wsroute._tunnel as tunnel_module
from cdp_wsroute import Page, launch

WARM_UP_RUNS = 3

# Setting -> the module attributes it sets.
_TARGETS: dict[str, list[tuple[Any, str]]] = {
    "WINDOW": [(codec, "WINDOW"), (route_module, "WINDOW"), (tunnel_module, "WINDOW")],
    "FRAME_COST": [(codec, "FRAME_COST"), (route_module, "FRAME_COST"), (tunnel_module, "FRAME_COST")],
    "ACK_AT": [(route_module, "_ACK_AT")],
    "BACKLOG": [(route_module, "_BACKLOG")],
    "MAX_BATCHES_IN_FLIGHT": [(tunnel_module, "MAX_BATCHES_IN_FLIGHT")],
    "PARTIAL_BATCHES_IN_FLIGHT": [(tunnel_module, "_PARTIAL_BATCHES_IN_FLIGHT")],
    "MAX_BATCH_BYTES": [(tunnel_module, "MAX_BATCH_BYTES")],
    "PAGE_HIGH_WATER": [(tunnel_module, "PAGE_HIGH_WATER")],
}
_DEFAULTS = {name: getattr(*targets[0]) for name, targets in _TARGETS.items()}
_SHIM_SOURCE: Callable[[], str] = tunnel_module.shim_source


def parse_setting(text: str) -> dict[str, Any]:
    setting = json.loads(text)
    if not isinstance(setting, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text}")
    unknown = set(setting) - set(_TARGETS) - {"SHIM"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown settings {sorted(unknown)}; known: {sorted(_TARGETS)} and SHIM")
    if "SHIM" in setting and not Path(setting["SHIM"]).is_file():
        raise argparse.ArgumentTypeError(f"no shim at {setting['SHIM']}")
    return setting


def apply(setting: dict[str, Any]) -> None:
    """Set the tunnel's constants to ``setting`` (the defaults for what it leaves out)."""
    values = {**_DEFAULTS, **setting}
    if "ACK_AT" not in setting:
        values["ACK_AT"] = values["WINDOW"] // 4
    for name, targets in _TARGETS.items():
        for module, attribute in targets:
            setattr(module, attribute, values[name])
    shim = setting.get("SHIM")
    if shim is None:
        tunnel_module.shim_source = _SHIM_SOURCE
    else:
        source = Path(shim).read_text().strip().rstrip(";")
        tunnel_module.shim_source = lambda: source


async def _echo(page: Page, arg: dict[str, Any]) -> float:
    return float((await bench(page, "echo", arg))["per_s"])


async def run(args: argparse.Namespace) -> list[list[float]]:
    settings: list[dict[str, Any]] = args.settings
    results: list[list[float]] = [[] for _ in settings]
    with ServerProcess() as server:
        async with launch() as browser:
            pages = []
            for setting in settings:
                apply(setting)
                page = await browser.new_page()
                await page.route_web_socket(server.ports.ws_glob, pass_through if args.pass_through else mock)
                await page.goto(server.ports.page_url)
                pages.append(page)
            arg = {"url": server.ports.ws_url("echo"), "count": args.count, "size": args.size, "binary": True}
            arg["idleMs"] = IDLE_MS
            for setting, page in zip(settings, pages, strict=True):
                apply(setting)
                for _ in range(WARM_UP_RUNS):
                    await _echo(page, arg)
            for round_ in range(args.rounds):
                order = range(len(settings)) if round_ % 2 == 0 else reversed(range(len(settings)))
                for index in order:
                    apply(settings[index])
                    results[index].append(await _echo(pages[index], arg))
    apply({})
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", type=parse_setting, help="a JSON object of settings per page")
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per message (default 64 KiB)")
    parser.add_argument("--count", type=int, default=100, help="messages sent at once per run (default 100)")
    parser.add_argument("--rounds", type=int, default=40, help="runs per setting (default 40)")
    parser.add_argument("--pass-through", action="store_true", help="connect_to_server() instead of the mock")
    args = parser.parse_args(argv)
    results = trio.run(run, args)
    print(f"echo of {args.count} x {args.size} B, {'pass-through' if args.pass_through else 'mocked'}, msg/s:")
    print("| setting | median | quartiles | mean |")
    print("|---|---|---|---|")
    for setting, values in zip(args.settings, results, strict=True):
        q1, _, q3 = statistics.quantiles(values, n=4)
        row = [json.dumps(setting), f"{statistics.median(values):,.0f}", f"{q1:,.0f}-{q3:,.0f}"]
        print("| " + " | ".join([*row, f"{statistics.fmean(values):,.0f}"]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
