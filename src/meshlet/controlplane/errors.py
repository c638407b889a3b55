"""Errors of the control plane, each carrying the HTTP answer it becomes.

::

    ControlPlaneError            .status, .reason; the API answers a Kubernetes Status with them
    ├── Unauthenticated          401: no token, or a token the control plane did not issue
    ├── PermissionDenied         403: the token may not do this (node token, other node)
    ├── MethodNotAllowed         405: the kind is generated or written by agents only
    ├── InvalidRequest           422: .causes lists (field path, message)
    └── StateDirError            the state directory or a file in it cannot be read or written

Store errors (:mod:`meshlet.store.errors`) are mapped by the API: NotFound → 404,
Conflict → 409, Expired → 410, StoreUnavailable → 503.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshlet.api.errors import FieldError

__all__ = [
    "ControlPlaneError",
    "InvalidRequest",
    "MethodNotAllowed",
    "PermissionDenied",
    "StateDirError",
    "Unauthenticated",
]


class ControlPlaneError(Exception):
    status = 500
    reason = "InternalError"


class Unauthenticated(ControlPlaneError):
    status = 401
    reason = "Unauthorized"


class PermissionDenied(ControlPlaneError):
    status = 403
    reason = "Forbidden"


class MethodNotAllowed(ControlPlaneError):
    status = 405
    reason = "MethodNotAllowed"


class InvalidRequest(ControlPlaneError):
    status = 422
    reason = "Invalid"

    def __init__(self, message: str, causes: Sequence[FieldError] = ()) -> None:
        super().__init__(message)
        self.causes = list(causes)


class StateDirError(ControlPlaneError):
    """The state directory or one of its files cannot be used."""
