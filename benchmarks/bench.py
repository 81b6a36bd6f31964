"""The benchmark suite: cdp_wsroute side by side with Playwright and an unrouted native socket.

    nox -s bench                      # everything, median of 3 runs (about 15 minutes)
    nox -s bench -- --quick           # one short run of each scenario (under a minute)
    python benchmarks/bench.py --only 'echo_*' --impl cdp_wsroute,native --json /tmp/bench.json

It starts the bench server (page and WebSocket peers) in a process of its own, then
runs the cdp_wsroute and native cases (trio) and the Playwright cases (asyncio) in
one worker process each, one after the other, all on the same Chromium binary.
Then it prints the tables and writes the JSON report (see benchmarks/README.md).
Exit status 1 when a cdp_wsroute or native case failed, stalled, or lost or reordered
a frame; Playwright's results are reported, never judged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsbench.machine import CpuTimes
from wsbench.report import build_report, format_report
from wsbench.runner import Record, WorkerConfig
from wsbench.scenarios import IMPLS, SCENARIOS, Impl, Scenario, cases, select
from wsbench.server import ServerProcess

from cdp_wsroute._browsers import find_executable

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results.json"
# Playwright adds its own flags; cdp_wsroute's launch has these already (repeating them is harmless).
BROWSER_ARGS = [
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WORKERS: dict[str, tuple[Impl, ...]] = {
    "wsbench.worker_cdp": ("cdp_wsroute", "native"),
    "wsbench.worker_playwright": ("playwright",),
}
STARTUP_BUDGET = 120.0  # seconds for a worker to launch its browser
PAGE_BUDGET = 30.0  # and, per case, to open its page: on top of the runs' own deadlines


@dataclass
class WorkerOutcome:
    status: int | None  # None: killed at its deadline
    records: list[Record]
    meta: dict[str, Any]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run of each scenario: a sanity check")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these scenarios (glob, repeatable or comma-separated; see --list)",
    )
    parser.add_argument(
        "--impl",
        default=",".join(IMPLS),
        help=f"comma-separated implementations to measure (default: {','.join(IMPLS)})",
    )
    parser.add_argument("--runs", type=int, help="runs per case, the median is reported (default 3, --quick 1)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the report ({DEFAULT_JSON})")
    parser.add_argument("--executable", help="the Chromium binary (default: the one browsers.lock pins)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    args.only = [name for item in args.only for name in item.split(",") if name]
    args.impl = [name for name in args.impl.split(",") if name]
    for impl in args.impl:
        if impl not in IMPLS:
            parser.error(f"--impl {impl!r}: choose from {', '.join(IMPLS)}")
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def worker_budget(scenarios: Sequence[Scenario], impls: Sequence[Impl], quick: bool, runs: int) -> float:
    """A backstop for a whole worker: every run at its deadline, plus launching and pages."""
    total = STARTUP_BUDGET
    for impl in impls:
        for case in cases(scenarios, impl, quick=quick, runs=runs):
            total += PAGE_BUDGET + case.runs * case.scenario.deadline(quick)
    return total


def run_worker(module: str, config: WorkerConfig, budget: float) -> WorkerOutcome:
    """Run one worker process to the end or to ``budget`` seconds; it never outlives this call.

    The worker starts its own session, so stopping its process group also ends its
    helpers (Playwright's node driver); browsers end when their pipe to the driver closes.
    Should this process die first, the worker gets SIGINT from the kernel (``die_with_parent``).
    """
    config_path = Path(config.out).with_suffix(".config.json")
    config.save(config_path)
    process = subprocess.Popen([sys.executable, "-m", module, str(config_path)], cwd=HERE, start_new_session=True)
    status: int | None = None
    try:
        status = process.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        print(f"bench: {module} ran past its {budget:.0f} s budget; stopping it", file=sys.stderr)
    finally:
        _stop_group(process)
    return _read_outcome(Path(config.out), status)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    # SIGINT first: trio and asyncio both unwind cleanly on it (browsers closed, profiles removed).
    for sig, grace in ((signal.SIGINT, 15.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _read_outcome(path: Path, status: int | None) -> WorkerOutcome:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return WorkerOutcome(status, [], {})
    return WorkerOutcome(status, [Record(**r) for r in saved["records"]], saved.get("meta", {}))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:24} {scenario.title}")
        return 0
    try:
        scenarios = select(args.only)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    quick: bool = args.quick
    runs: int = args.runs or (1 if quick else 3)
    executable = find_executable(args.executable)
    meta: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "runs": runs,
        "impls": args.impl,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "executable": executable,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    records: list[Record] = []
    failed_workers: list[str] = []
    with ServerProcess() as server, tempfile.TemporaryDirectory(prefix="cdp-wsroute-bench-") as tmp:
        for module, module_impls in WORKERS.items():
            impls = [impl for impl in module_impls if impl in args.impl]
            if not impls:
                continue
            config = WorkerConfig(
                impls=impls,
                scenarios=[s.name for s in scenarios],
                quick=quick,
                runs=runs,
                http_port=server.ports.http,
                ws_port=server.ports.ws,
                executable=executable,
                browser_args=BROWSER_ARGS,
                out=str(Path(tmp) / f"{module}.json"),
            )
            print(f"bench: {', '.join(impls)} ...", file=sys.stderr, flush=True)
            before = CpuTimes.take()
            outcome = run_worker(module, config, worker_budget(scenarios, impls, quick, runs))
            load = CpuTimes.take().since(before)
            meta.setdefault("machine", {})["+".join(impls)] = {"busy": load.busy, "steal": load.steal}
            records += outcome.records
            if "playwright" in impls:
                error = outcome.meta.get("error")
                if error is None and outcome.status != 0:
                    error = f"the Playwright worker failed (status {outcome.status}); see its output above"
                meta["playwright_error"] = error
            elif outcome.status != 0:
                failed_workers.append(f"{module} exited with status {outcome.status}")
            meta.update({k: v for k, v in outcome.meta.items() if k != "error"})
    report = build_report(records, meta)
    report["problems"] += failed_workers
    print(format_report(report, records))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nbench: wrote {args.json}", file=sys.stderr)
    ours = [r for r in records if r.impl != "playwright" and not r.ok]
    return 1 if ours or failed_workers else 0


if __name__ == "__main__":
    sys.exit(main())
