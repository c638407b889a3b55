"""Certificates the agent holds: its node identity and the meshlet identity of each local workload.

For each identity the agent keeps one :class:`ssl.SSLContext` for its whole life: the node's is a
server context (the tunnel listener), a meshlet's is a client context (the tunnel pool presents
it when dialing for that meshlet's clients). One task per identity:

1. at start, loads the key and certificate persisted in ``<state-dir>/certs/`` if they are still
   valid, so a restarted agent serves even while the control plane is down;
2. otherwise, and then again at half of the certificate's lifetime, makes a new key and CSR and
   has the control plane sign it (retrying with exponential backoff while it is unreachable);
3. writes the files (key mode 0600) and reloads them into the *same* context: new handshakes use
   the new certificate, established connections keep theirs and are never dropped.

Keys and CSRs are made, and certificates read, in a short-lived child process
(:mod:`meshlet.pki.isolated`): the agent's own process never loads ``cryptography``. The
certificate file stays the only record of its identity and validity: it is read again (by a
child) when the agent starts, rather than trusted from a second file that could disagree.

File names: ``<state-dir>/certs/<identity path with '/' as '_'>.{crt,key}``, e.g.
``node_node-a.crt``, ``ns_demo_meshlet_echo.key``; the CA is ``<state-dir>/certs/ca.crt``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from meshlet.agent.errors import CertificateError
from meshlet.pki import PkiError, mtls_client_context, mtls_server_context
from meshlet.pki.isolated import inspect_certificate, new_key_and_csr
from meshlet.pki.protocol import CertificateInfo

__all__ = ["Certificates", "Signer"]

log = logging.getLogger("meshlet.agent")

#: ``(csr_pem, identity) -> (certificate_pem, ca_pem)``
Signer = Callable[[bytes, str], Awaitable[tuple[bytes, bytes]]]

_RETRY_MIN = 0.5
_RETRY_MAX = 30.0
# Credentials children run at most this many at a time: a node hosting many meshlets would
# otherwise start one Python per identity at once (each about 30 MB for its 0.1 s).
_CHILDREN = 2


class _Held:
    __slots__ = ("context", "expires", "not_after", "not_before")

    def __init__(self, context: ssl.SSLContext, not_before: datetime, not_after: datetime) -> None:
        self.context = context
        self.not_before = not_before
        self.not_after = not_after
        #: ``not_after`` as a POSIX timestamp: :meth:`Certificates.has` runs for every new
        #: connection, and ``time.time()`` costs a quarter of ``datetime.now(UTC)``.
        self.expires = not_after.timestamp()

    @property
    def renew_at(self) -> datetime:
        return self.not_before + (self.not_after - self.not_before) / 2


class Certificates:
    def __init__(self, state_dir: Path, signer: Signer) -> None:
        self._dir = state_dir / "certs"
        self._signer = signer
        self._held: dict[str, _Held] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self._children = asyncio.Semaphore(_CHILDREN)

    @property
    def ca_file(self) -> Path:
        return self._dir / "ca.crt"

    def _files(self, identity: str) -> tuple[Path, Path]:
        # spiffe://<td>/ns/<ns>/meshlet/<name> -> ns_<ns>_meshlet_<name>
        stem = identity.split("://", 1)[-1].split("/", 1)[-1].replace("/", "_")
        return self._dir / f"{stem}.crt", self._dir / f"{stem}.key"

    def has(self, identity: str) -> bool:
        held = self._held.get(identity)
        return held is not None and held.expires > time.time()

    def context(self, identity: str) -> ssl.SSLContext:
        held = self._held.get(identity)
        if held is None:
            raise CertificateError(f"no certificate for {identity} yet")
        return held.context

    def missing(self) -> list[str]:
        """Identities wanted but not (validly) held."""
        return [identity for identity in self._tasks if not self.has(identity)]

    def want(self, identity: str, *, server: bool) -> None:
        """Starts keeping a certificate for ``identity`` (idempotent)."""
        if identity not in self._tasks:
            self._tasks[identity] = asyncio.get_running_loop().create_task(
                self._keep(identity, server), name=f"certificate {identity}"
            )

    def drop(self, identity: str) -> None:
        """Stops renewing ``identity`` (its workloads left the node); live connections stay."""
        task = self._tasks.pop(identity, None)
        if task is not None:
            task.cancel()
        self._held.pop(identity, None)

    async def wait(self, identity: str) -> ssl.SSLContext:
        """The context of ``identity`` once a certificate is held."""
        while not self.has(identity):
            self._changed.clear()
            await self._changed.wait()
        return self._held[identity].context

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _keep(self, identity: str, server: bool) -> None:
        await self._load_persisted(identity, server)
        delay = _RETRY_MIN
        while True:
            held = self._held.get(identity)
            now = datetime.now(UTC)
            if held is not None and now < held.renew_at:
                await asyncio.sleep((held.renew_at - now).total_seconds())
                continue
            try:
                await self._obtain(identity, server)
                delay = _RETRY_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("certificate for %s: %s; retrying in %.1fs", identity, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, _RETRY_MAX)

    async def _load_persisted(self, identity: str, server: bool) -> None:
        cert_file, key_file = self._files(identity)
        if not (cert_file.exists() and key_file.exists() and self.ca_file.exists()):
            return
        try:
            async with self._children:
                info = await inspect_certificate(cert_file.read_bytes())
            if info.identity != identity or info.not_after <= datetime.now(UTC):
                return
            self._install(identity, server, cert_file, key_file, info)
        except (OSError, PkiError) as exc:
            log.warning("ignoring persisted certificate for %s: %s", identity, exc)

    async def _obtain(self, identity: str, server: bool) -> None:
        async with self._children:
            fresh = await new_key_and_csr(identity)
        cert_pem, ca_pem = await self._signer(fresh.csr, identity)
        async with self._children:
            info = await inspect_certificate(cert_pem)
        if info.identity != identity:
            raise CertificateError(
                f"the control plane signed {info.identity} when asked for {identity}"
            )
        cert_file, key_file = self._files(identity)
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(self.ca_file, ca_pem, 0o644)
        _write(key_file, fresh.key, 0o600)
        _write(cert_file, cert_pem, 0o644)
        self._install(identity, server, cert_file, key_file, info)
        log.info("certificate for %s valid until %s", identity, info.not_after.isoformat())

    def _install(
        self, identity: str, server: bool, cert_file: Path, key_file: Path, info: CertificateInfo
    ) -> None:
        held = self._held.get(identity)
        if held is None:
            make = mtls_server_context if server else mtls_client_context
            context = make(cert_file, key_file, self.ca_file)
        else:
            context = held.context
            try:
                context.load_cert_chain(str(cert_file), str(key_file))
            except (OSError, ssl.SSLError) as exc:
                raise CertificateError(f"cannot reload certificate for {identity}: {exc}") from None
        self._held[identity] = _Held(context, info.not_before, info.not_after)
        self._changed.set()


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically replaces ``path`` (a reader never sees half a key)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
