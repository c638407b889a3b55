"""Per-connection deadlines on few timers.

Every new connection arms a deadline (the stream open on the dialing agent, the connect to the
local server on the accepting one) that is almost always cancelled a millisecond later. A
``loop.call_later`` plus ``cancel`` costs about 2.5 µs on uvloop (a libuv timer started and
stopped), over 1% of an agent's CPU per new connection. :class:`Deadlines` instead rounds each
deadline *up* to a multiple of ``resolution`` and keeps the deadlines of one such tick in one
dict, served by one timer: arming and cancelling are a dict insert and delete, and a timer is
started only once per tick that has a deadline.

The price is precision: a deadline fires no earlier than asked, and at most ``resolution``
(50 ms by default) later, which for timeouts of seconds changes nothing a user can observe.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

__all__ = ["Deadline", "Deadlines"]

log = logging.getLogger("meshlet.agent")

_Tick = dict["Deadline", Callable[[], object]]


class Deadline:
    """One armed deadline; :meth:`cancel` it once it is no longer needed (idempotent)."""

    __slots__ = ("_tick",)

    def __init__(self, tick: _Tick) -> None:
        self._tick: _Tick | None = tick

    def cancel(self) -> None:
        tick = self._tick
        if tick is not None:
            self._tick = None
            tick.pop(self, None)


class Deadlines:
    """Calls ``callback()`` after ``delay`` seconds (late by up to ``resolution``) unless the
    returned :class:`Deadline` was cancelled. Used from the event loop's thread only; ``loop``
    defaults to the running loop at the first call."""

    def __init__(
        self, resolution: float = 0.05, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._resolution = resolution
        self._ticks: dict[int, _Tick] = {}
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the deadlines run on, looked up once: ``asyncio.get_running_loop()`` makes a
        ``getpid`` system call on Python 3.11, and the agent's per-connection code shares this
        lookup instead of making several such calls per connection."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def call_later(self, delay: float, callback: Callable[[], object]) -> Deadline:
        loop = self.loop
        number = math.ceil((loop.time() + delay) / self._resolution)
        tick = self._ticks.get(number)
        if tick is None:
            tick = self._ticks[number] = {}
            loop.call_at(number * self._resolution, self._fire, number)
        deadline = Deadline(tick)
        tick[deadline] = callback
        return deadline

    def _fire(self, number: int) -> None:
        tick = self._ticks.pop(number)
        # Popped one at a time: a callback may cancel another deadline of this tick.
        while tick:
            deadline, callback = tick.popitem()
            deadline._tick = None
            try:
                callback()
            except Exception:
                # One failing callback must not keep the others of its tick from running.
                log.exception("a deadline's callback failed")
