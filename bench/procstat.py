"""Process CPU and memory sampling shared by the benchmarks (psutil; whole process trees)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psutil


@dataclass
class TreeSample:
    """CPU seconds and peak RSS of a set of processes (and their children) over a window."""

    pids: list[int]
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    wall_start: float = 0.0
    wall_end: float = 0.0
    peak_rss: int = 0
    peak_rss_per_pid: dict[int, int] = field(default_factory=dict)
    #: CPU seconds of the first process's main thread (its event loop, for a Vigil node) at begin and end.
    main_start: float = 0.0
    main_end: float = 0.0

    def _procs(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        for pid in self.pids:
            try:
                p = psutil.Process(pid)
                procs.append(p)
                procs.extend(p.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return procs

    def _cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                continue
        return total

    def _main_thread_cpu(self) -> float:
        try:
            for thread in psutil.Process(self.pids[0]).threads():
                if thread.id == self.pids[0]:
                    return float(thread.user_time + thread.system_time)
        except (psutil.NoSuchProcess, IndexError):
            pass
        return 0.0

    def begin(self) -> None:
        self.cpu_start = self._cpu()
        self.main_start = self._main_thread_cpu()
        self.wall_start = time.monotonic()

    def poll_memory(self) -> None:
        total = 0
        for p in self._procs():
            try:
                rss = p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            total += rss
            self.peak_rss_per_pid[p.pid] = max(self.peak_rss_per_pid.get(p.pid, 0), rss)
        self.peak_rss = max(self.peak_rss, total)

    def end(self) -> None:
        self.cpu_end = self._cpu()
        self.main_end = self._main_thread_cpu()
        self.wall_end = time.monotonic()

    @property
    def cpu_percent(self) -> float:
        """Average CPU use over the window, in % of one core."""
        wall = self.wall_end - self.wall_start
        return 100.0 * (self.cpu_end - self.cpu_start) / wall if wall > 0 else 0.0

    @property
    def main_thread_cpu_percent(self) -> float:
        """The first process's main thread alone, in % of one core (the rest is its other threads and children)."""
        wall = self.wall_end - self.wall_start
        return 100.0 * (self.main_end - self.main_start) / wall if wall > 0 else 0.0


def measure(sample: TreeSample, seconds: float, poll: float = 0.5) -> TreeSample:
    sample.begin()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sample.poll_memory()
        time.sleep(poll)
    sample.end()
    return sample
