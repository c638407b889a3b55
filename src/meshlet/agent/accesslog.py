"""The access log's delivery: lines batched per event-loop turn, one write per handler.

Theory of operation. Every connection ends with one line on the logger ``meshlet.access``
(:mod:`meshlet.agent.connections` builds it). Handing each line to ``logging`` on its own cost
an agent ~15 µs per connection, most of it the handler's write and flush (a system call per
line) and building the ``LogRecord``. Here a line becomes a record at once (so its timestamp is
when the connection ended) and waits in :data:`pending`; the first line of a loop turn
schedules :func:`flush` with ``call_soon``, which hands the whole batch to the handlers:

- a plain ``logging.StreamHandler`` or ``logging.FileHandler`` (what ``basicConfig`` and most
  configurations install) formats every record with its own formatter, as ``emit`` would, and
  writes them with one ``write`` and one ``flush``; the bytes are the same as record by record;
- any other handler (a ``QueueHandler``, pytest's ``caplog``, a user's) gets
  ``handle(record)`` for each record, in order.

Levels, filters and ``propagate`` are honoured as ``Logger.handle`` would. Nothing is lost on a
clean stop: :meth:`meshlet.agent.agent.Agent.stop` calls :func:`flush` last, and an ``atexit``
hook catches lines of connections that ended after that. Outside a running loop (a test calling
the record directly) a line is delivered at once.

Records are cloned from a prototype made once per process by ``Logger.makeRecord`` (the
thread and source fields never change), which skips ``LogRecord.__init__``'s ~3 µs of lookups;
only the time fields, the message and (Python 3.12+) the asyncio task's name are set per line.
A custom record factory (``logging.setLogRecordFactory``) is honoured: then every record is made
by it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time

__all__ = ["access_log", "flush", "log_line", "pending"]

access_log = logging.getLogger("meshlet.access")

#: Records waiting for :func:`flush` (in the order the connections ended).
pending: list[logging.LogRecord] = []
#: The loop a :func:`flush` is scheduled on: a loop that stops before running it must not keep
#: later loops from scheduling their own.
_scheduled_on: asyncio.AbstractEventLoop | None = None

#: What a record names as its source file (``Logger.info`` would look it up on the stack).
_FN = __file__
_PLAIN_HANDLERS = (logging.StreamHandler, logging.FileHandler)


def log_line(line: str) -> None:
    """Queue one access-log line (the caller checked that INFO is enabled)."""
    global _scheduled_on
    pending.append(_record(line))
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        flush()
        return
    if _scheduled_on is not loop:
        _scheduled_on = loop
        loop.call_soon(flush)


def flush() -> None:
    """Hand every pending record to the handlers (see the module documentation)."""
    global _scheduled_on
    _scheduled_on = None
    if not pending:
        return
    records = pending[:]
    pending.clear()
    if access_log.disabled:
        return
    if access_log.filters:
        records = [r for r in records if access_log.filter(r)]
    logger: logging.Logger | None = access_log
    while logger is not None and records:
        for handler in logger.handlers:
            if handler.level <= logging.INFO:
                _deliver(handler, records)
        if not logger.propagate:
            break
        logger = logger.parent


atexit.register(flush)


def _deliver(handler: logging.Handler, records: list[logging.LogRecord]) -> None:
    stream = getattr(handler, "stream", None)
    if type(handler) not in _PLAIN_HANDLERS or handler.filters or stream is None:
        for record in records:
            handler.handle(record)
        return
    assert isinstance(handler, logging.StreamHandler)
    terminator = handler.terminator
    handler.acquire()
    try:
        text = "".join([handler.format(record) + terminator for record in records])
        stream.write(text)
        handler.flush()
    except RecursionError:
        raise
    except Exception:
        handler.handleError(records[0])
    finally:
        handler.release()


_prototype: logging.LogRecord | None = None
_start = 0.0  # logging's start time, as the prototype's relativeCreated implies


def _forget_prototype() -> None:
    global _prototype
    _prototype = None  # a forked child's records name its own process


os.register_at_fork(after_in_child=_forget_prototype)


def _task_name() -> str | None:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return None
    return None if task is None else task.get_name()


def _record(line: str) -> logging.LogRecord:
    global _prototype, _start
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return access_log.makeRecord(access_log.name, logging.INFO, _FN, 0, line, (), None)
    if _prototype is None:
        _prototype = access_log.makeRecord(access_log.name, logging.INFO, _FN, 0, "", (), None)
        _start = _prototype.created - _prototype.relativeCreated / 1000
    record = logging.LogRecord.__new__(logging.LogRecord)
    record.__dict__.update(_prototype.__dict__)
    now = time.time()
    record.created = now
    record.msecs = int((now - int(now)) * 1000) + 0.0
    record.relativeCreated = (now - _start) * 1000
    record.msg = line
    if getattr(logging, "logAsyncioTasks", False):  # Python 3.12+
        record.__dict__["taskName"] = _task_name()  # the prototype's is the task that made it
    return record
