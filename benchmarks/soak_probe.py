"""What the soak run watches in the driver process: trio tasks, fds, memory, live objects, Chromium.

Linux only (``/proc``). :func:`take_sample` reads everything at once; :func:`quiesce` waits for
a quiescent point first. Both must run inside ``trio.run`` (tasks are counted from its root).
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio
import trio_websocket
from soak_server import Ports, fetch_stats

from cdp_wsroute import BrowserContext, CDPSession, Frame, Page, WebSocket, WebSocketRoute

__all__ = [
    "Sample",
    "chromium_processes",
    "peak_rss_mib",
    "quiesce",
    "reset_peak_rss",
    "take_sample",
]

_PROC = Path("/proc")
_KIB_PER_MIB = 1024
_GONE = ("Z", "X")  # zombie or dead: exited, waiting to be reaped by its parent (Chromium reaps lazily)
# Chromium starts these on its own clock, whatever the pages do, so they are not counted: the
# on-device model service 180 s after launch (seen on an idle browser too, and with each of
# --disable-field-trial-config, --disable-features=LogOnDeviceMetricsOnStartup,
# OnDeviceModelPerformanceClass, OnDeviceModelPerformanceParams, OptimizationHints...).
SELF_STARTED = (b".OnDeviceModelService",)  # --utility-sub-type=on_device_model.mojom.OnDeviceModelService
# Objects that belong to one page, context or socket: at a quiescent point only the live ones remain.
WATCHED: tuple[type, ...] = (
    BrowserContext,
    Page,
    Frame,
    CDPSession,
    WebSocket,
    WebSocketRoute,
    trio_websocket.WebSocketConnection,  # routed sockets' upstream connections
)
QUIESCE_DEADLINE = 20.0  # seconds to reach a quiescent point
POLL = 0.05  # seconds between two reads of state that has no event to wait on
STEADY_READS = 6  # identical reads in a row (POLL apart) that make a quiescent point


@dataclass(frozen=True)
class Sample:
    """The driver's state at one moment."""

    tasks: int  # trio tasks alive, the root task included
    fds: int  # open file descriptors
    rss_mib: float  # resident memory
    py_blocks: int  # memory blocks Python's allocator has handed out (sys.getallocatedblocks)
    chromium: int  # the browser process and all its live descendants
    objects: dict[str, int]  # live instances of each WATCHED class

    @property
    def counts(self) -> tuple[int, int, int]:
        """What settles to an exact value at a quiescent point."""
        return (self.tasks, self.fds, self.chromium)


def take_sample(browser_pid: int | None, *, census: bool = True) -> Sample:
    """Everything at once; ``census=False`` skips the (slower) count of live objects."""
    return Sample(
        tasks=count_tasks(),
        fds=count_fds(),
        rss_mib=rss_mib(),
        py_blocks=sys.getallocatedblocks(),
        chromium=chromium_processes(browser_pid) if browser_pid is not None else 0,
        objects=count_objects() if census else {},
    )


async def quiesce(
    ports: Ports, browser_pid: int | None, ceiling: tuple[int, int, int] | None = None
) -> tuple[Sample, bool]:
    """Wait for a quiescent point, then sample it: (sample, whether it settled in time).

    Quiescent: the echo server holds no connection, and the driver's tasks and fds and the
    browser's process count read the same STEADY_READS times in a row and, given a ``ceiling``
    (the steady (tasks, fds, processes) seen before), are back under it: what is only slow to
    go (a renderer Chromium has not reaped yet) is not growth; what never goes shows in the
    sample after QUIESCE_DEADLINE. Garbage is collected and free memory handed back to the
    kernel before memory is read.
    """
    settled = False
    with trio.move_on_after(QUIESCE_DEADLINE):
        await _poll_until(lambda: _server_idle(ports))
        await _poll_until(_steady_counts(browser_pid))
        if ceiling is not None:
            await _poll_until(_counts_under(ceiling, browser_pid))
        settled = True
    release_free_memory()
    return take_sample(browser_pid), settled


async def _poll_until(predicate: Callable[[], Awaitable[bool]]) -> None:
    """Await ``predicate`` every POLL seconds until true: for state with no event (the caller bounds it)."""
    # Another process's connections, /proc and trio's task tree signal nothing: polling is all there is.
    while not await predicate():  # noqa: ASYNC110
        await trio.sleep(POLL)


async def _server_idle(ports: Ports) -> bool:
    return (await fetch_stats(ports.http))["connections"] == 0


def _steady_counts(browser_pid: int | None) -> Callable[[], Awaitable[bool]]:
    reads: list[tuple[int, int, int]] = []

    async def steady() -> bool:
        reads.append(take_sample(browser_pid, census=False).counts)
        del reads[:-STEADY_READS]
        return len(reads) == STEADY_READS and len(set(reads)) == 1

    return steady


def _counts_under(ceiling: tuple[int, int, int], browser_pid: int | None) -> Callable[[], Awaitable[bool]]:
    async def under() -> bool:
        counts = take_sample(browser_pid, census=False).counts
        return all(count <= most for count, most in zip(counts, ceiling, strict=True))

    return under


def count_tasks() -> int:
    """Every task of this ``trio.run``: the root task and, recursively, its nurseries' children."""
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def count_fds() -> int:
    """Open file descriptors of this process (the one listing them is not counted)."""
    return len(os.listdir(_PROC / "self" / "fd")) - 1


def count_objects() -> dict[str, int]:
    counts = {cls.__name__: 0 for cls in WATCHED}
    for obj in gc.get_objects():
        if type(obj) in WATCHED:
            counts[type(obj).__name__] += 1
    return counts


def rss_mib() -> float:
    return _status_kib("VmRSS") / _KIB_PER_MIB


def peak_rss_mib() -> float:
    """The peak resident memory since the last :func:`reset_peak_rss` (else since the start)."""
    return _status_kib("VmHWM") / _KIB_PER_MIB


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``); False if this kernel does not allow it."""
    try:
        (_PROC / "self" / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def release_free_memory() -> None:
    """Collect garbage, then ask glibc to give its free pages back to the kernel.

    Without ``malloc_trim`` the resident size after a burst stays at glibc's high-water mark
    even when every object is gone, which would read as a leak that is not one. (Python's own
    allocator keeps an arena while any object lives in it: what stays after this is that.)
    """
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: RSS is read as it is
        return
    libc.malloc_trim(0)


def chromium_processes(browser_pid: int) -> int:
    """The browser and every live process whose parent chain leads to it, but SELF_STARTED ones (0 if it is gone)."""
    children: dict[int, list[int]] = {}
    alive = False
    for pid, ppid in _parents():
        alive = alive or pid == browser_pid
        children.setdefault(ppid, []).append(pid)
    if not alive:
        return 0
    count = 0
    stack = [browser_pid]
    while stack:
        pid = stack.pop()
        count += not _self_started(pid)
        stack.extend(children.get(pid, ()))
    return count


def _self_started(pid: int) -> bool:
    try:
        command = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False  # it exited meanwhile
    return any(marker in command for marker in SELF_STARTED)


def _parents() -> list[tuple[int, int]]:
    """(pid, ppid) of every live process we can see; zombies are left out."""
    pairs = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited meanwhile
        # The command name (field 2) may hold spaces and parentheses: the fields after it start past the last ')'.
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if state not in _GONE:
            pairs.append((int(entry.name), int(ppid)))
    return pairs


def _status_kib(field: str) -> int:
    for line in (_PROC / "self" / "status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise RuntimeError(f"no {field} in /proc/self/status")
