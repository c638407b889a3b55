"""The access log's delivery: every line reaches the configured handlers, in order, batched."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from meshlet.agent import accesslog
from meshlet.agent.connections import ConnectionRecord
from meshlet.agent.metrics import AgentMetrics
from meshlet.wire.handshake import ReplyCode

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


class _Collecting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access() -> Iterator[logging.Logger]:
    """``meshlet.access`` at INFO with no handlers of its own and no propagation."""
    logger = accesslog.access_log
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers.clear()
    try:
        yield logger
    finally:
        accesslog.flush()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]


def _end_connection(metrics: AgentMetrics, source: str) -> None:
    record = ConnectionRecord(metrics, "outbound", source, access_log=True)
    record.service = "echo.echo.demo"
    record.replied(ReplyCode.SERVICE_NOT_FOUND)


async def test_lines_of_one_loop_turn_reach_a_stream_handler_in_one_write_in_order(
    access: logging.Logger,
) -> None:
    stream = _CountingStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    access.addHandler(handler)
    metrics = AgentMetrics()
    for n in range(5):
        _end_connection(metrics, f"demo/client-{n}")
    assert stream.getvalue() == "", "delivered at the end of the loop turn"
    await asyncio.sleep(0)
    lines = stream.getvalue().splitlines()
    assert stream.writes == 1
    assert [json.loads(line.split(" meshlet.access ", 1)[1])["source"] for line in lines] == [
        f"demo/client-{n}" for n in range(5)
    ]
    assert all(" INFO meshlet.access {" in line for line in lines)


async def test_an_agent_with_access_log_off_writes_no_lines_but_still_counts(
    access: logging.Logger,
) -> None:
    collecting = _Collecting()
    access.addHandler(collecting)
    metrics = AgentMetrics()
    record = ConnectionRecord(metrics, "outbound", "demo/client", access_log=False)
    record.service_label = record.service = "echo.echo.demo"
    record.replied(ReplyCode.SERVICE_NOT_FOUND)
    await asyncio.sleep(0)
    assert collecting.records == []
    opened = metrics.opened_for("outbound", "echo.echo.demo", int(ReplyCode.SERVICE_NOT_FOUND))
    assert opened.value == 1


async def test_other_handlers_get_one_record_per_line_and_levels_are_honoured(
    access: logging.Logger,
) -> None:
    collecting = _Collecting()
    quiet = _Collecting()
    quiet.setLevel(logging.WARNING)
    access.addHandler(collecting)
    access.addHandler(quiet)
    metrics = AgentMetrics()
    _end_connection(metrics, "demo/a")
    _end_connection(metrics, "demo/b")
    await asyncio.sleep(0)
    sources = [json.loads(r.getMessage())["source"] for r in collecting.records]
    assert sources == ["demo/a", "demo/b"]
    assert all(r.name == "meshlet.access" and r.levelno == logging.INFO for r in collecting.records)
    assert quiet.records == []


async def test_flush_delivers_pending_lines_at_once(access: logging.Logger) -> None:
    """What Agent.stop does last: no line of a finished connection waits for another turn."""
    collecting = _Collecting()
    access.addHandler(collecting)
    _end_connection(AgentMetrics(), "demo/last")
    accesslog.flush()
    assert [json.loads(r.getMessage())["source"] for r in collecting.records] == ["demo/last"]


def test_outside_a_running_loop_a_line_is_delivered_at_once(access: logging.Logger) -> None:
    collecting = _Collecting()
    access.addHandler(collecting)
    _end_connection(AgentMetrics(), "demo/sync")
    assert len(collecting.records) == 1


async def test_propagation_reaches_the_parent_loggers_handlers(access: logging.Logger) -> None:
    parent = _Collecting()
    logging.getLogger("meshlet").addHandler(parent)
    access.propagate = True
    try:
        _end_connection(AgentMetrics(), "demo/up")
        await asyncio.sleep(0)
    finally:
        logging.getLogger("meshlet").removeHandler(parent)
    assert [json.loads(r.getMessage())["source"] for r in parent.records] == ["demo/up"]


def test_a_loop_that_stopped_before_flushing_does_not_hold_back_a_later_loop(
    access: logging.Logger,
) -> None:
    collecting = _Collecting()
    access.addHandler(collecting)

    def end_connection_and_stop() -> None:
        _end_connection(AgentMetrics(), "demo/first")
        first.stop()  # before the flush this schedules runs

    first = asyncio.new_event_loop()
    try:
        first.call_soon(end_connection_and_stop)
        first.run_forever()
    finally:
        first.close()
    assert collecting.records == []

    async def end_connection_and_wait(source: str) -> None:
        _end_connection(AgentMetrics(), source)
        await asyncio.sleep(0)

    asyncio.run(end_connection_and_wait("demo/second"))
    assert [json.loads(r.getMessage())["source"] for r in collecting.records] == [
        "demo/first",
        "demo/second",
    ]


def test_a_forked_child_s_records_name_the_child_process(access: logging.Logger) -> None:
    collecting = _Collecting()
    access.addHandler(collecting)
    _end_connection(AgentMetrics(), "demo/parent")  # the prototype is made in the parent
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        try:
            _end_connection(AgentMetrics(), "demo/child")
            os.write(write_end, str(collecting.records[-1].process).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        reported = pipe.read()
    os.waitpid(child, 0)
    assert collecting.records[0].process == os.getpid()
    assert reported == str(child)


async def test_a_record_names_the_task_that_ended_the_connection(access: logging.Logger) -> None:
    collecting = _Collecting()
    access.addHandler(collecting)

    async def end(source: str) -> logging.LogRecord:
        _end_connection(AgentMetrics(), source)
        return access.makeRecord(access.name, logging.INFO, "", 0, "", (), None)

    expected = [await asyncio.create_task(end(f"demo/{n}"), name=f"conn-{n}") for n in range(2)]
    await asyncio.sleep(0)
    # Python 3.12+ records carry taskName; before that neither record has it.
    assert [getattr(r, "taskName", None) for r in collecting.records] == [
        getattr(r, "taskName", None) for r in expected
    ]
