"""The soak run works and finds nothing: ``benchmarks/soak.py --quick``, once for the module.

The quick run routes 100 sockets x 20 messages in one page, twice, then churns 6 pages in 2
contexts for about 15 seconds; it takes about 20 seconds here. The full run is ``nox -s soak``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"
RUN_TIMEOUT = 100  # seconds: the quick run takes about 25


@dataclass(frozen=True)
class SoakRun:
    status: int
    output: str
    report: dict[str, Any]


@pytest.fixture(scope="module")
def quick_soak(tmp_path_factory: pytest.TempPathFactory) -> SoakRun:
    out = tmp_path_factory.mktemp("soak") / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SOAK), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert out.exists(), output
    return SoakRun(done.returncode, output, json.loads(out.read_text()))


@pytest.mark.timeout(150)
def test_every_message_is_delivered_once_and_in_order(quick_soak: SoakRun) -> None:
    load, churn = quick_soak.report["load"], quick_soak.report["churn"]
    deliveries = [round_["exchange"]["delivery"] for round_ in load["rounds"]] + [churn["delivery"]]
    for delivery in deliveries:
        assert delivery["delivered"] == delivery["expected"] > 0, quick_soak.output
        assert delivery["opened"] == delivery["sockets"] > 0, quick_soak.output
        for problem in ("failed", "lost", "duplicated", "reordered", "corrupted", "errors", "stalled"):
            assert delivery[problem] == 0, (problem, quick_soak.output)
    for round_ in load["rounds"]:
        closing = round_["closing"]
        assert closing["clean"] == closing["closing"] == 100, quick_soak.output
        assert closing["late"] == 0, quick_soak.output
    assert load["rounds"][0]["exchange"]["delivery"]["sockets"] == 100
    assert churn["faults"] == [], quick_soak.output
    assert len(churn["cycles"]) >= churn["config"]["warmup"] + 2 * churn["config"]["window"]


@pytest.mark.timeout(150)
def test_no_task_fd_or_chromium_process_is_left_behind(quick_soak: SoakRun) -> None:
    load, churn = quick_soak.report["load"], quick_soak.report["churn"]
    baseline = load["baseline"]
    for round_ in load["rounds"]:
        assert round_["settled"], quick_soak.output
        assert round_["busy"]["tasks"] > baseline["tasks"]  # the sockets were really open
        assert (round_["after"]["tasks"], round_["after"]["fds"]) == (baseline["tasks"], baseline["fds"])
        assert round_["after"]["objects"]["WebSocketRoute"] == 0
        assert round_["after"]["objects"]["WebSocketConnection"] == 0
    growth = churn["growth"]
    assert max(growth["tasks"], growth["fds"], growth["chromium"]) <= 0, quick_soak.output
    assert growth["objects"]["WebSocketRoute"] <= 0
    assert growth["objects"]["WebSocketConnection"] <= 0
    assert all(cycle["settled"] for cycle in churn["cycles"]), quick_soak.output
    assert churn["chromium_after_close"] == 0


@pytest.mark.timeout(150)
def test_nothing_leaks_and_the_run_passes(quick_soak: SoakRun) -> None:
    assert quick_soak.report["problems"] == [], quick_soak.output
    assert quick_soak.report["ok"]
    assert quick_soak.status == 0, quick_soak.output
