"""The soak run: WebSocket routing under load, and pages churned for minutes without a leak.

    nox -s soak                                  # both phases, churn for 3 minutes (about 4 in all)
    nox -s soak -- --quick                       # a short run of both (under a minute): CI's check
    python benchmarks/soak.py --minutes 10 --json /tmp/soak.json

**load** (``soak_load.py``): one page opens 1000 sockets at once (``--quick``: 100), half
mocked by an echo route in Python, half passed through (``connect_to_server()``) to a real echo
server; each sends 100 messages (``--quick``: 20), text and binary in turn, each carrying its
socket id and sequence number, and the page checks that every echo comes back once, in order,
on its own socket. Reported: throughput, the driver's peak RSS, and its RSS, trio tasks, fds
and live objects before the sockets open and after they all closed.

**churn** (``soak_churn.py``): 50 pages at once (``--quick``: 6) in 5 contexts (``--quick``:
2), each loading a page over HTTP, routing sockets (mocked by a context route, passed through
by a page route), exchanging messages and closing; the contexts are replaced every 3rd cycle.
After every cycle the driver samples itself at a quiescent point; nothing may grow.

The servers (HTTP and WebSocket echo) run in a process of their own (``soak_server.py``), and
each phase in another (``soak_worker.py``) with a browser of its own, so that each phase's
memory baseline is its own. Exit status 1 when a message was lost, duplicated, reordered or
corrupted, a page failed, or something grew; the rules are printed with the figures and
explained in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from soak_churn import FULL_CHURN, QUICK_CHURN, ChurnConfig
from soak_load import FULL_LOAD, QUICK_LOAD, LoadConfig
from soak_server import Ports, ServerProcess
from soak_worker import Job, PhaseReport, run_worker

import cdp_wsroute

PHASES = ("load", "churn")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 sockets x 20 messages; 6 pages churned for ~15 s")
    parser.add_argument("--minutes", type=float, help="how long to churn (default 3; --quick: 0.25)")
    parser.add_argument("--json", type=Path, help="also write the report there, as JSON")
    parser.add_argument("--only", choices=PHASES, help="run one phase")
    args = parser.parse_args(argv)
    if args.minutes is not None and args.minutes <= 0:
        parser.error("--minutes must be positive")
    return args


def plan(args: argparse.Namespace) -> list[tuple[str, LoadConfig | ChurnConfig]]:
    load = QUICK_LOAD if args.quick else FULL_LOAD
    churn = QUICK_CHURN if args.quick else FULL_CHURN
    if args.minutes is not None:
        churn = replace(churn, seconds=args.minutes * 60)
    phases: list[tuple[str, LoadConfig | ChurnConfig]] = [("load", load), ("churn", churn)]
    return [(name, config) for name, config in phases if args.only in (None, name)]


def run_phases(phases: list[tuple[str, LoadConfig | ChurnConfig]], ports: Ports, tmp: Path) -> dict[str, PhaseReport]:
    """Each phase in a worker process of its own, one after the other."""
    reports = {}
    for name, config in phases:
        log(f"{name}: {describe(config)} ...")
        job = Job(name, asdict(config), ports, str(tmp / f"{name}.json"), config.budget_s)
        reports[name] = run_worker(job, tmp / f"{name}.job.json")
    return reports


def describe(config: LoadConfig | ChurnConfig) -> str:
    if isinstance(config, LoadConfig):
        return f"{config.sockets} sockets x {config.messages} messages, {config.rounds} rounds"
    return f"{config.pages} pages in {config.contexts} contexts for {config.seconds:.0f} s"


def meta(quick: bool) -> dict[str, Any]:
    return {
        "mode": "quick" if quick else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cdp_wsroute": cdp_wsroute.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def log(line: str) -> None:
    print(f"soak: {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {"meta": meta(args.quick)}
    with ServerProcess() as server, tempfile.TemporaryDirectory(prefix="cdp-wsroute-soak-") as tmp:
        reports = run_phases(plan(args), server.ports, Path(tmp))
    problems: list[str] = []
    for name, phase in reports.items():
        if phase.summary:
            print(phase.summary, flush=True)
        report[name] = phase.result
        problems += phase.problems
    report |= {"problems": problems, "ok": not problems}
    print("soak: ok: nothing lost, nothing leaked" if not problems else "soak: FAILED\n  " + "\n  ".join(problems))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        log(f"wrote {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
