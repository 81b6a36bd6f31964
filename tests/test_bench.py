"""The benchmark suite runs: ``benchmarks/bench.py --quick`` for cdp_wsroute and native.

Playwright is not part of the test environment (``nox -s bench`` installs it), so it is left
out here. What is checked is that the bench works, not how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"
MEASURED = ("cdp_wsroute", "native")
# The scenarios the suite was asked for; the catalogue may grow but must keep these.
REQUIRED = {
    "echo_text_20B",
    "echo_binary_64KiB",
    "echo_binary_1MiB",
    "echo_binary_16MiB",
    "pingpong",
    "upload_1MiB",
    "upload_16MiB",
    "download_1MiB",
    "download_16MiB",
    "sockets_1",
    "sockets_200",
    "sockets_1000",
    "open_latency",
    "page_load",
    "blob_order",
    "memory_page_to_server",
    "memory_server_to_page",
}


def expected_cases(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(scenario, impl, mode) for every case the catalogue says cdp_wsroute and native run."""
    expected = set()
    for scenario in report["scenarios"]:
        for impl in set(scenario["impls"]) & set(MEASURED):
            for mode in ["none"] if impl == "native" else scenario["modes"]:
                expected.add((scenario["name"], impl, mode))
    return expected


@pytest.mark.timeout(120)
def test_quick_bench_measures_every_scenario_without_losing_a_frame(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--impl", ",".join(MEASURED), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert {scenario["name"] for scenario in report["scenarios"]} >= REQUIRED
    records = {(r["scenario"], r["impl"], r["mode"]): r for r in report["records"]}
    assert set(records) == expected_cases(report)
    for case, record in records.items():
        assert record["error"] is None, case
        assert (record["lost"], record["reordered"], record["stalled"]) == (0, 0, False), case
        assert record["value"] is not None, case
        assert record["cpu_s"] is not None, case
        assert record["peak_rss_mib"] > 0, case
    assert report["problems"] == []
    assert "vs native" in done.stdout  # the table was printed
    # How busy the machine was while the worker ran, and what the hypervisor took.
    load = report["meta"]["machine"]["cdp_wsroute+native"]
    assert 0 < load["busy"] <= 1
    assert 0 <= load["steal"] < 1
    assert "stolen by the hypervisor" in done.stdout
