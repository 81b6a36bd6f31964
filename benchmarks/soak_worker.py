"""One phase of the soak run, in a process of its own: ``python soak_worker.py JOB.json``.

Each phase gets a fresh process, so its memory baseline is its own: what the load phase left
in Python's allocator would otherwise hide growth in the churn. The job file names the phase,
its configuration, the servers' ports and where to write the outcome: the phase's result as
JSON, the problems found, and the summary to print. :func:`run_worker` runs a job from the
orchestrator (``soak.py``) and never lets the process outlive it.
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import trio
from soak_churn import ChurnConfig, churn_json, format_churn, judge_churn, run_churn
from soak_load import LoadConfig, format_load, judge_load, run_load
from soak_server import Ports

__all__ = ["Job", "PhaseReport", "run_worker"]

HERE = Path(__file__).resolve().parent
STOP_GRACE = 15.0  # seconds a worker gets to unwind after SIGINT (browser closed, profile removed)


@dataclass(frozen=True)
class Job:
    phase: str  # "load" or "churn"
    config: dict[str, Any]  # the phase's LoadConfig or ChurnConfig, as a dict
    ports: Ports
    out: str  # where the worker writes its PhaseReport
    budget_s: float  # the orchestrator stops the worker after this long

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Job:
        saved = json.loads(path.read_text())
        return cls(**{**saved, "ports": Ports(**saved["ports"])})


@dataclass(frozen=True)
class PhaseReport:
    result: dict[str, Any]  # the phase's result, as JSON
    problems: list[str]
    summary: str  # for people


async def run_phase(job: Job) -> PhaseReport:
    if job.phase == "load":
        load = await run_load(job.ports, LoadConfig(**job.config))
        return PhaseReport(asdict(load), judge_load(load), format_load(load))
    if job.phase == "churn":
        churn = await run_churn(job.ports, ChurnConfig(**job.config))
        return PhaseReport(churn_json(churn), judge_churn(churn), format_churn(churn))
    raise ValueError(f"no phase {job.phase!r}")


def run_worker(job: Job, job_path: Path) -> PhaseReport:
    """Run ``job`` in a worker process, within its budget; a worker that fails is a problem."""
    job.save(job_path)
    process = subprocess.Popen([sys.executable, str(HERE / "soak_worker.py"), str(job_path)])
    status: int | None = None
    try:
        status = process.wait(timeout=job.budget_s)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _stop(process)
    try:
        saved = json.loads(Path(job.out).read_text())
    except (OSError, ValueError):
        why = f"ran past its {job.budget_s:.0f} s budget" if status is None else f"failed (exit status {status})"
        return PhaseReport({}, [f"{job.phase}: the worker {why}; see its output above"], "")
    return PhaseReport(**saved)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # SIGINT first: trio unwinds on it, so launch() closes the browser and removes its profile.
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent() -> None:
    """Get SIGINT when the orchestrator dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)


def main(job_path: Path) -> None:
    die_with_parent()
    job = Job.load(job_path)
    report = trio.run(run_phase, job)
    Path(job.out).write_text(json.dumps(asdict(report), indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
