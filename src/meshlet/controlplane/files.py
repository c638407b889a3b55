"""Files of the state directory: written atomically, secrets with mode 0600 from the start."""

from __future__ import annotations

import os
from pathlib import Path

from meshlet.controlplane.errors import StateDirError

__all__ = ["read_file", "write_file"]


def write_file(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file and rename (never a half-written file).

    The temporary file is created with ``mode`` already set, so a secret is never readable by
    others, not even for an instant.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # the umask may have removed bits we asked for
        os.replace(tmp, path)
    except OSError as exc:
        raise StateDirError(f"cannot write {path}: {exc}") from None


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StateDirError(f"cannot read {path}: {exc}") from None
