"""Where the time goes in the scenarios that miss their targets: Python's CPU or Chromium's.

    python benchmarks/profile.py                     # full counts (about 2 minutes on 2 cores)
    python benchmarks/profile.py --quick             # small counts (4 MiB calibrations), under 20 s
    python benchmarks/profile.py --only 'pingpong_*' --json /tmp/profile.json --html /tmp/profile-html
    python benchmarks/profile.py --only 'raw_*' --browser-arg=--enable-logging=stderr

Each scenario runs once for timing, then once more under pyinstrument (when it is
importable) for the Python profile, whose overhead stays out of the figures. Around
the timed run it measures the wall time, this process's CPU time (``time.process_time``),
the CPU time of every Chromium process (the browser and its descendants, from
``/proc/PID/stat``, split by ``--type``) and that of the bench server (the peer of
pass-through sockets). The page does the scenario's own timing (``performance.now()``),
as in ``bench.py``, whose page (``wsbench/bench.js``), server and route handlers it reuses.

The ``raw_*`` scenarios calibrate the Chromium primitives the tunnel is built on, through
the page's raw CDP session and a binding of our own (no route, no shim involved): a 20 B
binding round trip, a 16 MiB message's base64 (22.4 MB) handed from the page to Python
through a binding call, the same string handed from Python to the page as a
``Runtime.evaluate`` expression literal and as a ``Runtime.callFunctionOn`` argument, and
scenario (b) done with those two primitives alone (``raw_echo_64KiB``: the page's base64,
three messages per binding call, handed back unparsed as a literal), the floor of a
tunnel over CDP.
See benchmarks/README.md, "Where the time goes", for how to read the output.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import importlib
import json
import os
import platform
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio
from wsbench.machine import CpuTimes
from wsbench.mock import mock, pass_through
from wsbench.pagecall import IDLE_MS, RUN_TIMEOUT
from wsbench.pagecall import bench as _bench
from wsbench.protocol import Ports
from wsbench.server import ServerProcess

from cdp_wsroute import Browser, Page, launch

JSONDict = dict[str, Any]
KiB = 1024
MiB = 1024 * KiB
MB = 1_000_000  # protocol strings are counted in MB of characters, as in the README
PROFILE_INTERVAL = 0.001  # pyinstrument's sampling interval (s)
TOP_FUNCTIONS = 8
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")

# The calibration helpers, installed in a page without routes: the page calls our binding
# and waits for Python's answer (``reply``); ``sink`` takes what Python hands over.
CALIBRATION_JS = """({ binding, echoBinding }) => {
  const call = globalThis[binding];
  const callEcho = globalThis[echoBinding];
  const now = () => performance.now();
  let waiting = null;
  let echoed = null;
  const roundTrip = (payload) => new Promise((resolve) => { waiting = resolve; call(payload); });
  const summary = (times) => {
    const sorted = [...times].sort((a, b) => a - b);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    return { p50_ms: sorted[Math.floor(sorted.length / 2)], mean_ms: mean, ms: times.reduce((a, b) => a + b, 0) };
  };
  window.__profile = {
    reply(token, batch) {
      const resolve = waiting;
      waiting = null;
      if (resolve) resolve(batch);
      return Promise.resolve(true);
    },
    sink(value) { return value.length; },
    async roundTrips({ count, size }) {
      const payload = "x".repeat(size);
      const times = [];
      for (let i = 0; i < count; i++) {
        const start = now();
        await roundTrip(payload);
        times.push(now() - start);
      }
      return summary(times);
    },
    async upload({ count, size }) {
      // What the shim sends for a binary message of `size` bytes: its base64, a flat string.
      const payload = new Uint8Array(size).toBase64();
      const times = [];
      for (let i = 0; i < count; i++) {
        const start = now();
        await roundTrip(payload);
        times.push(now() - start);
      }
      return { ...summary(times), chars: payload.length };
    },
    // Scenario (b) with nothing but CDP: the page sends `count` binary messages at once, their
    // base64 `perCall` to a binding call (the shim's batches); Python hands each call's payload
    // straight back as a Runtime.evaluate literal; the page decodes and checks every message.
    echoBack(batch) {
      if (echoed) echoed(batch);
    },
    echoBurst({ count, size, perCall }) {
      return new Promise((resolve) => {
        const start = now();
        let received = 0;
        let reordered = 0;
        echoed = (batch) => {
          for (let i = 0; i < batch.length; i++) {
            const bytes = Uint8Array.fromBase64(batch[i]);
            if (new DataView(bytes.buffer).getUint32(0, true) !== received) reordered++;
            received++;
          }
          if (received < count) return;
          echoed = null;
          const ms = now() - start;
          resolve({ ms, per_s: (count / ms) * 1000, per_message_ms: ms / count, reordered, lost: 0 });
        };
        let batch = [];
        for (let seq = 0; seq < count; seq++) {
          const buffer = new ArrayBuffer(size);
          new DataView(buffer).setUint32(0, seq, true);
          batch.push(new Uint8Array(buffer).toBase64());
          if (batch.length === perCall || seq === count - 1) {
            callEcho(JSON.stringify(batch));
            batch = [];
          }
        }
      });
    },
  };
}"""


# -- CPU time of other processes ---------------------------------------------------------------


def _stat_fields(path: Path) -> list[str] | None:
    """The fields of a ``/proc/.../stat`` file after the command name (field 3 first), or None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _ticks(fields: list[str], children: bool) -> int:
    # utime, stime (fields 14, 15); cutime, cstime (16, 17): children reaped during the run.
    return sum(int(fields[i]) for i in ((11, 12, 13, 14) if children else (11, 12)))


def _process_type(pid: int) -> str:
    """``browser``, ``renderer`` or ``other`` (gpu-process, utility, zygote...), from the command line."""
    try:
        # Chromium rewrites its children's titles: their arguments are then separated by spaces.
        args = (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").split()
    except OSError:
        return "other"
    for arg in args:
        if arg.startswith(b"--type="):
            return "renderer" if arg == b"--type=renderer" else "other"
    return "browser"


@dataclass(frozen=True)
class TreeSample:
    """CPU ticks of a process tree: per process (with reaped children) and per thread."""

    processes: dict[int, tuple[str, int]]  # pid -> (type, ticks)
    threads: dict[tuple[int, int], tuple[str, str, int]]  # (pid, tid) -> (type, thread name, ticks)

    @classmethod
    def take(cls, root: int | None) -> TreeSample:
        if root is None:
            return cls({}, {})
        parents: dict[int, int] = {}
        stats: dict[int, list[str]] = {}
        for entry in _PROC.iterdir():
            if not entry.name.isdigit():
                continue
            fields = _stat_fields(entry / "stat")
            if fields is not None:
                stats[int(entry.name)] = fields
                parents[int(entry.name)] = int(fields[1])
        tree = {root} if root in stats else set()
        grown = True
        while grown:
            grown = False
            for pid, ppid in parents.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grown = True
        processes: dict[int, tuple[str, int]] = {}
        threads: dict[tuple[int, int], tuple[str, str, int]] = {}
        for pid in tree:
            kind = _process_type(pid)
            processes[pid] = (kind, _ticks(stats[pid], children=True))
            try:
                tasks = list((_PROC / str(pid) / "task").iterdir())
            except OSError:
                continue
            for task in tasks:
                fields = _stat_fields(task / "stat")
                try:
                    name = (task / "comm").read_text().strip()
                except OSError:
                    continue
                if fields is not None:
                    threads[(pid, int(task.name))] = (kind, name, _ticks(fields, children=False))
        return cls(processes, threads)

    def since(self, before: TreeSample) -> tuple[dict[str, float], dict[str, float]]:
        """Seconds of CPU since ``before``: by process type, and by ``type/thread name``."""
        by_type: dict[str, float] = {"browser": 0.0, "renderer": 0.0, "other": 0.0}
        for pid, (kind, ticks) in self.processes.items():
            earlier = before.processes.get(pid)
            by_type[kind] += (ticks - (earlier[1] if earlier else 0)) / _CLOCK_TICKS
        by_thread: dict[str, float] = {}
        for key, (kind, name, ticks) in self.threads.items():
            earlier_thread = before.threads.get(key)
            spent = (ticks - (earlier_thread[2] if earlier_thread else 0)) / _CLOCK_TICKS
            if spent > 0:
                name = "main" if name in ("chromium", "chrome") else name.rstrip("0123456789")
                label = f"{kind}/{name}"
                by_thread[label] = by_thread.get(label, 0.0) + spent
        return by_type, dict(sorted(by_thread.items(), key=lambda item: -item[1]))


def _process_ticks(pid: int | None) -> float:
    fields = _stat_fields(_PROC / str(pid) / "stat") if pid is not None else None
    return _ticks(fields, children=True) / _CLOCK_TICKS if fields is not None else 0.0


# -- the Python profile --------------------------------------------------------------------------


def _load_pyinstrument() -> Any | None:
    """pyinstrument, if it is installed (optional: the figures do not need it)."""
    try:
        return importlib.import_module("pyinstrument")
    except ImportError:
        return None


def _parse_frame(frame_info: str) -> tuple[str, str, str]:
    """(function, file, line) from one of pyinstrument's frame identifiers."""
    function, _, rest = frame_info.partition("\x01")[0].partition("\x00")
    path, _, line = rest.partition("\x00")
    return function, path, line


def _package(path: str) -> str:
    for name in ("cdp_wsroute", "trio_websocket", "wsproto", "trio", "json", "pyinstrument"):
        if f"/{name}/" in path:
            return name
    return "benchmarks" if "/benchmarks/" in path else "other"


def top_functions(session: Any, count: int) -> tuple[list[JSONDict], dict[str, float], float]:
    """The ``count`` functions with the most self time in a pyinstrument session.

    Each entry has the function, where it is, its self time (s) and its share of the
    samples. Also returns each package's share (a C function, like ``os.write``, counts
    for the package of its caller) and the total sample time.
    """
    self_time: dict[tuple[str, str, str], float] = {}
    packages: dict[str, float] = {}
    for stack, seconds in session.frame_records:
        key = _parse_frame(stack[-1])
        self_time[key] = self_time.get(key, 0.0) + seconds
        caller = next((_parse_frame(f)[1] for f in reversed(stack) if _parse_frame(f)[1].endswith(".py")), "")
        package = _package(caller)
        packages[package] = packages.get(package, 0.0) + seconds
    total = sum(self_time.values()) or 1.0
    ranked = sorted(self_time.items(), key=lambda item: -item[1])[:count]
    top = [
        {"function": function, "where": f"{_short_path(path)}:{line}", "self_s": seconds, "share": seconds / total}
        for (function, path, line), seconds in ranked
    ]
    shares = {name: seconds / total for name, seconds in sorted(packages.items(), key=lambda item: -item[1])}
    return top, shares, total


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "cdp_wsroute/", "benchmarks/", "lib/python"):
        index = path.rfind(marker)
        if index >= 0:
            return path[index:] if marker == "cdp_wsroute/" else path[index + len(marker) :]
    return path


# -- scenarios -----------------------------------------------------------------------------------


@dataclass
class Pages:
    """The pages the scenarios run on, and what the calibration needs."""

    ports: Ports
    mock: Page
    passed: Page
    plain: Page  # no route: native sockets and the raw CDP calibration
    binding: str = ""
    context_id: int = 0
    big_bytes: int = 0
    big: str = ""  # the base64 of a big message (16 MiB; --quick: 4 MiB), for the calibrations


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    target: str
    ops: Callable[[bool], int]  # operations per measured run (quick?)
    run: Callable[[Pages, int], Awaitable[JSONDict]]  # the figures of one run of so many ops
    figure: Callable[[JSONDict], str]
    per_mb: bool = False  # calibrations: CPU per MB of protocol string too


def _echo(size: int, per_call: int) -> Callable[[Pages, int], Awaitable[JSONDict]]:
    async def run(pages: Pages, ops: int) -> JSONDict:
        url = pages.ports.ws_url("echo")
        arg = {"url": url, "count": per_call, "size": size, "binary": True, "idleMs": IDLE_MS}
        results = [await _bench(pages.mock, "echo", arg) for _ in range(ops // per_call)]
        per_message = [r["per_message_ms"] for r in results]
        return {
            "ms_per_message": statistics.median(per_message),
            "per_s": statistics.median(r["per_s"] for r in results),
            "page_ms": sum(r["ms"] for r in results),
        }

    return run


def _pingpong(mode: str) -> Callable[[Pages, int], Awaitable[JSONDict]]:
    async def run(pages: Pages, ops: int) -> JSONDict:
        page = {"mock": pages.mock, "pass": pages.passed, "native": pages.plain}[mode]
        arg = {"url": pages.ports.ws_url("echo"), "count": ops, "size": 20, "idleMs": IDLE_MS}
        result = await _bench(page, "pingPong", arg)
        return {"p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"]}

    return run


async def _raw_round_trips(pages: Pages, ops: int) -> JSONDict:
    with trio.fail_after(RUN_TIMEOUT):
        result: JSONDict = await pages.plain.evaluate(
            "arg => window.__profile.roundTrips(arg)", {"count": ops, "size": 20}
        )
    return result


async def _raw_upload(pages: Pages, ops: int) -> JSONDict:
    with trio.fail_after(RUN_TIMEOUT):
        result: JSONDict = await pages.plain.evaluate(
            "arg => window.__profile.upload(arg)", {"count": ops, "size": pages.big_bytes}
        )
    result["ms_per_mb"] = result["mean_ms"] / (result["chars"] / MB)
    return result


async def _raw_echo(pages: Pages, ops: int) -> JSONDict:
    # Three 64 KiB messages per call, as the shim's calls of PART_CHARS (256 Ki) characters carry.
    arg = {"count": 100, "size": 64 * KiB, "perCall": 3}
    results = []
    for _ in range(ops // 100):
        with trio.fail_after(RUN_TIMEOUT):
            result: JSONDict = await pages.plain.evaluate("arg => window.__profile.echoBurst(arg)", arg)
        if result["reordered"]:
            raise RuntimeError(f"raw echo: messages reordered: {result}")
        results.append(result)
    return {
        "ms_per_message": statistics.median(r["per_message_ms"] for r in results),
        "per_s": statistics.median(r["per_s"] for r in results),
        "page_ms": sum(r["ms"] for r in results),
    }


def _raw_download(how: str) -> Callable[[Pages, int], Awaitable[JSONDict]]:
    async def run(pages: Pages, ops: int) -> JSONDict:
        session = pages.plain._session  # the page's raw CDP session (README: "Raw CDP")
        params: JSONDict
        if how == "literal":
            literal = json.dumps(pages.big)  # a JSON string is a JavaScript string literal
            method, params = (
                "Runtime.evaluate",
                {"expression": f"__profile.sink({literal})", "contextId": pages.context_id},
            )
        else:
            method = "Runtime.callFunctionOn"
            params = {
                "functionDeclaration": "function (value) { return __profile.sink(value); }",
                "executionContextId": pages.context_id,
                "arguments": [{"value": pages.big}],
            }
        times = []
        for _ in range(ops):
            start = time.perf_counter()
            with trio.fail_after(RUN_TIMEOUT):
                result = await session.send(method, params)
            times.append((time.perf_counter() - start) * 1000)
            if result.get("result", {}).get("value") != len(pages.big):
                raise RuntimeError(f"{method}: the page did not get the string: {result}")
        mean = statistics.fmean(times)
        return {"mean_ms": mean, "p50_ms": statistics.median(times), "ms_per_mb": mean / (len(pages.big) / MB)}

    return run


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.2f} ms"


SCENARIOS = [
    Scenario(
        "echo_16MiB_mock",
        "(a) mocked echo, 1 binary message of 16 MiB",
        "<= 1 s",
        lambda quick: 1 if quick else 5,
        _echo(16 * MiB, 1),
        lambda r: f"{_ms(r['ms_per_message'])} / message",
    ),
    Scenario(
        "echo_64KiB_mock",
        "(b) mocked echo, 100 binary messages of 64 KiB at once",
        "3x Playwright (450 msg/s)",
        lambda quick: 100 if quick else 1000,
        _echo(64 * KiB, 100),
        lambda r: f"{r['per_s']:,.0f} msg/s",
    ),
    Scenario(
        "pingpong_mock",
        "(c) mocked ping-pong, 20 B text, one at a time",
        "p50 <= 0.5 ms",
        lambda quick: 200 if quick else 3000,
        _pingpong("mock"),
        lambda r: f"p50 {r['p50_ms']:.2f} ms",
    ),
    Scenario(
        "pingpong_pass",
        "(c) pass-through ping-pong (trio-websocket echo server, 127.0.0.1)",
        "p50 <= 1 ms",
        lambda quick: 200 if quick else 3000,
        _pingpong("pass"),
        lambda r: f"p50 {r['p50_ms']:.2f} ms",
    ),
    Scenario(
        "pingpong_native",
        "reference: unrouted ping-pong to the same server",
        "",
        lambda quick: 200 if quick else 3000,
        _pingpong("native"),
        lambda r: f"p50 {r['p50_ms']:.2f} ms",
    ),
    Scenario(
        "raw_binding_rtt",
        "raw: binding call (20 B) -> Python -> Runtime.callFunctionOn (the tunnel's shape) -> page",
        "",
        lambda quick: 200 if quick else 3000,
        _raw_round_trips,
        lambda r: f"p50 {r['p50_ms']:.2f} ms",
    ),
    Scenario(
        "raw_echo_64KiB",
        "raw: (b) with nothing but CDP: 100 x 64 KiB at once, base64, 3 per binding call, "
        "handed back unparsed in Runtime.evaluate",
        "",
        lambda quick: 100 if quick else 1000,
        _raw_echo,
        lambda r: f"{r['per_s']:,.0f} msg/s",
    ),
    Scenario(
        "raw_binding_big",
        "raw: page -> Python, a 16 MiB message's base64 (22.4 MB; --quick: 4 MiB) as a binding payload",
        "",
        lambda quick: 1 if quick else 5,
        _raw_upload,
        lambda r: f"{r['ms_per_mb']:.1f} ms/MB",
        per_mb=True,
    ),
    Scenario(
        "raw_evaluate_big",
        "raw: Python -> page, the same string as a literal in a Runtime.evaluate expression",
        "",
        lambda quick: 1 if quick else 5,
        _raw_download("literal"),
        lambda r: f"{r['ms_per_mb']:.1f} ms/MB",
        per_mb=True,
    ),
    Scenario(
        "raw_arguments_big",
        "raw: Python -> page, the same string as a Runtime.callFunctionOn argument",
        "",
        lambda quick: 1 if quick else 5,
        _raw_download("arguments"),
        lambda r: f"{r['ms_per_mb']:.1f} ms/MB",
        per_mb=True,
    ),
]


# -- measuring -----------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    title: str
    target: str
    ops: int
    figure: str
    page: JSONDict
    wall_s: float
    python_cpu_s: float
    chromium_cpu_s: dict[str, float]
    peer_cpu_s: float
    chromium_threads: dict[str, float]
    mb_per_op: float | None = None  # protocol MB per operation, for the calibrations
    steal: float = 0.0  # the share of the machine's CPU time its hypervisor took during the run
    profiled_wall_s: float | None = None
    profiled_python_cpu_s: float | None = None
    profiled_samples_s: float | None = None  # what the profile's samples add up to
    profile_clock: str | None = None  # "cpu" (process_time) or "wall"
    task_steps: int | None = None  # trio task steps during the profiled run
    top: list[JSONDict] = field(default_factory=list)
    packages: dict[str, float] = field(default_factory=dict)  # share of the samples per package

    def per_op_ms(self, seconds: float) -> float:
        return seconds / self.ops * 1000

    @property
    def chromium_total_s(self) -> float:
        return sum(self.chromium_cpu_s.values())


async def measure(scenario: Scenario, pages: Pages, ops: int, browser_pid: int | None, peer_pid: int | None) -> Row:
    """Run ``scenario`` once for its figures; its CPU time, here and in Chromium and the peer."""
    tree = TreeSample.take(browser_pid)
    peer = _process_ticks(peer_pid)
    machine = CpuTimes.take()
    cpu, wall = time.process_time(), time.perf_counter()
    page = await scenario.run(pages, ops)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    load = CpuTimes.take().since(machine)
    peer = _process_ticks(peer_pid) - peer
    by_type, by_thread = TreeSample.take(browser_pid).since(tree)
    return Row(
        name=scenario.name,
        title=scenario.title,
        target=scenario.target,
        ops=ops,
        figure=scenario.figure(page),
        page=page,
        wall_s=wall,
        python_cpu_s=cpu,
        chromium_cpu_s=by_type,
        peer_cpu_s=peer,
        chromium_threads=by_thread,
        mb_per_op=len(pages.big) / MB if scenario.per_mb else None,
        steal=load.steal,
    )


async def profile(scenario: Scenario, pages: Pages, ops: int, row: Row, pyinstrument: Any) -> str:
    """Run ``scenario`` again under pyinstrument; its busiest functions go into ``row``.

    Returns pyinstrument's HTML rendering of the profile.

    The samples are weighted by CPU time (``time.process_time`` as pyinstrument's timer)
    where this pyinstrument allows it: on two cores, a write to the browser's pipe
    wakes a Chromium thread that often takes this process's core, and wall-clock
    samples would charge that wait to ``os.write``.
    """
    profiler = pyinstrument.Profiler(interval=PROFILE_INTERVAL, async_mode="disabled")
    sampler = _cpu_sampler()
    cpu, wall = time.process_time(), time.perf_counter()
    if sampler is not None:
        sampler.timer_func = time.process_time
        sampler.last_profile_time = time.process_time()  # else the first sample takes all since the last run
    steps = _StepCounter()
    trio.lowlevel.add_instrument(steps)
    profiler.start()
    try:
        await scenario.run(pages, ops)
    finally:
        session = profiler.stop()
        trio.lowlevel.remove_instrument(steps)
        if sampler is not None:
            sampler.timer_func = None
    row.task_steps = steps.count
    row.profiled_wall_s, row.profiled_python_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    row.top, row.packages, row.profiled_samples_s = top_functions(session, TOP_FUNCTIONS)
    row.profile_clock = "cpu" if sampler is not None else "wall"
    html: str = profiler.output_html()
    return html


class _StepCounter(trio.abc.Instrument):
    """Counts trio task steps (each a task switch), which is what trio's scheduling costs scale with."""

    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


def _cpu_sampler() -> Any | None:
    """pyinstrument's per-thread sampler, if it has the custom timer hook (its tests' fake clock)."""
    try:
        sampler = importlib.import_module("pyinstrument.stack_sampler").get_stack_sampler()
    except (ImportError, AttributeError):
        return None
    return sampler if hasattr(sampler, "timer_func") and hasattr(sampler, "last_profile_time") else None


async def open_pages(browser: Browser, ports: Ports, big_size: int) -> Pages:
    pages = Pages(ports, await browser.new_page(), await browser.new_page(), await browser.new_page())
    await pages.mock.route_web_socket(ports.ws_glob, mock)
    await pages.passed.route_web_socket(ports.ws_glob, pass_through)
    for page in (pages.mock, pages.passed, pages.plain):
        await page.goto(ports.page_url)
    await _install_calibration(pages, big_size)
    return pages


async def _install_calibration(pages: Pages, big_size: int) -> None:
    """Our own binding in the plain page; Python answers each call at once, as the tunnel does."""
    session = pages.plain._session
    pages.binding = "__profile_" + secrets.token_hex(8)
    echo_binding = "__profile_echo_" + secrets.token_hex(8)
    called = trio.Event()
    token = secrets.token_urlsafe(32)

    def on_call(params: JSONDict) -> None:
        if params.get("name") != pages.binding:
            return
        pages.context_id = int(params["executionContextId"])
        called.set()
        # The tunnel's answer, shape for shape: a token and a batch, answered once the page took it.
        session.connection.send_nowait(
            "Runtime.callFunctionOn",
            {
                "functionDeclaration": "function (t, b) { return __profile.reply(t, b); }",
                "executionContextId": pages.context_id,
                "arguments": [{"value": token}, {"value": [["t", 1, "0:xxxxxxxxxxxxxxxxxx"]]}],
                "awaitPromise": True,
                "silent": True,
            },
            session.session_id,
        )

    def on_echo(params: JSONDict) -> None:
        if params.get("name") != echo_binding:
            return
        # The payload is a JSON array of base64 strings: a JavaScript literal as it stands.
        session.connection.send_nowait(
            "Runtime.evaluate",
            {
                "expression": f"__profile.echoBack({params['payload']})",
                "contextId": int(params["executionContextId"]),
                "silent": True,
            },
            session.session_id,
        )

    session.on("Runtime.bindingCalled", on_call)
    session.on("Runtime.bindingCalled", on_echo)
    await session.send("Runtime.addBinding", {"name": pages.binding})
    await session.send("Runtime.addBinding", {"name": echo_binding})
    await pages.plain.evaluate(CALIBRATION_JS, {"binding": pages.binding, "echoBinding": echo_binding})
    await pages.plain.evaluate("() => window.__profile.roundTrips({ count: 3, size: 20 })")
    await called.wait()
    pages.big_bytes = big_size
    pages.big = base64.b64encode(bytes(big_size)).decode("ascii")


async def warm_up(pages: Pages) -> None:
    """A little of everything first, so first-use costs (imports, JIT, connections) stay out."""
    url = pages.ports.ws_url("echo")
    for page in (pages.mock, pages.passed, pages.plain):
        await _bench(page, "echo", {"url": url, "count": 20, "size": 64 * KiB, "binary": True, "idleMs": IDLE_MS})
        await _bench(page, "pingPong", {"url": url, "count": 50, "size": 20, "idleMs": IDLE_MS})
    await _bench(pages.mock, "echo", {"url": url, "count": 1, "size": 4 * MiB, "binary": True, "idleMs": IDLE_MS})
    await _raw_echo(pages, 100)


# -- report --------------------------------------------------------------------------------------


def _fmt_ms(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}" if value >= 0.01 else f"{value:.4f}"


def format_report(rows: Sequence[Row], meta: JSONDict) -> str:
    lines = [
        f"profile.py: {meta['browser']}, Python {meta['python']}, {meta['cpus']} cores, {meta['started']}, "
        f"load average {meta['load_before']} before, {meta['load_after']} after",
        "",
        "Per operation (a message, or a round trip), ms. Chromium = browser + renderer + other processes;",
        "peer = the bench server; Chromium share = Chromium's part of all the CPU time (Python + Chromium + peer);",
        "stolen = the share of the machine's CPU time its hypervisor took during the run (slows everything).",
        "",
        "| scenario | page figure | target | wall | Python CPU | Chromium CPU | browser | renderer | other | peer "
        "| Chromium share | stolen |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cpu = row.chromium_cpu_s
        total = row.chromium_total_s + row.python_cpu_s + row.peer_cpu_s
        cells = [
            row.name,
            row.figure,
            row.target or "-",
            _fmt_ms(row.per_op_ms(row.wall_s)),
            _fmt_ms(row.per_op_ms(row.python_cpu_s)),
            _fmt_ms(row.per_op_ms(row.chromium_total_s)),
            _fmt_ms(row.per_op_ms(cpu["browser"])),
            _fmt_ms(row.per_op_ms(cpu["renderer"])),
            _fmt_ms(row.per_op_ms(cpu["other"])),
            _fmt_ms(row.per_op_ms(row.peer_cpu_s)) if row.peer_cpu_s else "-",
            f"{row.chromium_total_s / total:.0%}" if total else "-",
            f"{row.steal:.1%}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    calibrations = [row for row in rows if row.mb_per_op]
    if calibrations:
        lines += ["", "Per MB of protocol string (the calibrations), ms/MB:", ""]
        lines += ["| scenario | wall | Python CPU | browser | renderer |", "|---|---|---|---|---|"]
        for row in calibrations:
            mb = (row.mb_per_op or 1) * row.ops
            cells = [
                row.name,
                f"{row.wall_s * 1000 / mb:.1f}",
                f"{row.python_cpu_s * 1000 / mb:.1f}",
                f"{row.chromium_cpu_s['browser'] * 1000 / mb:.1f}",
                f"{row.chromium_cpu_s['renderer'] * 1000 / mb:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Chromium threads with the most CPU per operation (ms):", ""]
    for row in rows:
        threads = ", ".join(f"{name} {_fmt_ms(row.per_op_ms(s))}" for name, s in list(row.chromium_threads.items())[:4])
        lines.append(f"- {row.name}: {threads or '-'}")
    if meta.get("profile_note"):
        lines += ["", meta["profile_note"]]
    for row in rows:
        if not row.top:
            continue
        assert row.profiled_wall_s is not None
        assert row.profiled_python_cpu_s is not None
        clock = "CPU" if row.profile_clock == "cpu" else "wall-clock"
        lines += [
            "",
            f"{row.name}: Python functions by self time ({clock} samples, {row.profiled_samples_s or 0:.2f} s; "
            f"the profiled run took {row.profiled_wall_s:.2f} s, {row.profiled_python_cpu_s:.2f} s CPU, "
            f"unprofiled {row.python_cpu_s:.2f} s CPU; {(row.task_steps or 0) / row.ops:.1f} trio task steps per op). "
            "us/op: its share of the unprofiled CPU per op.",
            "By package: " + ", ".join(f"{name} {share:.0%}" for name, share in row.packages.items()),
            "",
            "| function | where | share | us/op |",
            "|---|---|---|---|",
        ]
        for entry in row.top:
            per_op = entry["share"] * row.python_cpu_s / row.ops * 1e6
            lines.append(f"| {entry['function']} | {entry['where']} | {entry['share']:.1%} | {per_op:,.1f} |")
    return "\n".join(lines)


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: under 20 s")
    parser.add_argument("--json", type=Path, help="write the figures and profiles here")
    parser.add_argument("--html", type=Path, metavar="DIR", help="write pyinstrument's HTML profile per scenario here")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run only these scenarios (glob, repeatable)"
    )
    parser.add_argument(
        "--browser-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra Chromium flag, for experiments (repeatable)",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> tuple[list[Row], JSONDict, dict[str, str]]:
    """Every selected scenario, timed then profiled: the rows, the meta and the HTML profiles."""
    scenarios = [s for s in SCENARIOS if not args.only or any(fnmatch.fnmatch(s.name, p) for p in args.only)]
    pyinstrument = _load_pyinstrument()
    meta: JSONDict = {
        "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_before": _load_average(),
        "pyinstrument": getattr(pyinstrument, "__version__", None),
        "profile_note": None
        if pyinstrument is not None
        else "No Python profile: pyinstrument is not installed (pip install pyinstrument).",
    }
    rows: list[Row] = []
    htmls: dict[str, str] = {}
    with ServerProcess() as server:
        peer_pid = server._process.pid if server._process is not None else None
        async with launch(args=args.browser_arg) as browser:
            meta["browser"] = browser.version
            meta["browser_args"] = args.browser_arg
            pages = await open_pages(browser, server.ports, (4 if args.quick else 16) * MiB)
            await warm_up(pages)
            for scenario in scenarios:
                ops = scenario.ops(args.quick)
                print(f"profile: {scenario.name} ({ops} ops) ...", file=sys.stderr, flush=True)
                row = await measure(scenario, pages, ops, browser.process_id, peer_pid)
                if pyinstrument is not None:
                    htmls[scenario.name] = await profile(scenario, pages, ops, row, pyinstrument)
                rows.append(row)
    meta["load_after"] = _load_average()
    return rows, meta, htmls


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows, meta, htmls = trio.run(run, args)
    print(format_report(rows, meta))
    if args.html is not None:
        args.html.mkdir(parents=True, exist_ok=True)
        for name, html in htmls.items():
            (args.html / f"{name}.html").write_text(html)
        print(f"profile: wrote {len(htmls)} HTML profiles to {args.html}", file=sys.stderr)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(row) for row in rows]}, indent=1) + "\n")
        print(f"\nprofile: wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
