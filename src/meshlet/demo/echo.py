"""The demo echo server: answers every line with ``<version>: <line>``.

``python -m meshlet.demo.echo --service echo --dir <workload dir> --version v1`` listens on
``<workload dir>/server/echo`` with the SDK's :class:`~meshlet.sdk.server.UnixServer` and serves
until SIGTERM or SIGINT, then shuts down gracefully. The version prefix makes the canary split
visible to a user: through the mesh, about 90 % of the replies start with ``v1:``.

The workload directory is created by the node agent; the server waits for its ``server/``
directory (``--wait`` seconds) so that it can be started together with the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from meshlet.sdk.errors import ServerError
from meshlet.sdk.server import Connection, UnixServer

__all__ = ["main", "serve"]


async def serve(service: str, workload_dir: Path, version: str, wait: float) -> None:
    """Serves ``service`` until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not (workload_dir / "server").is_dir():
        if loop.time() > deadline:
            raise ServerError(
                f"{workload_dir / 'server'} did not appear within {wait}s: is the node agent "
                "running with this workload in its config?"
            )
        await asyncio.sleep(0.1)

    async def echo(conn: Connection) -> None:
        while line := await conn.reader.readline():
            conn.writer.write(f"{version}: ".encode() + line)
            await conn.writer.drain()

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = UnixServer(service, echo, meshlet_dir=workload_dir, shutdown_timeout=2.0)
    await server.start()
    print(f"echo {version}: listening on {server.path}", flush=True)
    await stop.wait()
    await server.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m meshlet.demo.echo", description=__doc__)
    parser.add_argument("--service", default="echo", help="service name (default: echo)")
    parser.add_argument("--dir", type=Path, required=True, help="the workload directory")
    parser.add_argument("--version", required=True, help="prefix of every reply line")
    parser.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for <dir>/server (default 30)"
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.service, args.dir, args.version, args.wait))
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
