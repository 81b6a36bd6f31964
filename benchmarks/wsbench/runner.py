"""Runs cases on a driver and summarises them; the same code under trio and under asyncio.

The runner only awaits the driver's methods (:class:`Driver`, :class:`BenchPage`),
never an event loop's primitive, so the cdp_wsroute worker (trio) and the Playwright
worker (asyncio) share it. Each driver bounds its own waits and raises
:class:`ScenarioTimeout` when a run exceeds its deadline.
"""

from __future__ import annotations

import ctypes
import json
import signal
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from wsbench.measure import Probe, Usage
from wsbench.protocol import Ports
from wsbench.scenarios import SCENARIOS, Case, Impl, Mode, Scenario, cases

__all__ = [
    "BenchPage",
    "Driver",
    "Record",
    "ScenarioTimeout",
    "WorkerConfig",
    "die_with_parent",
    "run_cases",
]

JSONDict = dict[str, Any]
PAGE_TIMEOUT = 30.0  # seconds to open or reload the bench page


class ScenarioTimeout(Exception):
    """A run went past its deadline."""


class BenchPage(Protocol):
    """A browser page showing the bench page, as a driver exposes it."""

    async def call(self, function: str, arg: JSONDict, timeout: float) -> JSONDict:
        """``window.bench[function](arg)`` in the page; raises ScenarioTimeout after ``timeout`` s."""
        ...

    async def reload(self, timeout: float) -> None: ...

    async def close(self) -> None: ...


class Driver(Protocol):
    impl: Impl
    helper: str | None  # child processes whose CPU counts as the driver's (Playwright's node)

    async def open_page(self, mode: Mode) -> BenchPage:
        """A new page (in its own context) with ``mode``'s route, showing the bench page."""
        ...


@dataclass(frozen=True)
class WorkerConfig:
    """What the orchestrator tells a worker process (as JSON in a file)."""

    impls: list[Impl]
    scenarios: list[str]
    quick: bool
    runs: int
    http_port: int
    ws_port: int
    executable: str
    browser_args: list[str]
    out: str

    @property
    def ports(self) -> Ports:
        return Ports(http=self.http_port, ws=self.ws_port)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> WorkerConfig:
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class Run:
    result: JSONDict
    usage: Usage


@dataclass
class Record:
    """One case's summary: medians over its runs (peaks: the maximum), losses summed."""

    scenario: str
    title: str
    impl: Impl
    mode: Mode
    metric: str
    unit: str
    higher_is_better: bool
    args: dict[str, int | float | bool]
    value: float | None = None
    values: list[float | None] = field(default_factory=list)
    extras: dict[str, float | None] = field(default_factory=dict)
    cpu_s: float | None = None
    helper_cpu_s: float | None = None
    peak_rss_mib: float | None = None
    rss_growth_mib: float | None = None
    peak_is_lifetime: bool = False
    lost: int = 0
    reordered: int = 0
    stalled: bool = False
    error: str | None = None

    @classmethod
    def of(cls, case: Case, runs: list[Run], error: str | None) -> Record:
        scenario = case.scenario
        record = cls(
            scenario=scenario.name,
            title=scenario.title,
            impl=case.impl,
            mode=case.mode,
            metric=scenario.metric.key,
            unit=scenario.metric.unit,
            higher_is_better=scenario.metric.higher_is_better,
            args=case.args,
            error=error,
        )
        if not runs:
            return record
        record.values = [_number(run.result.get(scenario.metric.key)) for run in runs]
        record.value = _median(record.values)
        record.extras = {key: _median([_number(run.result.get(key)) for run in runs]) for key in scenario.extras}
        record.cpu_s = _median([run.usage.cpu_s for run in runs])
        record.helper_cpu_s = _median([run.usage.helper_cpu_s for run in runs])
        record.peak_rss_mib = max(run.usage.peak_rss_mib for run in runs)
        record.rss_growth_mib = max(run.usage.rss_growth_mib for run in runs)
        record.peak_is_lifetime = any(run.usage.peak_is_lifetime for run in runs)
        record.lost = sum(int(run.result.get("lost", 0)) for run in runs)
        record.reordered = sum(int(run.result.get("reordered", 0)) for run in runs)
        record.stalled = any(bool(run.result.get("stalled")) for run in runs)
        return record

    @property
    def ok(self) -> bool:
        return self.error is None and not self.stalled and self.lost == 0 and self.reordered == 0


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _socket_arg(case: Case, ports: Ports) -> JSONDict:
    scenario = case.scenario
    query = {key: case.args[key] for key in scenario.query}
    page_args = {key: value for key, value in case.args.items() if key not in scenario.query}
    return {**page_args, "url": ports.ws_url(scenario.behaviour, query), "idleMs": scenario.idle_ms}


async def _page_loads(page: BenchPage, case: Case, deadline: float) -> JSONDict:
    """Load the bench page ``loads`` times; the median of each timing."""
    timings = []
    for _ in range(int(case.args["loads"])):
        await page.reload(deadline)
        timings.append(await page.call(case.scenario.function, {}, deadline))
    medians: JSONDict = {key: _median(_number(t[key]) for t in timings) for key in ("load_ms", "dcl_ms")}
    return {**medians, "lost": 0, "reordered": 0, "stalled": False}


async def _run_once(page: BenchPage, case: Case, ports: Ports, helper: str | None) -> Run:
    deadline = case.scenario.deadline(case.quick)
    probe = Probe.start(helper)
    if case.scenario.function == "loadTiming":
        result = await _page_loads(page, case, deadline)
    else:
        result = await page.call(case.scenario.function, _socket_arg(case, ports), deadline)
    return Run(result, probe.stop())


class Pages:
    """One page per implementation and routing mode, reloaded for each case (a new page costs more).

    Reloading gives each case a fresh document (every socket of the last one is gone);
    a page whose case failed is closed and replaced, so no wedged page is reused.
    """

    def __init__(self) -> None:
        self._pages: dict[tuple[Impl, Mode], BenchPage] = {}

    async def fresh(self, driver: Driver, mode: Mode) -> BenchPage:
        page = self._pages.get((driver.impl, mode))
        if page is None:
            page = self._pages[driver.impl, mode] = await driver.open_page(mode)
        else:
            await page.reload(PAGE_TIMEOUT)
        return page

    async def discard(self, impl: Impl, mode: Mode) -> None:
        page = self._pages.pop((impl, mode), None)
        if page is not None:
            await page.close()

    async def close(self) -> None:
        for impl, mode in list(self._pages):
            await self.discard(impl, mode)


async def run_case(driver: Driver, case: Case, ports: Ports, pages: Pages, log: Callable[[str], None]) -> Record:
    """Every run of one case; an error or timeout ends the case (and its page), not the bench."""
    runs: list[Run] = []
    error: str | None = None
    try:
        page = await pages.fresh(driver, case.mode)
        for index in range(case.runs):
            run = await _run_once(page, case, ports, driver.helper)
            runs.append(run)
            log(_run_line(case, index, run))
    except ScenarioTimeout as exc:
        error = f"timeout: {exc}"
    except Exception as exc:  # a failing scenario is a result to report; the next one still runs
        error = f"{type(exc).__name__}: {exc}"
    if error is not None:
        log(f"{case.label}: {error}")
        await pages.discard(driver.impl, case.mode)
    return Record.of(case, runs, error)


def _run_line(case: Case, index: int, run: Run) -> str:
    metric = case.scenario.metric
    value = _number(run.result.get(metric.key))
    shown = "-" if value is None else f"{value:,.2f} {metric.unit}"
    checks = f"lost {run.result.get('lost')} reordered {run.result.get('reordered')}"
    if run.result.get("stalled"):
        checks += " STALLED"
    usage = run.usage
    return (
        f"{case.label} run {index + 1}/{case.runs}: {shown}  "
        f"wall {usage.wall_s:.1f} s  cpu {usage.cpu_s:.2f} s  peak {usage.peak_rss_mib:.0f} MiB  {checks}"
    )


async def run_cases(
    drivers: dict[Impl, Driver], config: WorkerConfig, log: Callable[[str], None], meta: JSONDict
) -> list[Record]:
    """Every selected case for every driver, scenario by scenario; results saved (with ``meta``) after each case."""
    scenarios = _by_names(config.scenarios)
    records: list[Record] = []
    pages = Pages()
    try:
        for scenario in scenarios:
            for impl, driver in drivers.items():
                for case in cases([scenario], impl, quick=config.quick, runs=config.runs):
                    records.append(await run_case(driver, case, config.ports, pages, log))
                    save_records(Path(config.out), records, meta)
    finally:
        await pages.close()
    return records


def _by_names(names: list[str]) -> list[Scenario]:
    return [scenario for scenario in SCENARIOS if scenario.name in names]


def save_records(path: Path, records: list[Record], meta: JSONDict) -> None:
    path.write_text(json.dumps({"meta": meta, "records": [asdict(r) for r in records]}, indent=1))


def die_with_parent() -> None:
    """Get SIGINT when the orchestrator dies, even by SIGKILL (Linux; elsewhere a no-op).

    SIGINT, because trio and asyncio both turn it into a clean unwinding: browsers closed,
    profiles removed.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGINT)


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
