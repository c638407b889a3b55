"""Credentials made and read in a child process, so that the caller never imports ``cryptography``.

Each call runs ``python -m meshlet.pki.worker`` (the same interpreter, ``-P`` so that the
current directory cannot shadow the modules that handle keys) for one request of
:mod:`meshlet.pki.protocol` and waits for it to exit. A child costs about a tenth of a second of
CPU; the agent needs one per certificate it obtains or finds on disk, every few hours, which is
far cheaper than keeping ``cryptography`` resident. Failures, including a child that hangs
(:data:`TIMEOUT`) or dies, raise :class:`~meshlet.pki.PkiError` with the child's own message.
Cancelling a call kills its child.
"""

from __future__ import annotations

import asyncio
import sys

from meshlet.pki import PkiError
from meshlet.pki.protocol import (
    CertificateInfo,
    Inspect,
    KeyAndCsr,
    NewKey,
    decode_certificate_info,
    decode_key_and_csr,
    encode_request,
)

__all__ = ["TIMEOUT", "inspect_certificate", "new_key_and_csr"]

#: Seconds a child may take; starting Python and ``cryptography`` takes well under one even
#: on a loaded two-CPU machine.
TIMEOUT = 30.0

_WORKER = "meshlet.pki.worker"


async def new_key_and_csr(identity: str) -> KeyAndCsr:
    """A new P-256 private key (PEM) and a CSR asking for ``identity``."""
    return decode_key_and_csr(await _run(encode_request(NewKey(identity))))


async def inspect_certificate(certificate: bytes) -> CertificateInfo:
    """The SPIFFE identity and validity of a PEM certificate."""
    return decode_certificate_info(await _run(encode_request(Inspect(certificate))))


async def _run(request: bytes) -> bytes:
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",
            "-m",
            _WORKER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise PkiError(f"cannot start {sys.executable} -m {_WORKER}: {exc}") from None
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await child.communicate(request)
    except TimeoutError:
        raise PkiError(f"{_WORKER} did not answer within {TIMEOUT:.0f} s") from None
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    if child.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines() or ["(no message)"]
        raise PkiError(f"{_WORKER} failed (exit status {child.returncode}): {lines[-1]}")
    return out
