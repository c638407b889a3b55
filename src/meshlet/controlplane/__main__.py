"""``python -m meshlet.controlplane --state-dir D [--listen HOST:PORT]``: run a control plane."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import timedelta

from meshlet.api.durations import parse_duration
from meshlet.api.errors import InvalidDuration
from meshlet.controlplane.errors import ControlPlaneError
from meshlet.controlplane.server import (
    DEFAULT_PORT,
    DEFAULT_TRUST_DOMAIN,
    RunningControlPlane,
    run_control_plane,
)
from meshlet.store import StoreError


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:{DEFAULT_PORT})"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def _duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except InvalidDuration as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _announce(running: RunningControlPlane) -> None:
    fresh = " (created now)" if running.admin_token_created else ""
    print(f"control plane listening on {running.url}", flush=True)
    print(f"admin token: {running.admin_token_file}{fresh}", flush=True)
    print(f"CA certificate: {running.ca_file}", flush=True)
    print(f"CLI settings: {running.client_config}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshlet.controlplane", description=__doc__)
    parser.add_argument("--state-dir", required=True, help="state directory (created if missing)")
    parser.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", DEFAULT_PORT),
        help=f"HOST:PORT to listen on (default 127.0.0.1:{DEFAULT_PORT}; port 0 picks one)",
    )
    parser.add_argument(
        "--advertise",
        action="append",
        default=[],
        help="host name or address agents use to reach this control plane (repeatable)",
    )
    parser.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    parser.add_argument(
        "--cert-validity",
        type=_duration,
        default=timedelta(hours=24),
        help="validity of signed workload certificates, Go duration syntax (default 24h)",
    )
    args = parser.parse_args(argv)
    host, port = args.listen
    try:
        run_control_plane(
            args.state_dir,
            host,
            port,
            args.advertise,
            args.trust_domain,
            args.cert_validity,
            ready=_announce,
        )
    except (ControlPlaneError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
