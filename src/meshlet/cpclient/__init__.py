"""The typed asynchronous client of the control plane API (HTTP/1.1 over HTTPS).

Used by the CLI (resource API, admin token) and by node agents (node API, node token). Paths and
shapes are those of ``docs/architecture.md``; resources travel as plain JSON dicts.

Trust: the control plane's HTTPS certificate is signed by the mesh CA, so a client verifies it
against that CA (``ca_file`` or ``ca_pem``). An agent that only has a *pinned* token
(``<token>#sha256:<hex of the CA certificate DER>``) bootstraps with :meth:`CPClient.from_token`:
it fetches ``/node/v1/ca.crt`` once without verification, accepts it only if its SHA-256 matches
the pin, and from then on talks verified TLS only (kubeadm's discovery hash).

Streams (``watch``, ``watch_node_config``) use a read timeout of three keepalive intervals, so a
dead connection ends the iterator with :class:`Unavailable` and the caller reconnects.

HTTP is spoken by :mod:`meshlet.cpclient.http11` (h11 and asyncio streams), not httpx: every
node agent holds this client for its whole life; that module's documentation says why.

Exception tree::

    CPError                 any failure talking to the control plane; .status, .reason, .message
    ├── Unavailable         cannot connect, TLS failure, timeout, connection dropped (status None)
    ├── PinMismatch         the CA served does not match the token's pin (status None)
    ├── Unauthorized        401: the token is missing, malformed or unknown
    ├── Forbidden           403: the token may not do this (node token, other node, generated kind)
    ├── NotFound            404
    ├── Conflict            409: exists already, or stale metadata.resourceVersion
    ├── Invalid             422: .causes lists (field path, message); .field_errors as dict
    └── Gone                410: a watch resumed from a resourceVersion no longer kept
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from meshlet.cpclient.http11 import HTTPClient, HTTPError, Response, StreamingResponse
from meshlet.nodeconfig import NodeConfig

__all__ = [
    "KEEPALIVE_INTERVAL",
    "CPClient",
    "CPError",
    "ClientConfig",
    "Conflict",
    "FieldCause",
    "Forbidden",
    "Gone",
    "Invalid",
    "NodeToken",
    "NotFound",
    "PinMismatch",
    "Unauthorized",
    "Unavailable",
    "WatchEvent",
    "ca_pin",
    "load_client_config",
    "split_pinned_token",
]

#: Seconds between keepalive lines of the server's streams (BOOKMARK / ``{}``).
KEEPALIVE_INTERVAL = 10.0

Object = dict[str, Any]
_T = TypeVar("_T")


# Errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldCause:
    """One invalid field: ``field`` is a Kubernetes path such as ``items[1].spec.server``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class CPError(Exception):
    """A control plane request failed; ``status`` is the HTTP status (``None``: no answer)."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


class Unavailable(CPError):
    """The control plane could not be reached or the connection broke."""


class PinMismatch(CPError):
    """The CA certificate served by the control plane does not match the token's pin."""


class Unauthorized(CPError):
    """401: the token is missing or unknown."""


class Forbidden(CPError):
    """403: the token is valid but may not do this."""


class NotFound(CPError):
    """404: no such object (or node, or path)."""


class Conflict(CPError):
    """409: the object exists already or was modified since it was read."""


class Gone(CPError):
    """410: a watch asked to resume from a resourceVersion the server no longer keeps."""


class Invalid(CPError):
    """422: the request body is invalid; ``causes`` names every field and problem."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 422,
        reason: str = "",
        causes: Sequence[FieldCause] = (),
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        self.causes = tuple(causes)

    @property
    def field_errors(self) -> dict[str, str]:
        """Field path -> message (the last message when a field has several)."""
        return {cause.field: cause.message for cause in self.causes}


_BY_STATUS: dict[int, type[CPError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: Forbidden,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


def _error_from(response: Response | StreamingResponse, body: bytes) -> CPError:
    """The typed error for an error response carrying a Kubernetes ``Status`` (or not)."""
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if not isinstance(status, dict):
        text = body.decode(errors="replace").strip() or response.reason_phrase
        status = {"message": text, "reason": response.reason_phrase}
    return _error_from_status(response.status_code, status)


def _error_from_status(code: int, status: Mapping[str, Any]) -> CPError:
    message = str(status.get("message") or f"HTTP {code}")
    reason = str(status.get("reason") or "")
    cls = _BY_STATUS.get(code, CPError)
    if cls is Invalid:
        details = status.get("details") or {}
        causes = [
            FieldCause(str(c.get("field", "")), str(c.get("message", "")))
            for c in details.get("causes") or []
            if isinstance(c, dict)
        ]
        return Invalid(message, status=code, reason=reason, causes=causes)
    return cls(message, status=code, reason=reason)


# Tokens, pins and client.json ----------------------------------------------------------------


def ca_pin(ca_pem: bytes) -> str:
    """``sha256:<hex>`` of the DER encoding of a PEM certificate (the pin a token carries)."""
    try:
        der = ssl.PEM_cert_to_DER_cert(ca_pem.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise PinMismatch(f"the control plane's CA certificate is not PEM: {exc}") from None
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def split_pinned_token(token: str) -> tuple[str, str | None]:
    """``(token, pin)`` from ``<token>#sha256:<hex>``; the pin is ``None`` when absent."""
    token = token.strip()
    secret, sep, pin = token.partition("#")
    if not sep:
        return secret, None
    digest = pin.removeprefix("sha256:")
    if not pin.startswith("sha256:") or len(digest) != 64 or not _is_hex(digest):
        raise ValueError(
            "the token's CA pin must be '#sha256:' followed by 64 hex digits "
            "(as printed by 'meshlet token create node')"
        )
    return secret, pin.lower()


@dataclass(frozen=True)
class NodeToken:
    """A node token as created by the control plane."""

    token: str
    node: str
    #: ``sha256:<hex>`` of the CA certificate DER.
    ca_pin: str

    @property
    def pinned(self) -> str:
        """``<token>#sha256:<hex>``: what ``meshlet token create node`` prints."""
        return f"{self.token}#{self.ca_pin}"


@dataclass(frozen=True)
class ClientConfig:
    """``<state-dir>/client.json``, written by the control plane for local CLI use."""

    server: str
    token_file: Path
    ca_file: Path

    def read_token(self) -> str:
        try:
            return self.token_file.read_text().strip()
        except OSError as exc:
            raise CPError(f"cannot read the token file {self.token_file}: {exc}") from None

    def client(self) -> CPClient:
        """A client for this control plane with the token and CA it names."""
        return CPClient(self.server, self.read_token(), ca_file=str(self.ca_file))


def load_client_config(path: str | Path) -> ClientConfig:
    """Read a ``client.json``; relative file names are relative to its directory."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        server, token_file, ca_file = raw["server"], raw["token_file"], raw["ca_file"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CPError(
            f"cannot read the control plane client configuration {path}: {exc!r}; "
            "it is written by 'meshlet cp run' in its state directory"
        ) from None
    return ClientConfig(
        server=str(server),
        token_file=path.parent / str(token_file),
        ca_file=path.parent / str(ca_file),
    )


# Resources -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchEvent:
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    object: Object


def _collection_path(kind: str, namespace: str | None) -> str:
    """``kind`` is any name the registry knows: ``Meshlet``, ``meshlets``, ``ml``."""
    # Imported here: the registry brings every resource model, which node agents never need.
    from meshlet.api.registry import kind_by_name

    info = kind_by_name(kind)
    base = f"/apis/{info.group}/{info.version}"
    if namespace is None or not info.namespaced:
        return f"{base}/{info.plural}"
    return f"{base}/namespaces/{namespace}/{info.plural}"


def _object_path(kind: str, namespace: str | None, name: str) -> str:
    from meshlet.api.registry import kind_by_name

    info = kind_by_name(kind)
    if info.namespaced and not namespace:
        raise ValueError(f"{kind} {name!r} needs a namespace")
    return f"{_collection_path(kind, namespace if info.namespaced else None)}/{name}"


def _meta(obj: Mapping[str, Any]) -> tuple[str, str | None, str]:
    metadata = obj.get("metadata") or {}
    kind, name = obj.get("kind"), metadata.get("name")
    if not isinstance(kind, str) or not isinstance(name, str):
        raise ValueError("the object needs 'kind' and 'metadata.name'")
    namespace = metadata.get("namespace")
    return kind, (namespace if isinstance(namespace, str) else None), name


class CPClient:
    """A connection to one control plane with one token. Use ``async with`` or ``aclose()``.

    ``ca_file``/``ca_pem`` is the mesh CA that signed the server's certificate; without either,
    the system trust store is used (only useful behind a publicly trusted proxy).
    """

    def __init__(
        self,
        server: str,
        token: str,
        *,
        ca_file: str | None = None,
        ca_pem: bytes | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.server = server.rstrip("/")
        secret, _pin = split_pinned_token(token)
        self._timeout = timeout
        try:
            verify = ssl.create_default_context(
                cafile=ca_file, cadata=ca_pem.decode() if ca_pem else None
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise CPError(f"cannot load the control plane CA ({ca_file or 'PEM'}): {exc}") from None
        self._http = HTTPClient(
            self.server,
            # No header at all without a token (the server answers 401 with its reason).
            headers={"Authorization": f"Bearer {secret}"} if secret else {},
            verify=verify,
            timeout=timeout,
        )

    @classmethod
    async def from_token(
        cls, server: str, token_with_pin: str, *, timeout: float = 10.0
    ) -> CPClient:
        """Bootstrap trust from a pinned token: fetch the CA unverified once, check the pin."""
        secret, pin = split_pinned_token(token_with_pin)
        if pin is None:
            raise PinMismatch(
                "the token carries no CA pin ('#sha256:...'); give the CA certificate "
                "(--ca-file) or a token printed by 'meshlet token create node'"
            )
        ca_pem = await fetch_ca_unverified(server, timeout=timeout)
        served = ca_pin(ca_pem)
        if not hmac.compare_digest(served, pin):
            raise PinMismatch(
                f"the control plane at {server} serves a CA certificate with pin {served}, "
                f"but the token pins {pin}: wrong server, or someone in between"
            )
        return cls(server, secret, ca_pem=ca_pem, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CPClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Plumbing ------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Response:
        try:
            response = await self._http.request(method, path, json_body=json_body, params=params)
        except HTTPError as exc:
            raise Unavailable(f"control plane {self.server}: {exc!r}") from exc
        if response.status_code >= 400:
            raise _error_from(response, response.content)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise CPError(
                f"control plane {self.server} answered {method} {path} with non-JSON",
                status=response.status_code,
            ) from None

    async def _stream_lines(
        self, path: str, params: Mapping[str, str], decode: Callable[[str], _T]
    ) -> AsyncIterator[_T]:
        """Every non-blank line of an NDJSON stream, decoded by ``decode``."""
        try:
            async with self._http.stream(
                "GET", path, params=params, read_timeout=3 * KEEPALIVE_INTERVAL
            ) as response:
                if response.status_code >= 400:
                    raise _error_from(response, await response.aread())
                async for line in response.aiter_lines():
                    if line.strip():
                        try:
                            item = decode(line)
                        except ValueError as exc:
                            raise CPError(
                                f"control plane {self.server} sent a bad stream line ({exc}): "
                                f"{line[:80]!r}"
                            ) from None
                        yield item
        except HTTPError as exc:
            raise Unavailable(f"control plane {self.server}: stream {path}: {exc!r}") from exc

    # Resource API (admin token) --------------------------------------------------------------

    async def healthz(self) -> bool:
        await self._request("GET", "/healthz")
        return True

    async def get(self, kind: str, name: str, namespace: str | None = "default") -> Object:
        result: Object = await self._json("GET", _object_path(kind, namespace, name))
        return result

    async def list(self, kind: str, namespace: str | None = None) -> builtins.list[Object]:
        """Objects of a kind in one namespace, or in all namespaces when ``namespace`` is None."""
        body = await self._json("GET", _collection_path(kind, namespace))
        return list(body.get("items") or [])

    async def create(self, obj: Mapping[str, Any]) -> Object:
        kind, namespace, _name = _meta(obj)
        result: Object = await self._json(
            "POST", _collection_path(kind, namespace or "default"), json_body=obj
        )
        return result

    async def replace(self, obj: Mapping[str, Any]) -> Object:
        """PUT; with ``metadata.resourceVersion`` set the server answers 409 if it is stale."""
        kind, namespace, name = _meta(obj)
        result: Object = await self._json(
            "PUT", _object_path(kind, namespace or "default", name), json_body=obj
        )
        return result

    async def delete(self, kind: str, name: str, namespace: str | None = "default") -> Object:
        result: Object = await self._json("DELETE", _object_path(kind, namespace, name))
        return result

    async def apply(self, items: Sequence[Mapping[str, Any]]) -> builtins.list[Object]:
        """Create-or-replace all items in one transaction; :class:`Invalid` names ``items[i]``."""
        body = await self._json("POST", "/api/v1/apply", json_body={"items": list(items)})
        return list(body.get("items") or [])

    async def watch(
        self, kind: str, namespace: str | None = None, *, resource_version: str | None = None
    ) -> AsyncIterator[WatchEvent]:
        """``ADDED`` for every existing object (or the changes after ``resource_version``),
        then changes as they happen; keepalive bookmarks are skipped. An ``ERROR`` line from
        the server (e.g. 410 when ``resource_version`` is too old) raises its typed error."""
        params = {"watch": "true"}
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        async for line in self._stream_lines(_collection_path(kind, namespace), params, json.loads):
            if not isinstance(line, dict):
                continue
            if line.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                yield WatchEvent(line["type"], line["object"])
            elif line.get("type") == "ERROR":
                status = line.get("object") or {}
                raise _error_from_status(int(status.get("code") or 500), status)

    async def create_node_token(self, node: str) -> NodeToken:
        body = await self._json("POST", "/api/v1/tokens", json_body={"kind": "node", "node": node})
        return NodeToken(token=body["token"], node=body["node"], ca_pin=body["caPin"])

    # Node API (node token) -------------------------------------------------------------------

    async def ca_certificate(self) -> bytes:
        """The mesh CA certificate (PEM), over the already verified connection."""
        response = await self._request("GET", "/node/v1/ca.crt")
        return response.content

    async def register_node(self, node: str, address: str, port: int) -> Object:
        """Announce the node's tunnel listener; returns the stored Node object."""
        result: Object = await self._json(
            "PUT", f"/node/v1/nodes/{node}", json_body={"address": address, "port": port}
        )
        return result

    async def register_workloads(
        self, node: str, workloads: Sequence[Mapping[str, Any]]
    ) -> builtins.list[Object]:
        """Replace the set of Workloads this node's agent registered; returns them as stored.

        Each item is a Workload object, or just ``{"metadata": {...}, "spec": {...}}``;
        ``spec.node`` defaults to ``node`` and may not name another node (403).
        """
        body = await self._json(
            "PUT", f"/node/v1/nodes/{node}/workloads", json_body={"workloads": list(workloads)}
        )
        return list(body.get("items") or [])

    async def report_health(self, node: str, readiness: Mapping[str, Mapping[str, bool]]) -> None:
        """``{"<ns>/<workload>": {"<service>": ready}}`` for workloads on this node."""
        await self._request(
            "PUT",
            f"/node/v1/nodes/{node}/health",
            json_body={"workloads": {k: dict(v) for k, v in readiness.items()}},
        )

    async def sign_csr(self, node: str, csr_pem: bytes, identity: str) -> tuple[bytes, bytes]:
        """``(certificate PEM, CA PEM)``; :class:`Forbidden` unless the node hosts ``identity``."""
        body = await self._json(
            "POST",
            f"/node/v1/nodes/{node}/csr",
            json_body={"csr": csr_pem.decode(), "identity": identity},
        )
        return body["certificate"].encode(), body["ca"].encode()

    async def watch_node_config(self, node: str) -> AsyncIterator[NodeConfig]:
        """The node's current config, then every new one; keepalive lines are skipped."""
        path = f"/node/v1/nodes/{node}/config"
        async for config in self._stream_lines(path, {"watch": "true"}, _node_config_line):
            if config is not None:
                yield config


def _node_config_line(line: str) -> NodeConfig | None:
    """A config, or ``None`` for a keepalive (``{}``); decoded straight into the Structs."""
    return None if line.strip() == "{}" else NodeConfig.from_json(line)


async def fetch_ca_unverified(server: str, *, timeout: float = 10.0) -> bytes:
    """``GET /node/v1/ca.crt`` without verifying TLS: only to be checked against a pin."""
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    http = HTTPClient(server, headers={}, verify=unverified, timeout=timeout)
    try:
        response = await http.request("GET", "/node/v1/ca.crt")
    except HTTPError as exc:
        raise Unavailable(f"control plane {server}: {exc!r}") from exc
    finally:
        await http.aclose()
    if response.status_code != 200:
        raise _error_from(response, response.content)
    return response.content
