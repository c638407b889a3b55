"""Child processes of the suite (nginx, haproxy) and what /proc says about any process tree.

CPU time is read from ``/proc/<pid>/stat`` (utime + stime, in clock ticks) for a process and
all its live descendants, plus the cutime + cstime of the root (children it has already reaped),
so a multi-process agent is charged for its workers. A sample is a mapping pid -> ticks; the CPU
used between two samples is the sum of the per-pid differences, a pid that appeared in between
counting from zero. RSS is the sum of ``VmRSS`` over the same tree.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterable, Sequence
from contextlib import suppress
from pathlib import Path

from bench.errors import PeerFailed
from meshlet.testing.mesh import ChildProcess, MeshProcessError

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(child) for child in text.split())
    return found


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(_children(pid))
    return tree


CpuSample = dict[tuple[int, str], int]


def cpu_sample(roots: Iterable[int]) -> CpuSample:
    """Clock ticks used so far by each process of the trees under ``roots``."""
    sample: CpuSample = {}
    for root in roots:
        for pid in process_tree(root):
            fields = _stat_fields(pid)
            if fields is None:
                continue
            # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
            ticks = int(fields[11]) + int(fields[12])
            if pid == root:
                ticks += int(fields[13]) + int(fields[14])
            sample[(pid, fields[19])] = ticks  # keyed with starttime(22): pids get reused
    return sample


def user_system_ticks(pids: Iterable[int]) -> tuple[int, int]:
    """User and system clock ticks of ``pids`` themselves.

    Without descendants, unlike :func:`cpu_sample`: a child that exits during a load would take
    its ticks out of the difference. The processes this splits (the floor probe, the plain hop,
    HAProxy, the agents) do their work in the process itself.
    """
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            user += int(fields[11])  # utime(14), counted after the name
            system += int(fields[12])  # stime(15)
    return user, system


def cpu_seconds(before: CpuSample, after: CpuSample) -> float:
    return sum(ticks - before.get(key, 0) for key, ticks in after.items()) / _TICKS


def rss_bytes(roots: Iterable[int]) -> int:
    total = 0
    for root in roots:
        for pid in process_tree(root):
            with suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
    return total


def wait_for_port(host: str, port: int, timeout: float, process: Daemon | None = None) -> None:
    """Waits until ``host:port`` accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.check_alive()
        with suppress(OSError), socket.create_connection((host, port), timeout=1.0):
            return
        if time.monotonic() > deadline:
            raise PeerFailed(f"nothing listens on {host}:{port} after {timeout}s")
        time.sleep(0.05)


class Daemon(ChildProcess):
    """A peer program run in the foreground, logging to a file, stopped with SIGTERM/SIGKILL."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        super().__init__(name, log)
        self.argv = list(argv)

    def start(self) -> Daemon:
        self.spawn(self.argv)
        return self

    def check_alive(self) -> None:
        try:
            super().check_alive()
        except MeshProcessError as exc:
            raise PeerFailed(str(exc)) from None


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C: the ``ExitStack`` of a run stops the servers it
    started (by default SIGTERM kills Python at once and leaves them running)."""

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
