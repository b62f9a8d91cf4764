"""Torch intra-op threads from the cores that are actually free, re-measured while extracting.

Label Studio, the backend and a seed share a few cores. Torch's default (one thread per core)
collapses when another process holds a core: its threads spin at every barrier, waiting for the
one that was preempted (docs/performance.md, extraction under contention). So before a forward
pass, at most every ``INTERVAL`` seconds, the governor reads how much CPU the machine spent
(``/proc/stat``) and how much of it was this process's own (``getrusage``) since the last look;
the rest is other processes, in cores, and torch gets the remaining cores (at least one).
Where ``/proc/stat`` is missing (not Linux) it keeps torch's default.
"""
from __future__ import annotations

import os
import resource
import time

import torch

#: Seconds between two measurements: shorter ones are dominated by scheduler noise.
INTERVAL = 0.5


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot; None without /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ThreadGovernor:
    """Keeps ``torch.set_num_threads`` at the free cores; ``fixed`` (a number) pins it instead."""

    def __init__(self, fixed: int | None = None) -> None:
        self.cores = available_cores()
        self.fixed = fixed
        self.threads = fixed or torch.get_num_threads()
        self._mark: tuple[float, float, float] | None = None
        if fixed:
            torch.set_num_threads(fixed)

    def adjust(self) -> int:
        """Re-measure if ``INTERVAL`` has passed; returns the threads torch uses now."""
        if self.fixed:
            return self.threads
        busy = _machine_busy_seconds()
        if busy is None:
            return self.threads
        now, own = time.monotonic(), _own_seconds()
        if self._mark is None:
            self._mark = (now, busy, own)
            return self.threads
        then, busy_then, own_then = self._mark
        if now - then < INTERVAL:
            return self.threads
        others = max(0.0, (busy - busy_then) - (own - own_then)) / (now - then)
        threads = min(self.cores, max(1, round(self.cores - others)))
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
        self._mark = (now, busy, own)
        return threads
