"""How busy the whole machine was during a measurement, and how much CPU its hypervisor took.

On a virtual machine, *steal* is time a virtual CPU was ready to run but the host ran something
else: the guest's processes were slowed down without their CPU time showing it. The bench runs
on such a machine; a run during which the host stole a tenth of the time is not comparable with
one during which it stole nothing, so every report says how much was stolen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU time so far, all CPUs together, in clock ticks (``/proc/stat``)."""

    busy: int  # user, nice, system, irq, softirq
    idle: int  # idle, iowait
    steal: int

    @classmethod
    def take(cls) -> CpuTimes:
        """Now; all zero where ``/proc/stat`` cannot be read."""
        try:
            fields = [int(value) for value in _STAT.read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return cls(0, 0, 0)
        fields += [0] * (8 - len(fields))
        user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
        return cls(user + nice + system + irq + softirq, idle + iowait, steal)

    def since(self, before: CpuTimes) -> MachineLoad:
        busy, idle, steal = self.busy - before.busy, self.idle - before.idle, self.steal - before.steal
        total = busy + idle + steal
        if total <= 0:
            return MachineLoad(0.0, 0.0)
        return MachineLoad(busy / total, steal / total)


@dataclass(frozen=True)
class MachineLoad:
    """Shares of all the machine's CPU time over a measurement."""

    busy: float  # running anything in this machine
    steal: float  # taken by the hypervisor
