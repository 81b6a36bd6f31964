"""The soak run's churn phase: pages and contexts opened and closed for minutes, nothing may grow.

A cycle runs ``pages`` pages at once, spread over ``contexts`` contexts. Each page is opened,
routes its pass-through sockets (a page route; its context mocks the others with a context
route), loads the soak page over HTTP, exchanges messages on ``sockets_per_page`` sockets,
closes half of them and is closed with the rest still open. Every ``rotate_every`` cycles the
contexts are closed and replaced. After each cycle the driver waits for a quiescent point and
samples itself; a paced task records the peaks meanwhile.

Judged (see benchmarks/README.md): every message delivered once and in order, every page
closed in time; then, between the first ``window`` cycles after ``warmup`` and the last
``window`` cycles: no growth at all of trio tasks, fds, Chromium processes and live library
objects (the largest late value may not exceed the largest early one), median RSS up by at most
``rss_tolerance_mib``, median Python allocated blocks up by at most 5%; and no Chromium process
left once the browser closed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import trio
from soak_pages import Delivery, add_routes, close_sockets, exchange, mixed_kinds
from soak_probe import QUIESCE_DEADLINE, Sample, chromium_processes, quiesce, take_sample
from soak_server import Ports

import cdp_wsroute
from cdp_wsroute import Browser, BrowserContext, Page, launch

__all__ = ["ChurnConfig", "ChurnResult", "churn_json", "format_churn", "judge_churn", "run_churn"]

PAGE_DEADLINE = 90.0  # seconds one page may take, from new_page() to closed
CLOSE_DEADLINE = 15.0  # seconds to close a page, or all contexts
CYCLE_LIMIT = PAGE_DEADLINE + 2 * CLOSE_DEADLINE + QUIESCE_DEADLINE  # seconds one cycle can take at most
SAMPLE_EVERY = 0.5  # seconds between two samples of the peaks
PY_BLOCKS_TOLERANCE = 0.05  # trio prunes its deadline heap lazily: a few thousand blocks come and go


@dataclass(frozen=True)
class ChurnConfig:
    pages: int  # at once, in every cycle
    contexts: int
    sockets_per_page: int  # half mocked, half passed through
    messages: int  # per socket
    seconds: float  # churn at least this long
    rotate_every: int  # close and replace the contexts every this many cycles
    warmup: int  # cycles not judged: lazy imports, caches, Chromium's spare renderer
    window: int  # cycles compared: the first ones after the warm-up against the last ones
    rss_tolerance_mib: float

    @property
    def min_cycles(self) -> int:
        return self.warmup + 2 * self.window

    @property
    def budget_s(self) -> float:
        """A backstop for the whole phase: the churn, then a last cycle at its limits, and the browser."""
        return self.seconds + 2 * CYCLE_LIMIT + 120


FULL_CHURN = ChurnConfig(
    pages=50,
    contexts=5,
    sockets_per_page=4,
    messages=20,
    seconds=180.0,
    rotate_every=3,
    warmup=2,
    window=3,
    rss_tolerance_mib=8.0,
)
QUICK_CHURN = ChurnConfig(
    pages=6,
    contexts=2,
    sockets_per_page=4,
    messages=20,
    seconds=15.0,
    rotate_every=3,
    warmup=1,
    window=2,
    rss_tolerance_mib=8.0,
)


@dataclass(frozen=True)
class Cycle:
    number: int
    elapsed_s: float
    rotated: bool  # the contexts were replaced after this cycle's pages
    settled: bool
    sample: Sample  # at the quiescent point after the cycle


@dataclass
class Peaks:
    """The largest values seen while pages were busy."""

    tasks: int = 0
    fds: int = 0
    rss_mib: float = 0.0
    chromium: int = 0

    def update(self, sample: Sample) -> None:
        self.tasks = max(self.tasks, sample.tasks)
        self.fds = max(self.fds, sample.fds)
        self.rss_mib = max(self.rss_mib, sample.rss_mib)
        self.chromium = max(self.chromium, sample.chromium)


@dataclass
class ChurnResult:
    config: ChurnConfig
    baseline: Sample | None = None  # before the first page
    cycles: list[Cycle] = field(default_factory=list)
    pages: int = 0
    contexts: int = 0
    delivery: Delivery = field(default_factory=Delivery)
    faults: list[str] = field(default_factory=list)
    peaks: Peaks = field(default_factory=Peaks)
    chromium_after_close: int = 0  # processes left once the browser closed

    @property
    def elapsed_s(self) -> float:
        return self.cycles[-1].elapsed_s if self.cycles else 0.0


async def run_churn(ports: Ports, config: ChurnConfig) -> ChurnResult:
    result = ChurnResult(config)
    async with launch() as browser:
        pid = browser.process_id
        contexts = await open_contexts(browser, ports, config.contexts, result)
        result.baseline, _ = await quiesce(ports, pid)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample_peaks, result.peaks, pid)
            start = trio.current_time()
            while len(result.cycles) < config.min_cycles or trio.current_time() - start < config.seconds:
                await churn_cycle(contexts, ports, config, result)
                rotated = (len(result.cycles) + 1) % config.rotate_every == 0
                if rotated:
                    await close_contexts(contexts)
                    contexts = await open_contexts(browser, ports, config.contexts, result)
                sample, settled = await quiesce(ports, pid, steady_ceiling(result))
                elapsed = trio.current_time() - start
                result.cycles.append(Cycle(len(result.cycles), elapsed, rotated, settled, sample))
            nursery.cancel_scope.cancel(reason="the churn is over")
        await close_contexts(contexts)
    result.chromium_after_close = chromium_processes(pid) if pid is not None else 0
    return result


def steady_ceiling(result: ChurnResult) -> tuple[int, int, int] | None:
    """The largest (tasks, fds, processes) of the early window, once complete: later cycles come back under it."""
    config = result.config
    early = [cycle.sample.counts for cycle in result.cycles[config.warmup : config.warmup + config.window]]
    if len(early) < config.window:
        return None
    tasks, fds, chromium = zip(*early, strict=True)
    return (max(tasks), max(fds), max(chromium))


async def open_contexts(browser: Browser, ports: Ports, count: int, result: ChurnResult) -> list[BrowserContext]:
    """New contexts, each mocking the ``/mock/`` sockets of all its pages with a context route."""
    contexts = []
    for _ in range(count):
        context = await browser.new_context()
        await add_routes(context, ports, ["mock"])
        contexts.append(context)
    result.contexts += count
    return contexts


async def close_contexts(contexts: Sequence[BrowserContext]) -> None:
    with trio.fail_after(CLOSE_DEADLINE):
        for context in contexts:
            await context.close()


async def sample_peaks(peaks: Peaks, browser_pid: int | None) -> None:
    """Record the busiest moments: a paced loop, not a synchronisation."""
    while True:
        peaks.update(take_sample(browser_pid, census=False))
        await trio.sleep(SAMPLE_EVERY)


async def churn_cycle(
    contexts: Sequence[BrowserContext], ports: Ports, config: ChurnConfig, result: ChurnResult
) -> None:
    async with trio.open_nursery() as nursery:
        for slot in range(config.pages):
            nursery.start_soon(churn_page, contexts[slot % len(contexts)], ports, config, result)


async def churn_page(context: BrowserContext, ports: Ports, config: ChurnConfig, result: ChurnResult) -> None:
    """One page's life. A failure is recorded as a fault; the page is closed whatever happened."""
    result.pages += 1
    page: Page | None = None
    try:
        with trio.fail_after(PAGE_DEADLINE):
            page = await context.new_page()
            await add_routes(page, ports, ["pass"])
            await page.goto(ports.page_url)
            done = await exchange(page, ports, mixed_kinds(config.sockets_per_page), config.messages)
            result.delivery.merge(done.delivery)
            closing = await close_sockets(page, config.sockets_per_page // 2)
            result.faults += closing.problems()
    except (cdp_wsroute.Error, trio.TooSlowError) as exc:
        result.faults.append(f"{type(exc).__name__}: {exc}")
    finally:
        if page is not None:
            await close_page(page, result)


async def close_page(page: Page, result: ChurnResult) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_DEADLINE) as scope:
        await page.close()
    if scope.cancelled_caught:
        result.faults.append(f"closing a page took more than {CLOSE_DEADLINE:.0f} s")


@dataclass(frozen=True)
class Growth:
    """The last ``window`` cycles against the first ``window`` after the warm-up."""

    tasks: int  # max against max: must be <= 0
    fds: int
    chromium: int
    objects: dict[str, int]
    rss_mib: float  # median against median
    py_blocks: float
    py_blocks_allowed: float


def churn_growth(result: ChurnResult) -> Growth:
    config = result.config
    judged = result.cycles[config.warmup :]
    early = [cycle.sample for cycle in judged[: config.window]]
    late = [cycle.sample for cycle in judged[-config.window :]]

    def most(samples: list[Sample], name: str) -> int:
        return max(int(getattr(sample, name)) for sample in samples)

    def middle(samples: list[Sample], name: str) -> float:
        return statistics.median(float(getattr(sample, name)) for sample in samples)

    early_blocks = middle(early, "py_blocks")
    return Growth(
        tasks=most(late, "tasks") - most(early, "tasks"),
        fds=most(late, "fds") - most(early, "fds"),
        chromium=most(late, "chromium") - most(early, "chromium"),
        objects={
            name: max(s.objects[name] for s in late) - max(s.objects[name] for s in early) for name in late[0].objects
        },
        rss_mib=middle(late, "rss_mib") - middle(early, "rss_mib"),
        py_blocks=middle(late, "py_blocks") - early_blocks,
        py_blocks_allowed=early_blocks * PY_BLOCKS_TOLERANCE,
    )


def churn_json(result: ChurnResult) -> dict[str, Any]:
    return {**asdict(result), "elapsed_s": result.elapsed_s, "growth": asdict(churn_growth(result))}


def judge_churn(result: ChurnResult) -> list[str]:
    """What went wrong, in words; empty when everything was delivered and nothing grew."""
    problems = result.delivery.problems() + result.faults
    growth = churn_growth(result)
    for name in ("tasks", "fds", "chromium"):
        if getattr(growth, name) > 0:
            problems.append(f"{name} grew by {getattr(growth, name)}")
    problems += [f"live {name} objects grew by {count}" for name, count in growth.objects.items() if count > 0]
    if growth.rss_mib > result.config.rss_tolerance_mib:
        problems.append(f"RSS grew by {growth.rss_mib:.1f} MiB (tolerance {result.config.rss_tolerance_mib} MiB)")
    if growth.py_blocks > growth.py_blocks_allowed:
        problems.append(
            f"Python's allocated blocks grew by {growth.py_blocks:.0f} (tolerance {growth.py_blocks_allowed:.0f})"
        )
    unsettled = sum(not cycle.settled for cycle in result.cycles)
    if unsettled:
        problems.append(f"{unsettled} cycles reached no quiescent point")
    if result.chromium_after_close:
        problems.append(f"{result.chromium_after_close} Chromium processes outlived the browser")
    return [f"churn: {problem}" for problem in problems]


def format_churn(result: ChurnResult) -> str:
    config, d = result.config, result.delivery
    lines = [
        f"churn: {config.pages} pages at once in {config.contexts} contexts, {len(result.cycles)} cycles in "
        f"{result.elapsed_s:.0f} s: {result.pages} pages, {result.contexts} contexts, {d.sockets} sockets "
        f"({config.sockets_per_page} a page, half mocked, half passed through), {d.delivered} of {d.expected} "
        f"messages delivered, {len(result.faults)} faults",
        "  cycle  elapsed  tasks  fds  chromium  RSS MiB  py blocks  live objects",
    ]
    for cycle in result.cycles:
        s = cycle.sample
        notes = [
            note for note, on in (("warm-up", cycle.number < config.warmup), ("NOT SETTLED", not cycle.settled)) if on
        ]
        objects = ", ".join(f"{name} {count}" for name, count in s.objects.items() if count)
        lines.append(
            f"  {cycle.number:5}  {cycle.elapsed_s:6.0f}s  {s.tasks:5}  {s.fds:3}  {s.chromium:8}  "
            f"{s.rss_mib:7.1f}  {s.py_blocks:9}  {objects}  {' '.join(notes)}".rstrip()
        )
    peaks, growth = result.peaks, churn_growth(result)
    lines += [
        f"  peaks while busy: tasks {peaks.tasks}, fds {peaks.fds}, Chromium processes {peaks.chromium}, "
        f"RSS {peaks.rss_mib:.1f} MiB; Chromium processes after the browser closed: {result.chromium_after_close}",
        f"  growth, last {config.window} cycles against the {config.window} after the warm-up: "
        f"tasks {growth.tasks:+}, fds {growth.fds:+}, Chromium processes {growth.chromium:+}, "
        f"live objects {max(growth.objects.values()):+} (largest against largest: must be <= 0); "
        f"RSS {growth.rss_mib:+.1f} MiB (median: must be <= {config.rss_tolerance_mib}), "
        f"py blocks {growth.py_blocks:+.0f} (median: must be <= {growth.py_blocks_allowed:.0f})",
    ]
    return "\n".join(lines)
