"""Errors raised by the meshlet SDK.

Exception tree::

    MeshletError                      base of everything the SDK raises
    ├── AgentUnavailable              the agent's client socket is missing or refuses connections
    ├── ConnectTimeout                connecting to the agent's client socket took too long
    ├── HandshakeTimeout              the agent did not reply to the handshake in time
    ├── ProtocolViolation             the agent's reply was not a valid handshake reply
    ├── HandshakeRejected(code)       the agent answered a code other than OK
    │   ├── GeneralFailure            1  GENERAL_FAILURE
    │   ├── VersionNotSupported       2  VERSION_NOT_SUPPORTED
    │   ├── BadRequest                3  BAD_REQUEST (also raised before connecting for an
    │   │                                invalid service ID)
    │   ├── ServiceNotFound           4  SERVICE_NOT_FOUND
    │   ├── AccessDenied              5  ACCESS_DENIED
    │   ├── NoEndpoint                6  NO_ENDPOINT
    │   ├── ConnectionLimit           7  CONNECTION_LIMIT
    │   ├── ConnectFailed             8  CONNECT_FAILED
    │   ├── TunnelTimeout             9  TIMEOUT
    │   └── NotReady                  10 NOT_READY
    └── ServerError                   the server helper could not listen
        └── AddressInUse              another live server listens on the socket path

Every :class:`HandshakeRejected` carries the reply code (``code``, ``code_name``) and the
service ID it was for, so callers can branch on the code without parsing messages.
:func:`rejection_for` maps a reply code to its exception class.
"""

from __future__ import annotations

from meshlet.wire.handshake import ReplyCode

__all__ = [
    "AccessDenied",
    "AddressInUse",
    "AgentUnavailable",
    "BadRequest",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionLimit",
    "GeneralFailure",
    "HandshakeRejected",
    "HandshakeTimeout",
    "MeshletError",
    "NoEndpoint",
    "NotReady",
    "ProtocolViolation",
    "ServerError",
    "ServiceNotFound",
    "TunnelTimeout",
    "VersionNotSupported",
    "rejection_for",
]


class MeshletError(Exception):
    """Base class of every error the meshlet SDK raises."""


class AgentUnavailable(MeshletError):
    """The node agent's client socket is missing or refuses connections."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the meshlet agent at {path}: {reason}. Is the node agent running, "
            "and does MESHLET_DIR (or meshlet_dir=) point at this workload's directory "
            "(the one holding client/ and server/)?"
        )
        self.path = path
        self.reason = reason


class ConnectTimeout(MeshletError):
    """Connecting to the agent's client socket did not finish within ``connect_timeout``."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__(f"connecting to the meshlet agent at {path} timed out after {timeout}s")
        self.path = path
        self.timeout = timeout


class HandshakeTimeout(MeshletError):
    """The agent did not answer the handshake within ``handshake_timeout``."""

    def __init__(self, service_id: str, timeout: float) -> None:
        super().__init__(
            f"the meshlet agent did not answer the handshake for {service_id!r} within {timeout}s"
        )
        self.service_id = service_id
        self.timeout = timeout


class ProtocolViolation(MeshletError):
    """The agent closed the connection mid-reply or sent bytes that are not a valid reply."""

    def __init__(self, service_id: str, detail: str) -> None:
        super().__init__(f"bad handshake reply for {service_id!r}: {detail}")
        self.service_id = service_id
        self.detail = detail


class HandshakeRejected(MeshletError):
    """The agent answered the handshake with a code other than ``OK``."""

    def __init__(self, code: ReplyCode, service_id: str, detail: str | None = None) -> None:
        message = f"{service_id!r}: {code.name} ({int(code)}): {code.meaning}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)
        self.code = code
        self.service_id = service_id
        self.detail = detail

    @property
    def code_name(self) -> str:
        return self.code.name


class GeneralFailure(HandshakeRejected):
    """Code 1: the agent hit an unexpected internal error."""


class VersionNotSupported(HandshakeRejected):
    """Code 2: the agent does not speak this handshake version."""


class BadRequest(HandshakeRejected):
    """Code 3: the request or the service ID is malformed."""


class ServiceNotFound(HandshakeRejected):
    """Code 4: no such service in the mesh."""


class AccessDenied(HandshakeRejected):
    """Code 5: this workload's meshlet may not use the service (declare it in spec.client)."""


class NoEndpoint(HandshakeRejected):
    """Code 6: the service has no ready endpoint."""


class ConnectionLimit(HandshakeRejected):
    """Code 7: every ready endpoint is at its maxConn."""


class ConnectFailed(HandshakeRejected):
    """Code 8: the destination could not be reached."""


class TunnelTimeout(HandshakeRejected):
    """Code 9: the agent could not establish the tunnel in time."""


class NotReady(HandshakeRejected):
    """Code 10: the agent has no configuration yet; retry shortly."""


_REJECTIONS: dict[ReplyCode, type[HandshakeRejected]] = {
    ReplyCode.GENERAL_FAILURE: GeneralFailure,
    ReplyCode.VERSION_NOT_SUPPORTED: VersionNotSupported,
    ReplyCode.BAD_REQUEST: BadRequest,
    ReplyCode.SERVICE_NOT_FOUND: ServiceNotFound,
    ReplyCode.ACCESS_DENIED: AccessDenied,
    ReplyCode.NO_ENDPOINT: NoEndpoint,
    ReplyCode.CONNECTION_LIMIT: ConnectionLimit,
    ReplyCode.CONNECT_FAILED: ConnectFailed,
    ReplyCode.TIMEOUT: TunnelTimeout,
    ReplyCode.NOT_READY: NotReady,
}


def rejection_for(code: ReplyCode) -> type[HandshakeRejected]:
    """The exception class for a non-OK reply code; raises ``ValueError`` for ``OK``."""
    try:
        return _REJECTIONS[code]
    except KeyError:
        raise ValueError(f"{code.name} is not a rejection") from None


class ServerError(MeshletError):
    """The server helper could not listen on its socket."""


class AddressInUse(ServerError):
    """Another live server already listens on the socket path."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"another server is already listening on {path}; stop it first (a stale socket "
            "file from a dead server would have been removed)"
        )
        self.path = path
