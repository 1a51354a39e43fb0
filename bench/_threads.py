"""Where a process's CPU went, by thread, while one transfer ran.

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

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._first: dict[int, tuple[str, float]] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="thread-cpu", daemon=True)

    def __enter__(self) -> ThreadCpu:
        self._first = _task_times(self.pid)
        self._last = dict(self._first)
        self._sampler.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._done.set()
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
