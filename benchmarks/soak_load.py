"""The soak run's load phase: many routed sockets in one page, every message checked.

One page opens ``sockets`` sockets at once, half mocked (Python echoes) and half passed
through to the real echo server; each sends ``messages`` messages, text and binary in turn,
and the page checks every echo comes back once, in order, on its own socket. Then all close.
That round runs twice: the first is the measured one, the second shows whether what the first
left behind grows. A small warm-up exchange comes first, so lazy imports and first-use caches
are part of the baseline.

Judged (see benchmarks/README.md): every message delivered once and in order; after each
round, trio tasks, fds and live library objects back to the baseline, Python's allocated
blocks within 1% of it, and RSS after the second round within ``rss_tolerance_mib`` of RSS
after the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from soak_pages import Closing, Exchange, add_routes, close_sockets, exchange, mixed_kinds
from soak_probe import Sample, peak_rss_mib, quiesce, reset_peak_rss, take_sample
from soak_server import Ports, fetch_stats

from cdp_wsroute import Page, launch

__all__ = ["LoadConfig", "LoadResult", "format_load", "judge_load", "run_load"]

WARM_UP_SOCKETS = 8
WARM_UP_MESSAGES = 4
PY_BLOCKS_TOLERANCE = 0.01  # Python's allocated blocks may end this much (a fraction) above the baseline


@dataclass(frozen=True)
class LoadConfig:
    sockets: int
    messages: int  # per socket
    rounds: int  # the first is the measured one
    deadline: float  # seconds for one round's exchange
    rss_tolerance_mib: float  # RSS after the last round may exceed RSS after the first by this much

    @property
    def budget_s(self) -> float:
        """A backstop for the whole phase: every round at its deadline, closing, quiescent points, the browser."""
        return 120 + self.rounds * (self.deadline + 120)


FULL_LOAD = LoadConfig(sockets=1000, messages=100, rounds=2, deadline=300.0, rss_tolerance_mib=8.0)
QUICK_LOAD = LoadConfig(sockets=100, messages=20, rounds=2, deadline=60.0, rss_tolerance_mib=8.0)


@dataclass(frozen=True)
class Round:
    exchange: Exchange
    messages_per_s: float  # echoes back in the page per second, from the first socket created to the last echo
    peak_rss_mib: float  # the driver's peak resident memory during the round
    busy: Sample  # every socket open, every echo back
    closing: Closing
    after: Sample  # every socket closed, at a quiescent point
    settled: bool


@dataclass(frozen=True)
class LoadResult:
    config: LoadConfig
    baseline: Sample
    rounds: list[Round]
    server: dict[str, int]  # the echo server's counters at the end


async def run_load(ports: Ports, config: LoadConfig) -> LoadResult:
    async with launch() as browser:
        page = await browser.new_page()
        await add_routes(page, ports, ["mock", "pass"])
        await page.goto(ports.page_url)
        await warm_up(page, ports)
        baseline, _ = await quiesce(ports, browser.process_id)
        rounds = [await load_round(page, ports, config, browser.process_id, baseline) for _ in range(config.rounds)]
        server = await fetch_stats(ports.http)
        await page.close()
    return LoadResult(config, baseline, rounds, server)


async def warm_up(page: Page, ports: Ports) -> None:
    warm = await exchange(page, ports, mixed_kinds(WARM_UP_SOCKETS), WARM_UP_MESSAGES)
    if warm.delivery.problems():
        raise RuntimeError(f"the warm-up exchange failed: {', '.join(warm.delivery.problems())}")
    await close_sockets(page)


async def load_round(page: Page, ports: Ports, config: LoadConfig, browser_pid: int | None, baseline: Sample) -> Round:
    """Every socket at once, every message, then every socket closed and a quiescent point."""
    reset_peak_rss()
    with trio.fail_after(config.deadline):
        done = await exchange(page, ports, mixed_kinds(config.sockets), config.messages)
    peak = peak_rss_mib()
    busy = take_sample(browser_pid)
    closing = await close_sockets(page)
    after, settled = await quiesce(ports, browser_pid, ceiling=baseline.counts)
    rate = done.delivery.delivered / done.total_s if done.total_s > 0 else 0.0
    return Round(done, rate, peak, busy, closing, after, settled)


def judge_load(result: LoadResult) -> list[str]:
    """What went wrong, in words; empty when everything was delivered and nothing leaked."""
    problems = []
    baseline = result.baseline
    for number, round_ in enumerate(result.rounds, 1):
        found = round_.exchange.delivery.problems() + round_.closing.problems()
        found += _growth(baseline, round_.after)
        if not round_.settled:
            found.append("no quiescent point after the sockets closed")
        problems += [f"load round {number}: {problem}" for problem in found]
    first, last = result.rounds[0].after, result.rounds[-1].after
    if last.rss_mib - first.rss_mib > result.config.rss_tolerance_mib:
        problems.append(
            f"load: RSS grew by {last.rss_mib - first.rss_mib:.1f} MiB from the first round to the last "
            f"(tolerance {result.config.rss_tolerance_mib} MiB)"
        )
    return problems


def _growth(before: Sample, after: Sample) -> list[str]:
    found = [
        f"{name} {getattr(before, name)} -> {getattr(after, name)}"
        for name in ("tasks", "fds")
        if getattr(after, name) > getattr(before, name)
    ]
    found += [
        f"live {name} objects {before.objects[name]} -> {count}"
        for name, count in after.objects.items()
        if count > before.objects[name]
    ]
    if after.py_blocks > before.py_blocks * (1 + PY_BLOCKS_TOLERANCE):
        found.append(f"Python's allocated blocks {before.py_blocks} -> {after.py_blocks}")
    return found


def format_load(result: LoadResult) -> str:
    config, baseline = result.config, result.baseline
    lines = [
        f"load: {config.sockets} sockets x {config.messages} messages in one page, half mocked, half passed "
        f"through, text and binary in turn; {config.rounds} rounds",
        f"  baseline    RSS {baseline.rss_mib:.1f} MiB, tasks {baseline.tasks}, fds {baseline.fds}, "
        f"py blocks {baseline.py_blocks}, live objects {_objects(baseline)}",
    ]
    for number, round_ in enumerate(result.rounds, 1):
        d, busy, after = round_.exchange.delivery, round_.busy, round_.after
        lines += [
            f"  round {number}     delivered {d.delivered} of {d.expected}: lost {d.lost}, duplicated {d.duplicated}, "
            f"reordered {d.reordered}, corrupted {d.corrupted}, failed sockets {d.failed}",
            f"              {round_.messages_per_s:.0f} messages/s ({round_.exchange.total_s:.2f} s, all open after "
            f"{_seconds(round_.exchange.open_s)}); peak RSS {round_.peak_rss_mib:.1f} MiB; "
            f"{round_.closing.clean} of {round_.closing.closing} closed cleanly",
            f"              with every socket open: tasks {busy.tasks}, fds {busy.fds}, RSS {busy.rss_mib:.1f} MiB",
            f"              after closing: tasks {after.tasks}, fds {after.fds}, RSS {after.rss_mib:.1f} MiB "
            f"({after.rss_mib - baseline.rss_mib:+.1f}), py blocks {after.py_blocks} "
            f"({after.py_blocks - baseline.py_blocks:+}), live objects {_objects(after)}",
        ]
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _objects(sample: Sample) -> str:
    return ", ".join(f"{name} {count}" for name, count in sample.objects.items() if count) or "none"
