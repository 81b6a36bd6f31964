"""The scenario catalogue: what runs, with which sizes, in which routing modes, measured how.

Pure data. A :class:`Scenario` names a page function of ``bench.js`` and its
arguments (full and ``--quick``), the peer behaviour its socket talks to, and the
figure that ranks it. :func:`cases` expands the catalogue into the runs of one
implementation:

* ``cdp_wsroute`` and ``playwright`` run every scenario in each of its modes:
  ``mock`` (the route answers, no server), ``pass`` (``connect_to_server()`` to
  the real server) or ``idle`` (a route that matches no socket: page load);
* ``native`` runs each scenario once, unrouted, against the same real server.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["IMPLS", "SCENARIOS", "Case", "Impl", "Metric", "Mode", "Scenario", "cases", "select"]

Impl = Literal["cdp_wsroute", "playwright", "native"]
Mode = Literal["mock", "pass", "idle", "none"]
Args = Mapping[str, int | float | bool]

IMPLS: tuple[Impl, ...] = ("cdp_wsroute", "playwright", "native")
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CHROMIUM_SOCKET_LIMIT = 255  # network WebSockets one renderer may have open


@dataclass(frozen=True)
class Metric:
    key: str  # in the page function's result
    unit: str
    higher_is_better: bool


THROUGHPUT = Metric("per_s", "msg/s", higher_is_better=True)
TIME = Metric("ms", "ms", higher_is_better=False)
P50 = Metric("p50_ms", "ms p50", higher_is_better=False)
LOAD = Metric("load_ms", "ms", higher_is_better=False)
RATE = Metric("mib_per_s", "MiB/s", higher_is_better=True)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    function: str  # in window.bench
    behaviour: str  # the peer: a path of wsbench.protocol
    full: Args
    quick: Args
    metric: Metric
    extras: tuple[str, ...] = ()  # more result keys to report
    modes: tuple[Mode, ...] = ("mock", "pass")
    impls: tuple[Impl, ...] = IMPLS
    runs: int | None = None  # None: the command line's (3, or 1 with --quick)
    query: tuple[str, ...] = ()  # arguments the server needs, sent in the socket URL's query
    idle_ms: int = 20_000  # the page gives up after this long without progress
    deadline_s: float = 120.0  # and Python after this long per run, whatever happens
    note: str = ""  # printed under the table

    def args(self, quick: bool) -> dict[str, int | float | bool]:
        return dict(self.quick if quick else self.full)

    def deadline(self, quick: bool) -> float:
        """Seconds one run may take; a slow-reader scenario's scale with its size."""
        args = self.args(quick)
        if "rate" in args:
            return 2 * float(args["total"]) / float(args["rate"]) + 60
        return self.deadline_s


def _patience(size: int) -> tuple[int, float]:
    """(idle_ms, deadline_s) for messages of ``size``: Playwright takes over 10 s for one of 16 MiB."""
    return (60_000, 240.0) if size >= 16 * MiB else (Scenario.idle_ms, Scenario.deadline_s)


def _echo(name: str, title: str, size: int, binary: bool, full: int, quick: int) -> Scenario:
    return Scenario(
        name,
        title,
        "echo",
        "echo",
        full={"count": full, "size": size, "binary": binary},
        quick={"count": quick, "size": size, "binary": binary},
        metric=THROUGHPUT if size < MiB else TIME,
        extras=("per_message_ms", "mib_per_s"),
        idle_ms=_patience(size)[0],
        deadline_s=_patience(size)[1],
    )


def _one_way(name: str, title: str, function: str, behaviour: str, size: int, full: int, quick: int) -> Scenario:
    return Scenario(
        name,
        title,
        function,
        behaviour,
        full={"count": full, "size": size},
        quick={"count": quick, "size": size},
        metric=TIME,
        extras=("per_message_ms", "mib_per_s"),
        idle_ms=_patience(size)[0],
        deadline_s=_patience(size)[1],
    )


def _sockets(count: int, quick_echoes: int) -> Scenario:
    over_limit = count > CHROMIUM_SOCKET_LIMIT
    return Scenario(
        f"sockets_{count}",
        f"{count} socket{'s' if count > 1 else ''} x 10 echoes",
        "manySockets",
        "echo",
        full={"sockets": count, "echoes": 10, "size": 20},
        quick={"sockets": count, "echoes": quick_echoes, "size": 20},
        metric=TIME,
        extras=("open_ms", "per_message_ms"),
        impls=("cdp_wsroute", "playwright") if over_limit else IMPLS,
        note=(
            f"{count} sockets: no native figure: Chromium opens at most {CHROMIUM_SOCKET_LIMIT} network "
            "WebSockets per renderer (the rest fail). A routed socket is none, but Playwright's "
            "connect_to_server() opens the real socket from the page, so its pass-through fails too."
            if over_limit
            else ""
        ),
    )


def _slow_reader(name: str, title: str, function: str, behaviour: str, query: tuple[str, ...]) -> Scenario:
    # Below what a route carries (about 20 MiB/s of 1 MiB messages), so the reader is the bottleneck.
    rate = 12 * MiB
    return Scenario(
        name,
        title,
        function,
        behaviour,
        full={"total": GiB, "chunk": MiB, "highWater": 16 * MiB, "rate": rate},
        quick={"total": 16 * MiB, "chunk": MiB, "highWater": 16 * MiB, "rate": rate},
        metric=RATE,
        extras=("ms",),
        modes=("pass",),
        impls=("cdp_wsroute",),
        runs=1,
        query=query,
        idle_ms=30_000,
        note=f"memory_*: 1 GiB (16 MiB with --quick) in 1 MiB messages through a pass-through route, read at "
        f"{rate // MiB} MiB/s at the far end; what counts is the driver's peak RSS, which must stay bounded.",
    )


SCENARIOS: tuple[Scenario, ...] = (
    _echo("echo_text_20B", "echo 20 B text", 20, binary=False, full=2000, quick=200),
    _echo("echo_binary_64KiB", "echo 64 KiB binary", 64 * KiB, binary=True, full=100, quick=20),
    _echo("echo_binary_1MiB", "echo 1 MiB binary", MiB, binary=True, full=10, quick=3),
    _echo("echo_binary_16MiB", "echo 16 MiB binary", 16 * MiB, binary=True, full=1, quick=1),
    Scenario(
        "pingpong",
        "ping-pong 20 B",
        "pingPong",
        "echo",
        full={"count": 500, "size": 20},
        quick={"count": 50, "size": 20},
        metric=P50,
        extras=("p99_ms",),
    ),
    _one_way("upload_1MiB", "1 MiB page -> peer", "upload", "ack", MiB, full=10, quick=3),
    _one_way("upload_16MiB", "16 MiB page -> peer", "upload", "ack", 16 * MiB, full=1, quick=1),
    _one_way("download_1MiB", "1 MiB peer -> page", "download", "download", MiB, full=10, quick=3),
    _one_way("download_16MiB", "16 MiB peer -> page", "download", "download", 16 * MiB, full=1, quick=1),
    _sockets(1, quick_echoes=10),
    _sockets(200, quick_echoes=10),
    _sockets(1000, quick_echoes=2),
    Scenario(
        "open_latency",
        "new socket to open",
        "openLatency",
        "echo",
        full={"count": 100},
        quick={"count": 20},
        metric=P50,
        extras=("p99_ms",),
    ),
    Scenario(
        "page_load",
        "page load (native: no route)",
        "loadTiming",
        "echo",
        full={"loads": 20},
        quick={"loads": 3},
        metric=LOAD,
        extras=("dcl_ms",),
        modes=("idle",),
    ),
    Scenario(
        "blob_order",
        "Blob/text interleaved",
        "blobOrder",
        "echo",
        full={"count": 400, "size": KiB},
        quick={"count": 100, "size": KiB},
        metric=THROUGHPUT,
        extras=("per_message_ms",),
    ),
    _slow_reader("memory_page_to_server", "page -> slow server", "slowServerReader", "sink", query=("rate",)),
    _slow_reader("memory_server_to_page", "server -> slow page", "slowPageReader", "download", query=()),
)


@dataclass(frozen=True)
class Case:
    """One scenario in one mode for one implementation: the unit the runner measures."""

    scenario: Scenario
    impl: Impl
    mode: Mode
    runs: int
    quick: bool
    args: dict[str, int | float | bool] = field(compare=False)

    @property
    def label(self) -> str:
        return f"{self.impl} {self.scenario.name} [{self.mode}]"


def select(patterns: Sequence[str]) -> list[Scenario]:
    """The scenarios whose name matches one of the glob ``patterns`` (all when there are none).

    Raises:
        ValueError: a pattern that matches no scenario.
    """
    if not patterns:
        return list(SCENARIOS)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(s.name, pattern) for s in SCENARIOS):
            names = ", ".join(s.name for s in SCENARIOS)
            raise ValueError(f"--only {pattern!r} matches no scenario; they are: {names}")
    return [s for s in SCENARIOS if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]


def cases(scenarios: Sequence[Scenario], impl: Impl, *, quick: bool, runs: int) -> Iterator[Case]:
    """The cases ``impl`` runs, in catalogue order."""
    for scenario in scenarios:
        if impl not in scenario.impls:
            continue
        modes: tuple[Mode, ...] = ("none",) if impl == "native" else scenario.modes
        for mode in modes:
            yield Case(scenario, impl, mode, scenario.runs or runs, quick, scenario.args(quick))
