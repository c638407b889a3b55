"""Child processes of ``meshlet up``: started in order, watched, stopped in reverse order.

Each child runs in its own session, so the terminal's Ctrl-C reaches only ``meshlet up``,
which then stops the children itself, most dependent first (demo servers, then the agent, then
the control plane): SIGTERM, a grace period, then SIGKILL. On Linux each child also asks the
kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so even a ``kill -9`` of
``meshlet up`` leaves nothing running.

A child's standard output and error go to a log file; when a child exits unexpectedly, the
error quotes the last lines of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from meshlet.cli.errors import UpError

__all__ = ["Child", "Supervisor", "check_ports_free", "log_tail"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Starts children, reports the first unexpected exit, stops all of them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    async def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def exited(self) -> Child | None:
        """The first child that is no longer running, if any."""
        for child in self.children:
            if child.process.returncode is not None:
                return child
        return None

    async def wait_any_exit(self) -> Child:
        """Returns the first child to exit (waits forever when there are none)."""
        waits = {asyncio.ensure_future(c.process.wait()): c for c in self.children}
        if not waits:
            await asyncio.Event().wait()
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return waits[next(iter(done))]

    async def stop_all(self, grace: float = 10.0) -> None:
        """SIGTERM each running child, newest first; SIGKILL it after ``grace`` seconds."""
        for child in reversed(self.children):
            if child.process.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
            try:
                await asyncio.wait_for(child.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()


def log_tail(path: Path, lines: int = 12) -> str:
    """The last ``lines`` lines of a log file ('' when it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def check_ports_free(ports: Sequence[tuple[str, str, int]]) -> None:
    """Raises :class:`UpError` naming every ``(what, host, port)`` that cannot be bound."""
    busy = []
    for what, host, port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # Servers set SO_REUSEADDR too, so a port in TIME_WAIT is not reported as busy.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                busy.append(f"{host}:{port} ({what}): {exc.strerror}")
    if busy:
        raise UpError(
            "cannot start the local mesh, ports unavailable: "
            + "; ".join(busy)
            + ". Is another `meshlet up` running? Stop it, or choose other ports with "
            "--cp-port, --tunnel-port, --admin-port and --upstream-port."
        )
