"""Functional checks of the paths without load: does each one relay correctly at all?

Run before trusting a path's figures (``python -m bench.floor --check``), above all after
changing the probe: a relay that drops a FIN or a byte is fast for the wrong reason. Per path:
a few keep-alive and new-connection requests with their bodies checked (:mod:`bench.loadgen`),
a request whose client half-closes its side first (the response must still arrive whole), and
the 64 MiB file through the path, its SHA-256 checked (the tunnel's backpressure).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.loadgen import Target, parse_head, run_bulk, run_requests
from bench.peers import BIG_SIZE, HOST, SMALL_BODY

#: Long enough for a few requests on every connection; the checks are not measurements.
SECONDS = 0.5
CONNECTIONS = 2


async def check_path(port: int, big_sha256: str) -> list[str]:
    """What went wrong on the path listening on ``port`` (nothing: an empty list)."""
    target = Target("tcp", HOST, str(port))
    failures = []
    for close in (False, True):
        figures = await run_requests(target, "/small", SMALL_BODY, CONNECTIONS, SECONDS, close)
        failures += _failures("Connection: close" if close else "keep-alive", figures)
    failures += await _half_close(port)
    figures = await run_bulk(target, "/big", big_sha256, BIG_SIZE, count=1)
    failures += _failures("64 MiB download", figures)
    return failures


def _failures(what: str, figures: dict[str, Any]) -> list[str]:
    if not figures["requests"]:
        return [f"{what}: no request completed"]
    if figures["errors"] or figures["bad"]:
        return [
            f"{what}: {figures['errors']} errors, {figures['bad']} bad responses "
            f"(first: {figures['first_error'] or 'a wrong body'})"
        ]
    return []


async def _half_close(port: int) -> list[str]:
    what = "client half-close"
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(b"GET /small HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        writer.write_eof()
        response = await asyncio.wait_for(reader.read(), 10.0)
    except (OSError, TimeoutError) as exc:
        return [f"{what}: {type(exc).__name__}: {exc}"]
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    try:
        status, _ = parse_head(head)
    except (ValueError, IndexError):  # not an HTTP response head at all
        status = 0
    if status != 200 or body != SMALL_BODY:
        return [f"{what}: unexpected response {response[:80]!r}"]
    return []
