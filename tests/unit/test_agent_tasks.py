"""The agent's long-running tasks say in the log when they end with an error."""

from __future__ import annotations

import asyncio
import logging

import pytest

from meshlet.agent.agent import report_task_failure


async def _run(coro_name: str, fail: bool) -> asyncio.Task[None]:
    async def body() -> None:
        if fail:
            raise TypeError("tuple object expected; got list")

    task = asyncio.get_running_loop().create_task(body(), name=coro_name)
    task.add_done_callback(report_task_failure)
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks run in the next loop turn
    return task


async def test_a_task_that_fails_is_logged_with_its_name_and_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="meshlet.agent"):
        await _run("tunnel", fail=True)
    [record] = caplog.records
    assert "'tunnel'" in record.getMessage()
    assert "tuple object expected; got list" in record.getMessage()
    assert record.exc_info is not None


async def test_tasks_that_end_normally_or_are_cancelled_log_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="meshlet.agent"):
        await _run("health", fail=False)
        task = asyncio.get_running_loop().create_task(asyncio.sleep(10), name="control plane")
        task.add_done_callback(report_task_failure)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    assert caplog.records == []
