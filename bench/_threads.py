"""Where a process's CPU went, by thread, while one transfer ran; and how busy the whole machine was.

The mirror names its worker threads in the kernel (`nvme_cache/threads.py`): `origin-request_3`,
`p2p-receive_0`, `sendfile_1`, `hash 3f2a...`. This samples `/proc/PID/task/*/stat` every 0.1 s,
so a thread that ends during the transfer (each fill's hasher does) counts up to its last
sample, and sums the CPU per name less its pool number. What the samples miss (a thread that came
and went between two, the last 0.1 s of one that ended) is the rest of the process's own total.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from types import TracebackType

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL = 0.1
_POOL_NUMBER = re.compile(r"(_\d+| [0-9a-f]+)$")  # "sendfile_3" -> "sendfile", "hash 3f2a" -> "hash"


def stat_cpu_seconds(stat: str) -> float:
    """utime + stime from the text of a /proc/.../stat file."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _task_times(pid: int) -> dict[int, tuple[str, float]]:
    times: dict[int, tuple[str, float]] = {}
    tasks = Path(f"/proc/{pid}/task")
    for task in tasks.iterdir() if tasks.exists() else ():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # ended between the listing and the read
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        times[int(task.name)] = (name, stat_cpu_seconds(stat))
    return times


class ThreadCpu:
    """`with ThreadCpu(pid) as threads: ...` then `threads.by_name()`: CPU-seconds per thread name."""

    def __init__(self, pid: int, sampled: bool = True) -> None:
        """`sampled=False`: read the threads only at the start and the end (cheaper, where many
        processes are watched at once); a thread that ended meanwhile is then not counted."""
        self.pid = pid
        self._sampled = sampled
        self._first: dict[int, tuple[str, float]] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="thread-cpu", daemon=True)

    def __enter__(self) -> ThreadCpu:
        self._first = _task_times(self.pid)
        self._last = dict(self._first)
        if self._sampled:
            self._sampler.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._done.set()
        if self._sampled:
            self._sampler.join()
        self._last.update(_task_times(self.pid))

    def _sample(self) -> None:
        while not self._done.wait(SAMPLE_INTERVAL):
            self._last.update(_task_times(self.pid))

    def by_name(self) -> dict[str, float]:
        """CPU-seconds spent in the block per thread name: the process's own thread is "main",
        threads that never named themselves "unnamed"."""
        main_name = self._last.get(self.pid, ("", 0.0))[0]
        spent: dict[str, float] = {}
        for tid, (name, cpu) in self._last.items():
            if tid == self.pid:
                label = "main"
            elif name == main_name:
                label = "unnamed"
            else:
                label = _POOL_NUMBER.sub("", name)
            spent[label] = spent.get(label, 0.0) + cpu - self._first.get(tid, (name, 0.0))[1]
        return {label: cpu for label, cpu in sorted(spent.items(), key=lambda item: -item[1]) if cpu > 0}


def _machine_times() -> list[int]:
    """The all-CPU line of /proc/stat in ticks: user nice system idle iowait irq softirq steal."""
    return [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


class MachineCpu:
    """`with MachineCpu() as machine: ...` then `machine.busy` (the share of every core's time spent
    running something) and `machine.steal` (the share the hypervisor gave to others). On a machine
    whose cores are all busy, a transfer's time is the sum of every process's CPU over the cores:
    the mirror, its origin and its client compete, and the figure says so."""

    def __init__(self) -> None:
        self._first: list[int] = []
        self.busy = 0.0
        self.steal = 0.0

    def __enter__(self) -> MachineCpu:
        self._first = _machine_times()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        spent = [after - before for after, before in zip(_machine_times(), self._first, strict=True)]
        total = sum(spent) or 1
        user, nice, system, _idle, _iowait, irq, softirq, steal = spent
        self.busy = (user + nice + system + irq + softirq) / total
        self.steal = steal / total
