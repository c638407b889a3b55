"""Control plane and API errors as one line that says what happened and what to do.

:func:`describe_failure` maps the exceptions of :mod:`meshlet.cpclient` (and the kind lookup
of :mod:`meshlet.api`) to messages; it returns ``None`` for anything it does not know, which
:func:`meshlet.cli.main.main` then lets through as a bug.
"""

from __future__ import annotations

from meshlet.api.errors import ApiError
from meshlet.cpclient import (
    Conflict,
    CPError,
    Forbidden,
    Invalid,
    NotFound,
    PinMismatch,
    Unauthorized,
    Unavailable,
)

__all__ = ["describe_failure"]


def describe_failure(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or ``None`` when it is not one."""
    if isinstance(exc, Unavailable):
        return (
            f"cannot reach the control plane: {exc.message}. Is it running (`meshlet up` or "
            "`meshlet cp run`)? Check --cp / MESHLET_CP / MESHLET_HOME."
        )
    if isinstance(exc, PinMismatch):
        return exc.message
    if isinstance(exc, Unauthorized):
        return (
            f"the control plane rejected the token (401 Unauthorized: {exc.message}). Use the "
            "admin token from the control plane's state directory (admin.token) with --token "
            "or MESHLET_TOKEN, or unset them to use $MESHLET_HOME/client.json."
        )
    if isinstance(exc, Forbidden):
        return (
            f"not allowed (403 Forbidden: {exc.message}). The resource API needs the admin "
            "token; node tokens act only for their own node, and generated kinds "
            "(MeshService, Node) are read-only."
        )
    if isinstance(exc, NotFound):
        return f"not found (404): {exc.message}"
    if isinstance(exc, Conflict):
        return (
            f"conflict (409): {exc.message}. The object changed since it was read: "
            "get it again and retry."
        )
    if isinstance(exc, Invalid):
        causes = "; ".join(str(cause) for cause in exc.causes)
        return f"rejected by the control plane (422 Invalid): {causes or exc.message}"
    if isinstance(exc, CPError):
        status = f" ({exc.status})" if exc.status else ""
        return f"control plane error{status}: {exc.message}"
    if isinstance(exc, ApiError):
        return str(exc)
    return None
