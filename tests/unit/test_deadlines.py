"""Deadlines sharing timers (meshlet.agent.deadlines), on a loop whose clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import pytest

from meshlet.agent.deadlines import Deadlines


class FakeLoop:
    """The two loop methods Deadlines uses; timers run when the test advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[[int], None], int]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[int], None], arg: int) -> None:
        self.timers.append((when, callback, arg))

    def advance(self, seconds: float) -> None:
        """Moves the clock, running each timer due meanwhile at its own time."""
        end = self.now + seconds
        due = sorted((t for t in self.timers if t[0] <= end), key=lambda t: t[0])
        self.timers = [t for t in self.timers if t[0] > end]
        for when, callback, arg in due:
            self.now = when
            callback(arg)
        self.now = end


def deadlines(resolution: float = 0.05) -> tuple[Deadlines, FakeLoop]:
    loop = FakeLoop()
    return Deadlines(resolution, cast(asyncio.AbstractEventLoop, loop)), loop


def test_a_deadline_fires_not_before_its_time_and_within_the_resolution_after() -> None:
    clock, loop = deadlines()
    fired: list[float] = []
    clock.call_later(1.01, lambda: fired.append(loop.now))
    loop.advance(1.0)
    assert fired == []
    loop.advance(0.1)
    assert len(fired) == 1 and 1000 + 1.01 <= fired[0] <= 1000 + 1.01 + 0.05


def test_a_cancelled_deadline_never_fires_and_cancel_is_idempotent() -> None:
    clock, loop = deadlines()
    fired: list[str] = []
    kept = clock.call_later(1.0, lambda: fired.append("kept"))
    dropped = clock.call_later(1.0, lambda: fired.append("dropped"))
    dropped.cancel()
    dropped.cancel()
    loop.advance(2.0)
    assert fired == ["kept"]
    kept.cancel()  # after firing: nothing happens


def test_deadlines_of_one_tick_share_one_timer() -> None:
    clock, loop = deadlines()
    for _ in range(100):
        clock.call_later(5.0, lambda: None).cancel()
    assert len(loop.timers) == 1


def test_a_callback_may_cancel_another_deadline_of_its_tick() -> None:
    clock, loop = deadlines()
    fired: list[str] = []
    first = clock.call_later(1.0, lambda: fired.append("first"))
    clock.call_later(1.0, lambda: (fired.append("second"), first.cancel()))
    loop.advance(1.0)
    assert fired in (["second"], ["first", "second"])


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    clock, loop = deadlines()
    fired: list[int] = []

    def fail() -> None:
        raise RuntimeError("boom")

    clock.call_later(1.0, fail)
    clock.call_later(1.0, lambda: fired.append(1))
    loop.advance(1.0)
    assert fired == [1]
    assert "deadline's callback failed" in caplog.text
