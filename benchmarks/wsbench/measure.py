"""What a scenario cost the driver process: CPU time and peak resident memory.

CPU comes from ``getrusage`` deltas. The peak is Linux's ``VmHWM``, reset at the start of
each measurement by writing ``5`` to ``/proc/self/clear_refs``; where that is not possible
the peak covers the whole process life and :attr:`Usage.peak_is_lifetime` says so. For
Playwright, whose frames go through its Node.js driver, the CPU time of that helper
(our child processes of a given name) is measured too, from ``/proc/PID/stat``.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Probe", "Usage"]

_PROC = Path("/proc")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    rss_growth_mib: float  # the peak above the resident size at the start
    peak_is_lifetime: bool
    helper_cpu_s: float | None  # CPU time of the helper processes (Playwright's driver), if any


@dataclass(frozen=True)
class Probe:
    """A measurement in progress: ``probe = Probe.start()`` ... ``usage = probe.stop()``."""

    wall_s: float
    cpu_s: float
    rss_mib: float
    peak_reset: bool
    helper: str | None
    helper_cpu_s: float | None

    @classmethod
    def start(cls, helper: str | None = None) -> Probe:
        """Start measuring; ``helper`` names child processes (``comm`` prefix) whose CPU counts too."""
        peak_reset = _reset_peak()
        return cls(
            wall_s=time.perf_counter(),
            cpu_s=_cpu_s(),
            rss_mib=_status_mib("VmRSS"),
            peak_reset=peak_reset,
            helper=helper,
            helper_cpu_s=_children_cpu_s(helper) if helper else None,
        )

    def stop(self) -> Usage:
        peak = _status_mib("VmHWM")
        helper = _children_cpu_s(self.helper) if self.helper else None
        return Usage(
            wall_s=time.perf_counter() - self.wall_s,
            cpu_s=_cpu_s() - self.cpu_s,
            peak_rss_mib=peak,
            rss_growth_mib=max(0.0, peak - self.rss_mib),
            peak_is_lifetime=not self.peak_reset,
            helper_cpu_s=None if helper is None or self.helper_cpu_s is None else helper - self.helper_cpu_s,
        )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak() -> bool:
    try:
        (_PROC / "self" / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_mib(field: str) -> float:
    """A ``kB`` line of /proc/self/status in MiB; ``ru_maxrss`` stands in for VmHWM elsewhere."""
    try:
        lines = (_PROC / "self" / "status").read_text().splitlines()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in lines:
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * 1024 / _MIB
    return 0.0


def _children_cpu_s(name: str) -> float | None:
    """Total CPU seconds of our live child processes whose name starts with ``name``, None if none (or no /proc).

    A prefix, because Node.js renames its main thread, and so the process, to ``node-MainThread``.
    """
    me = os.getpid()
    total, found = 0.0, False
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name (field 2) may hold spaces: the fields after it start past the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if int(fields[1]) == me and comm.startswith(name):  # fields[1] is the ppid
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
            found = True
    return total if found else None
