"""Turns the workers' records into the JSON report and the printed tables.

Ratios say how many times *better* cdp_wsroute did: for a throughput, ours over
theirs; for a time, theirs over ours. Above 1 means cdp_wsroute won.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from wsbench.runner import Record
from wsbench.scenarios import SCENARIOS, Impl, Mode, Scenario

__all__ = ["build_report", "format_report", "problems"]

MiB = 1024 * 1024
ROUTED: tuple[Impl, ...] = ("cdp_wsroute", "playwright")
SOCKET_SCENARIOS = (("sockets_1", 1), ("sockets_200", 200), ("sockets_1000", 1000))
SIZE_SCENARIOS = (
    ("echo_text_20B", 20, "20 B"),
    ("echo_binary_64KiB", 64 * 1024, "64 KiB"),
    ("echo_binary_1MiB", MiB, "1 MiB"),
    ("echo_binary_16MiB", 16 * MiB, "16 MiB"),
)


class Results:
    """The records of one bench run, looked up by scenario, implementation and mode."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records = list(records)
        self._index = {(r.scenario, r.impl, r.mode): r for r in self.records}

    def get(self, scenario: str, impl: Impl, mode: Mode) -> Record | None:
        return self._index.get((scenario, impl, "none" if impl == "native" else mode))

    def value(self, scenario: str, impl: Impl, mode: Mode) -> float | None:
        record = self.get(scenario, impl, mode)
        return None if record is None else record.value

    def figure(self, scenario: str, impl: Impl, mode: Mode, key: str) -> float | None:
        record = self.get(scenario, impl, mode)
        return None if record is None else record.extras.get(key)


def advantage(ours: float | None, theirs: float | None, higher_is_better: bool) -> float | None:
    """How many times better ``ours`` is than ``theirs`` (None when either is missing or zero)."""
    if not ours or not theirs:
        return None
    return ours / theirs if higher_is_better else theirs / ours


def _rows(results: Results, scenarios: Sequence[Scenario]) -> list[dict[str, Any]]:
    rows = []
    for scenario in scenarios:
        for mode in scenario.modes:
            if not any(results.get(scenario.name, impl, mode) for impl in (*ROUTED, "native")):
                continue
            values: dict[str, float | None] = {
                impl: results.value(scenario.name, impl, mode) for impl in (*ROUTED, "native")
            }
            better = scenario.metric.higher_is_better
            row: dict[str, Any] = {"scenario": scenario.name, "mode": mode, "unit": scenario.metric.unit}
            row.update(values)
            row["vs_playwright"] = advantage(values["cdp_wsroute"], values["playwright"], better)
            row["vs_native"] = advantage(values["cdp_wsroute"], values["native"], better)
            rows.append(row)
    return rows


def _growth(results: Results) -> dict[str, Any]:
    """How cost changes with the number of sockets and with the message size, per routed impl and mode."""
    growth: dict[str, Any] = {"by_sockets": [], "by_size": []}
    for impl in ROUTED:
        for mode in ("mock", "pass"):
            sockets = []
            for name, count in SOCKET_SCENARIOS:
                record = results.get(name, impl, mode)
                if record is None or record.value is None:
                    continue
                growth_mib = record.rss_growth_mib
                sockets.append(
                    {
                        "sockets": count,
                        "ms_per_message": record.extras.get("per_message_ms"),
                        "open_ms_per_socket": _div(record.extras.get("open_ms"), count),
                        "rss_kib_per_socket": _div(None if growth_mib is None else growth_mib * 1024, count),
                    }
                )
            if sockets:
                growth["by_sockets"].append({"impl": impl, "mode": mode, "points": sockets})
            sizes = []
            for name, size, label in SIZE_SCENARIOS:
                per_message = results.figure(name, impl, mode, "per_message_ms")
                if per_message is None:
                    continue
                sizes.append(
                    {
                        "size": size,
                        "label": label,
                        "ms_per_message": per_message,
                        "ms_per_mib": per_message / (size / MiB),
                    }
                )
            if sizes:
                growth["by_size"].append({"impl": impl, "mode": mode, "points": sizes})
    return growth


def _div(value: float | None, by: int) -> float | None:
    return None if value is None else value / by


def problems(records: Iterable[Record]) -> list[str]:
    """One line per case with an error, a stall, or frames lost or out of order."""
    lines = []
    for record in records:
        if record.ok:
            continue
        what = [record.error.splitlines()[0]] if record.error else []  # the JSON has the whole error
        if record.lost:
            what.append(f"{record.lost} frames lost")
        if record.reordered:
            what.append(f"{record.reordered} frames out of order")
        if record.stalled:
            what.append("stalled (the page gave up waiting)")
        lines.append(f"{record.impl} {record.scenario} [{record.mode}]: {'; '.join(what)}")
    return lines


def build_report(records: Sequence[Record], meta: dict[str, Any]) -> dict[str, Any]:
    """Everything the JSON file holds."""
    results = Results(records)
    present = {r.scenario for r in records}
    scenarios = [s for s in SCENARIOS if s.name in present]
    return {
        "meta": meta,
        "scenarios": [
            {
                "name": s.name,
                "title": s.title,
                "metric": s.metric.key,
                "unit": s.metric.unit,
                "higher_is_better": s.metric.higher_is_better,
                "modes": list(s.modes),
                "impls": list(s.impls),
                "note": s.note,
            }
            for s in scenarios
        ],
        "rows": _rows(results, scenarios),
        "growth": _growth(results),
        "problems": problems(records),
        "records": [asdict(r) for r in records],
    }


# -- the printed form ------------------------------------------------------------------------


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _cost(record: Record | None) -> tuple[str, str]:
    """CPU ms (Playwright: Python+node), and peak RSS MiB with its growth during the case."""
    if record is None or record.cpu_s is None:
        return "-", "-"
    cpu = f"{record.cpu_s * 1000:.0f}"
    if record.helper_cpu_s is not None:
        cpu += f"+{record.helper_cpu_s * 1000:.0f}"
    return cpu, f"{record.peak_rss_mib or 0:.0f} +{record.rss_growth_mib or 0:.0f}"


def _frames(results: Results, scenario: str, mode: Mode) -> str:
    """'ok', or who lost or reordered frames / failed in this row."""
    bad = []
    shorts: tuple[tuple[Impl, str], ...] = (("cdp_wsroute", "cdp"), ("playwright", "pw"), ("native", "nat"))
    for impl, short in shorts:
        record = results.get(scenario, impl, mode)
        if record is None or record.ok:
            continue
        if record.error:
            bad.append(f"{short}: error")
        else:
            bad.append(f"{short}: {record.lost} lost {record.reordered} reord" + (" stall" if record.stalled else ""))
    return ", ".join(bad) or "ok"


def _table(header: Sequence[str], body: Sequence[Sequence[str]], left: int = 2) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in body)]


def _main_table(report: dict[str, Any], results: Results) -> list[str]:
    header = (
        "scenario", "mode", "unit", "cdp_wsroute", "playwright", "native", "vs pw", "vs native",
        "cpu ms cdp", "cpu ms pw+node", "MiB cdp", "MiB pw", "frames",
    )  # fmt: skip
    body = []
    for row in report["rows"]:
        scenario, mode = row["scenario"], row["mode"]
        cdp_cost = _cost(results.get(scenario, "cdp_wsroute", mode))
        pw_cost = _cost(results.get(scenario, "playwright", mode))
        body.append(
            (
                scenario, mode, row["unit"],
                _num(row["cdp_wsroute"]), _num(row["playwright"]), _num(row["native"]),
                _ratio(row["vs_playwright"]), _ratio(row["vs_native"]),
                cdp_cost[0], pw_cost[0], cdp_cost[1], pw_cost[1],
                _frames(results, scenario, mode),
            )
        )  # fmt: skip
    return _table(header, body, left=3)


def _details(results: Results, scenarios: Sequence[Scenario]) -> list[str]:
    """The secondary figures (p99, open time, MiB/s...), one line per scenario, mode and figure."""
    header = ("scenario", "mode", "figure", "cdp_wsroute", "playwright", "native")
    body = []
    for scenario in scenarios:
        for mode in scenario.modes:
            for key in scenario.extras:
                values = [results.figure(scenario.name, impl, mode, key) for impl in (*ROUTED, "native")]
                if any(v is not None for v in values):
                    body.append((scenario.name, mode, key, *(_num(v) for v in values)))
    return _table(header, body, left=3)


def _growth_tables(growth: dict[str, Any]) -> list[str]:
    lines = []
    by_sockets = growth["by_sockets"]
    if by_sockets:
        counts = sorted({p["sockets"] for entry in by_sockets for p in entry["points"]})
        header = ("impl", "mode", "figure", *(f"{n} socket{'s' if n > 1 else ''}" for n in counts))
        body = []
        for entry in by_sockets:
            points = {p["sockets"]: p for p in entry["points"]}
            for key, label in (
                ("ms_per_message", "ms/message"),
                ("open_ms_per_socket", "open ms/socket"),
                ("rss_kib_per_socket", "RSS KiB/socket"),
            ):
                cells = [_num(points[n][key]) if n in points else "-" for n in counts]
                body.append((entry["impl"], entry["mode"], label, *cells))
        lines += ["", "Cost growth with sockets (1 -> 1000):", *_table(header, body, left=3)]
    by_size = growth["by_size"]
    if by_size:
        labels = [label for _, _, label in SIZE_SCENARIOS]
        header = ("impl", "mode", "figure", *labels)
        body = []
        for entry in by_size:
            points = {p["label"]: p for p in entry["points"]}
            for key, label in (("ms_per_message", "ms/message"), ("ms_per_mib", "ms/MiB")):
                cells = [_num(points[size][key]) if size in points else "-" for size in labels]
                body.append((entry["impl"], entry["mode"], label, *cells))
        lines += ["", "Cost growth with message size (20 B -> 16 MiB, echo):", *_table(header, body, left=3)]
    return lines


def format_report(report: dict[str, Any], records: Sequence[Record]) -> str:
    """The tables a person reads: results with ratios, details, cost growth, notes, problems."""
    results = Results(records)
    scenarios = [s for s in SCENARIOS if any(r.scenario == s.name for r in records)]
    meta = report["meta"]
    lines = [
        f"cdp_wsroute {meta.get('cdp_wsroute_version', '?')} vs Playwright {meta.get('playwright_version', '-')} "
        f"vs native, {meta.get('browser_version') or meta.get('playwright_browser_version', '?')}; "
        f"{meta['mode']}, median of {meta['runs']} run(s)",
    ]
    for impls, load in meta.get("machine", {}).items():
        lines.append(
            f"while {impls} ran: machine CPU {load['busy']:.0%} busy, {load['steal']:.1%} stolen by the hypervisor"
        )
    if meta.get("playwright_error"):
        lines.append(f"PLAYWRIGHT NOT MEASURED: {meta['playwright_error'].splitlines()[0]} (the JSON has it all)")
    lines += ["", *_main_table(report, results), "", "Details:", *_details(results, scenarios)]
    lines += _growth_tables(report["growth"])
    notes = dict.fromkeys(s.note for s in scenarios if s.note)
    lines += [
        "",
        "vs pw / vs native: how many times better cdp_wsroute did (>1: better). cpu ms: the driver's Python"
        " CPU time (Playwright: + its node driver). MiB: the driver's peak RSS during the case, then how far"
        " it rose above the RSS at the start.",
        *notes,
    ]
    if report["problems"]:
        lines += ["", "PROBLEMS:", *(f"  {p}" for p in report["problems"])]
    return "\n".join(lines)
