"""Newline-delimited JSON streams with keepalives, ended cleanly on shutdown.

A watch stream waits on a source that may stay silent for a long time. Every ``interval``
seconds of silence the stream emits a keepalive line so that proxies and the client's read
timeout see a live connection. The pending ``anext()`` of the source is *not* cancelled on a
keepalive (cancelling it would finalize the source's async generator); it is kept and awaited
again. When ``closing`` is set (the server is shutting down) the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

__all__ = ["with_keepalive"]

_T = TypeVar("_T")


async def with_keepalive(
    source: AsyncIterator[_T], interval: float, closing: asyncio.Event
) -> AsyncIterator[_T | None]:
    """Items of ``source``, with ``None`` after every ``interval`` seconds of silence."""
    closed: asyncio.Future[Any] = asyncio.ensure_future(closing.wait())
    pending: asyncio.Future[Any] | None = None
    try:
        while not closing.is_set():
            nxt: asyncio.Future[Any] = pending or asyncio.ensure_future(anext(source))
            pending = nxt
            done, _ = await asyncio.wait(
                [nxt, closed], timeout=interval, return_when=asyncio.FIRST_COMPLETED
            )
            if nxt in done:
                pending = None
                try:
                    item: _T = nxt.result()
                except StopAsyncIteration:
                    return
                yield item
            elif not done:
                yield None
    finally:
        closed.cancel()
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
