"""Readiness of the local servers, reported to the control plane.

Every ``healthInterval`` the agent probes each service served on this node (each ``Inbound`` of
its config) by connecting to its server socket or TCP port and closing at once: ready means
"accepts connections". A server therefore sees short connections that send nothing; the SDK's
server helper ignores them. The readiness map ``{"<ns>/<workload>": {"<service>": bool}}`` is
sent when it changes, and again every ``refresh`` seconds so that a control plane that restarted
(and lost nothing, but may have missed a report) converges; a failed report is retried on the
next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from meshlet.agent.local import LocalServices
from meshlet.nodeconfig import NodeConfig

__all__ = ["HealthReporter", "Readiness", "probe"]

log = logging.getLogger("meshlet.agent")

Readiness = dict[str, dict[str, bool]]


async def probe(target: Path | int, timeout: float) -> bool:
    """Whether a server accepts connections on the Unix socket ``target`` or TCP port."""
    try:
        async with asyncio.timeout(timeout):
            if isinstance(target, int):
                _, writer = await asyncio.open_connection("127.0.0.1", target)
            else:
                _, writer = await asyncio.open_unix_connection(str(target))
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class HealthReporter:
    def __init__(
        self,
        *,
        config: Callable[[], NodeConfig | None],
        local: LocalServices,
        report: Callable[[Mapping[str, Mapping[str, bool]]], Awaitable[None]],
        interval: float,
        refresh: float = 30.0,
    ) -> None:
        self._config = config
        self._local = local
        self._report = report
        self._interval = interval
        self._refresh = refresh
        self.readiness: Readiness = {}
        self._reported: Readiness | None = None
        self._reported_at = 0.0

    async def check(self) -> Readiness:
        config = self._config()
        inbound = config.inbound if config is not None else ()
        timeout = min(self._interval, 1.0)
        results = await asyncio.gather(
            *(probe(self._local.target(entry), timeout) for entry in inbound)
        )
        readiness: Readiness = {}
        for entry, ready in zip(inbound, results, strict=True):
            readiness.setdefault(entry.workload, {})[entry.service] = ready
        self.readiness = readiness
        return readiness

    async def run(self) -> None:
        while True:
            readiness = await self.check()
            stale = time.monotonic() - self._reported_at >= self._refresh
            if self._config() is not None and (readiness != self._reported or stale):
                try:
                    await self._report(readiness)
                except Exception as exc:  # the control plane may be down: retry next tick
                    log.debug("health report failed: %s", exc)
                else:
                    self._reported = readiness
                    self._reported_at = time.monotonic()
            await asyncio.sleep(self._interval)
