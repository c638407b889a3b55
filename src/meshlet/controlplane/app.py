"""The control plane's HTTP API (FastAPI): resource API, apply, tokens and the node API.

Paths and shapes are fixed in ``docs/architecture.md``. Every error is a Kubernetes ``Status``
object (``{"kind": "Status", "code", "reason", "message", "details": {"causes": [...]}}``), from
one place (:func:`_status_response`), whatever raised it: our own errors, store errors, or
FastAPI's request validation.

Resource routes are registered per kind from :data:`meshlet.api.KINDS`, so the OpenAPI document
names each kind's schema. Bodies are read as raw JSON and validated by
:func:`meshlet.api.validate_object` (the single source of truth); FastAPI's own body validation
is used only for the small node API requests.

Authorization: every route but ``/healthz``, ``/openapi.json`` and ``/node/v1/ca.crt`` needs a
token. The resource API, apply and token creation need the admin token; the node API accepts the
admin token or the token of the node named in the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fastapi import Body, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from meshlet import __version__, pki
from meshlet.api.errors import FieldError, InvalidName, ValidationFailure
from meshlet.api.meta import MESHLET_LABEL
from meshlet.api.names import check_dns1123_subdomain
from meshlet.api.registry import KINDS, KindInfo
from meshlet.api.validation import validate_object
from meshlet.controlplane.ca import CertificateAuthority
from meshlet.controlplane.errors import (
    ControlPlaneError,
    InvalidRequest,
    MethodNotAllowed,
    PermissionDenied,
)
from meshlet.controlplane.hub import ConfigHub
from meshlet.controlplane.streams import with_keepalive
from meshlet.controlplane.tokens import NODE, Principal, TokenAuthority
from meshlet.store import (
    Conflict,
    Expired,
    NotFound,
    ResourceKey,
    ResourceStore,
    StoreError,
    StoreUnavailable,
    WatchEvent,
    key_of,
)

__all__ = ["REGISTERED_BY", "ControlPlane", "create_app"]

Object = dict[str, Any]
NDJSON = "application/x-ndjson"
#: Annotation on Workloads registered by a node agent: the node whose set it belongs to.
REGISTERED_BY = "meshlet.dev/registered-by"


@dataclass
class ControlPlane:
    """Everything the API serves from."""

    store: ResourceStore
    ca: CertificateAuthority
    tokens: TokenAuthority
    hub: ConfigHub
    trust_domain: str
    #: Seconds between keepalive lines of watch streams.
    keepalive_interval: float = 10.0
    #: Set on shutdown: every open stream ends.
    closing: asyncio.Event = field(default_factory=asyncio.Event)


# Errors as Kubernetes Status ---------------------------------------------------------------


def _status(code: int, reason: str, message: str, causes: list[FieldError] | None = None) -> Object:
    body: Object = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    if causes:
        body["details"] = {"causes": [cause.to_dict() for cause in causes]}
    return body


def _status_response(
    code: int, reason: str, message: str, causes: list[FieldError] | None = None
) -> JSONResponse:
    return JSONResponse(_status(code, reason, message, causes), status_code=code)


_STORE_STATUS: tuple[tuple[type[StoreError], int, str], ...] = (
    (NotFound, 404, "NotFound"),
    (Conflict, 409, "Conflict"),
    (Expired, 410, "Expired"),
    (StoreUnavailable, 503, "ServiceUnavailable"),
)


def _store_status(exc: StoreError) -> tuple[int, str]:
    for cls, code, reason in _STORE_STATUS:
        if isinstance(exc, cls):
            return code, reason
    return 500, "InternalError"


def _install_error_handlers(app: FastAPI) -> None:
    async def on_cp_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ControlPlaneError)
        causes = exc.causes if isinstance(exc, InvalidRequest) else None
        return _status_response(exc.status, exc.reason, str(exc), causes)

    async def on_store_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreError)
        code, reason = _store_status(exc)
        return _status_response(code, reason, str(exc))

    async def on_request_invalid(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        causes = [
            FieldError(
                ".".join(str(part) for part in error.get("loc", ())[1:]),
                str(error.get("msg", "invalid")),
            )
            for error in exc.errors()
        ]
        message = "invalid request: " + "; ".join(str(c) for c in causes)
        return _status_response(422, "Invalid", message, causes)

    async def on_http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "Failure")
        return _status_response(exc.status_code, reason, str(exc.detail))

    app.add_exception_handler(ControlPlaneError, on_cp_error)
    app.add_exception_handler(StoreError, on_store_error)
    app.add_exception_handler(RequestValidationError, on_request_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


# Request bodies ----------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise InvalidRequest("the request body is not valid JSON") from None


def _validated(obj: Any, prefix: str = "") -> Object:
    """The object as validated and normalized by its model; 422 with paths under ``prefix``."""
    try:
        return validate_object(obj).to_dict()
    except ValidationFailure as exc:
        causes = [FieldError(_join(prefix, e.path), e.message) for e in exc.errors]
        what = f"{prefix} is invalid" if prefix else "invalid object"
        raise InvalidRequest(f"{what}: " + "; ".join(map(str, causes)), causes) from None


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return f"{prefix}.{path}" if path else prefix


def _for_path(info: KindInfo, obj: Any, namespace: str | None, name: str | None) -> Object:
    """Check a body against the kind, namespace and name of its path, then validate it."""
    if not isinstance(obj, dict):
        raise InvalidRequest(
            f"the body must be a {info.kind} object", [FieldError("", "must be an object")]
        )
    obj = dict(obj)
    obj.setdefault("apiVersion", info.api_version)
    obj.setdefault("kind", info.kind)
    if (obj["apiVersion"], obj["kind"]) != (info.api_version, info.kind):
        raise InvalidRequest(
            f"this path takes {info.kind} ({info.api_version}) objects",
            [FieldError("kind", f"must be {info.kind} with apiVersion {info.api_version}")],
        )
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and namespace is not None:
        metadata = dict(metadata)
        metadata.setdefault("namespace", namespace)
        if metadata["namespace"] != namespace:
            raise InvalidRequest(
                f"metadata.namespace {metadata['namespace']!r} does not match the path's "
                f"namespace {namespace!r}",
                [FieldError("metadata.namespace", f"must be {namespace!r} (the path's)")],
            )
        obj["metadata"] = metadata
    if isinstance(metadata, dict) and name is not None and metadata.get("name") != name:
        raise InvalidRequest(
            f"metadata.name {metadata.get('name')!r} does not match the path's name {name!r}",
            [FieldError("metadata.name", f"must be {name!r} (the path's)")],
        )
    return _validated(obj)


def _refuse_write(info: KindInfo) -> None:
    if info.user_writable:
        return
    if info.kind == "MeshService":
        raise MethodNotAllowed(
            "MeshService objects are generated from Meshlets and read-only; change the "
            "Meshlet's spec.server.services instead"
        )
    raise MethodNotAllowed(
        f"{info.kind} objects are written by node agents through the node API, not the resource API"
    )


class NodeRegistration(BaseModel):
    address: str = Field(description="IP address or host name of the agent's tunnel listener.")
    port: int = Field(default=15008, description="TCP port of the agent's tunnel listener.")


class WorkloadRegistration(BaseModel):
    workloads: list[dict[str, Any]] = Field(
        description=(
            "Workload objects (or just metadata and spec); spec.node defaults to the path's "
            "node. Replaces the set previously registered by this node."
        )
    )


class HealthReport(BaseModel):
    workloads: dict[str, dict[str, bool]] = Field(
        description='"<ns>/<workload>" -> service name -> ready.'
    )


class CsrRequest(BaseModel):
    csr: str = Field(description="PEM certificate signing request.")
    identity: str = Field(description="The SPIFFE ID asked for (the CSR's only URI SAN).")


class CsrResponse(BaseModel):
    certificate: str
    ca: str


class TokenRequest(BaseModel):
    kind: str = Field(description='Only "node" for now.')
    node: str = Field(description="The node the token is bound to.")


class TokenResponse(BaseModel):
    token: str
    node: str
    caPin: str = Field(description="sha256:<hex of the CA certificate DER>.")


# The application ---------------------------------------------------------------------------


def create_app(cp: ControlPlane) -> FastAPI:
    """The ASGI app over ``cp``. The caller starts ``cp.hub`` before serving and stops it after
    (:func:`meshlet.controlplane.server.serve_control_plane` does)."""
    app = FastAPI(
        title="meshlet control plane",
        version=__version__,
        description="Kubernetes-shaped resource API and node API of the meshlet service mesh.",
    )
    _install_error_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="An mlt_ token (admin or node).")

    async def principal(
        request: Request,
        _credentials: HTTPAuthorizationCredentials | None = Security(bearer),
    ) -> Principal:
        return await cp.tokens.authenticate(request.headers.get("authorization"))

    async def admin(who: Principal = Security(principal)) -> Principal:
        who.require_admin()
        return who

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for info in KINDS:
        _add_resource_routes(app, cp, info, admin)
    _add_apply_and_tokens(app, cp, admin)
    _add_node_api(app, cp, principal)
    return app


def _watch_requested(request: Request) -> bool:
    return request.query_params.get("watch", "").lower() in ("true", "1")


def _since(request: Request) -> int | None:
    raw = request.query_params.get("resourceVersion")
    if not raw or raw == "0":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(
            f"resourceVersion {raw!r} is not a number",
            [FieldError("resourceVersion", "must be a resourceVersion from this server")],
        ) from None


def _add_resource_routes(
    app: FastAPI, cp: ControlPlane, info: KindInfo, admin: Callable[..., Awaitable[Principal]]
) -> None:
    base = f"/apis/{info.group}/{info.version}"
    ns_base = f"{base}/namespaces/{{namespace}}/{info.plural}" if info.namespaced else None
    all_base = f"{base}/{info.plural}"
    schema_ref = {"$ref": f"#/components/schemas/{info.model.__name__}"}
    body_doc = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema_ref}}}
    }
    one: dict[int | str, dict[str, Any]] = {200: {"model": info.model}}
    tags: list[str | Enum] = [info.kind]

    async def list_objects(namespace: str | None, request: Request) -> Response:
        if _watch_requested(request):
            return _watch_response(cp, info.kind, namespace, _since(request))
        rv = await cp.store.resource_version()
        items = await cp.store.list(info.kind, namespace)
        return JSONResponse(
            {
                "apiVersion": info.api_version,
                "kind": f"{info.kind}List",
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )

    async def list_all(request: Request, _who: Principal = Security(admin)) -> Response:
        return await list_objects(None, request)

    app.add_api_route(
        all_base,
        list_all,
        methods=["GET"],
        tags=tags,
        summary=f"List {info.plural} in all namespaces (?watch=true streams NDJSON)",
    )

    obj_base = ns_base or all_base

    async def list_ns(
        namespace: str, request: Request, _who: Principal = Security(admin)
    ) -> Response:
        return await list_objects(namespace, request)

    async def create(
        request: Request, namespace: str = "", _who: Principal = Security(admin)
    ) -> Response:
        _refuse_write(info)
        obj = _for_path(info, await _json_body(request), namespace or None, None)
        return JSONResponse(await cp.store.create(obj), status_code=201)

    async def read(name: str, namespace: str = "", _who: Principal = Security(admin)) -> Object:
        return await cp.store.get(info.kind, namespace, name)

    async def replace(
        name: str, request: Request, namespace: str = "", _who: Principal = Security(admin)
    ) -> Object:
        _refuse_write(info)
        obj = _for_path(info, await _json_body(request), namespace or None, name)
        return await cp.store.replace(obj)

    async def delete(name: str, namespace: str = "", _who: Principal = Security(admin)) -> Object:
        _refuse_write(info)
        return await cp.store.delete(info.kind, namespace, name)

    if ns_base is not None:
        app.add_api_route(
            ns_base,
            list_ns,
            methods=["GET"],
            tags=tags,
            summary=f"List {info.plural} in a namespace (?watch=true streams NDJSON)",
        )
    app.add_api_route(
        obj_base,
        create,
        methods=["POST"],
        tags=tags,
        status_code=201,
        summary=f"Create a {info.kind} (409 if it exists)",
        responses={201: {"model": info.model}},
        openapi_extra=body_doc,
    )
    app.add_api_route(
        f"{obj_base}/{{name}}",
        read,
        methods=["GET"],
        tags=tags,
        summary=f"Read a {info.kind}",
        responses=one,
    )
    app.add_api_route(
        f"{obj_base}/{{name}}",
        replace,
        methods=["PUT"],
        tags=tags,
        summary=f"Replace a {info.kind} (409 on a stale metadata.resourceVersion)",
        responses=one,
        openapi_extra=body_doc,
    )
    app.add_api_route(
        f"{obj_base}/{{name}}",
        delete,
        methods=["DELETE"],
        tags=tags,
        summary=f"Delete a {info.kind}",
        responses=one,
    )


def _watch_response(
    cp: ControlPlane, kind: str, namespace: str | None, since: int | None
) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        last = since or 0
        source = cp.store.watch(kind, namespace, since=since)
        try:
            async for event in with_keepalive(source, cp.keepalive_interval, cp.closing):
                if event is None:
                    bookmark = {"kind": kind, "metadata": {"resourceVersion": str(last)}}
                    yield _line({"type": "BOOKMARK", "object": bookmark})
                else:
                    last = max(last, event.resource_version)
                    yield _event_line(event)
        except StoreError as exc:
            code, reason = _store_status(exc)
            yield _line({"type": "ERROR", "object": _status(code, reason, str(exc))})

    return StreamingResponse(lines(), media_type=NDJSON)


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _event_line(event: WatchEvent) -> bytes:
    return _line({"type": event.type, "object": event.object})


def _add_apply_and_tokens(
    app: FastAPI, cp: ControlPlane, admin: Callable[..., Awaitable[Principal]]
) -> None:
    apply_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["items"],
                        "properties": {"items": {"type": "array", "items": {"type": "object"}}},
                    }
                }
            },
        }
    }

    @app.post(
        "/api/v1/apply",
        tags=["apply"],
        summary="Validate all items, then create-or-replace all in one transaction",
        openapi_extra=apply_doc,
    )
    async def apply(request: Request, _who: Principal = Security(admin)) -> Object:
        body = await _json_body(request)
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise InvalidRequest(
                'the body must be {"items": [...]}', [FieldError("items", "must be a list")]
            )
        objects = _validate_items(items)
        stored = await cp.store.apply_many(objects)
        return {"kind": "List", "apiVersion": "v1", "items": stored}

    @app.post("/api/v1/tokens", tags=["tokens"], summary="Create a node token")
    async def create_token(
        request: TokenRequest = Body(), _who: Principal = Security(admin)
    ) -> TokenResponse:
        if request.kind != NODE:
            raise InvalidRequest(
                f"cannot create a token of kind {request.kind!r}",
                [FieldError("kind", 'must be "node"')],
            )
        try:
            check_dns1123_subdomain(request.node)
        except InvalidName as exc:
            raise InvalidRequest(str(exc), [FieldError("node", str(exc))]) from None
        token = await cp.tokens.issue_node_token(request.node)
        return TokenResponse(token=token, node=request.node, caPin=cp.ca.pin)


def _validate_items(items: list[Any]) -> list[Object]:
    """Validate every item (collecting every problem), refuse generated kinds and duplicates."""
    objects: list[Object] = []
    causes: list[FieldError] = []
    seen: dict[ResourceKey, int] = {}
    for index, item in enumerate(items):
        prefix = f"items[{index}]"
        try:
            obj = _validated(item, prefix)
        except InvalidRequest as exc:
            causes.extend(exc.causes)
            continue
        info = next(k for k in KINDS if k.kind == obj["kind"])
        if not info.user_writable:
            try:
                _refuse_write(info)
            except MethodNotAllowed as exc:
                causes.append(FieldError(f"{prefix}.kind", str(exc)))
            continue
        key = key_of(obj)
        if key in seen:
            causes.append(FieldError(prefix, f"{key} is also items[{seen[key]}]"))
            continue
        seen[key] = index
        objects.append(obj)
    if causes:
        raise InvalidRequest("nothing was applied: " + "; ".join(map(str, causes)), causes)
    return objects


# Node API ----------------------------------------------------------------------------------


def _add_node_api(
    app: FastAPI, cp: ControlPlane, principal: Callable[..., Awaitable[Principal]]
) -> None:
    tags: list[str | Enum] = ["node"]

    @app.get("/node/v1/ca.crt", tags=tags, summary="The mesh CA certificate (PEM); no token")
    async def ca_certificate() -> Response:
        return Response(cp.ca.cert_pem, media_type="application/x-pem-file")

    @app.put("/node/v1/nodes/{node}", tags=tags, summary="Register a node's tunnel address")
    async def register_node(
        node: str, body: NodeRegistration, who: Principal = Security(principal)
    ) -> Object:
        who.require_node(node)
        obj = _validated(
            {
                "apiVersion": "meshlet.dev/v1alpha1",
                "kind": "Node",
                "metadata": {"name": node},
                "spec": {"address": body.address, "port": body.port},
            }
        )
        (stored,) = await cp.store.apply_many([obj])
        return stored

    @app.put(
        "/node/v1/nodes/{node}/workloads",
        tags=tags,
        summary="Replace the set of Workloads this node's agent registers",
    )
    async def register_workloads(
        node: str, body: WorkloadRegistration, who: Principal = Security(principal)
    ) -> Object:
        who.require_node(node)
        objects = await _registered_workloads(cp, node, body.workloads)
        wanted = {key_of(obj) for obj in objects}
        stale = [
            key_of(obj)
            for obj in await cp.store.list("Workload")
            if (obj["metadata"].get("annotations") or {}).get(REGISTERED_BY) == node
            and key_of(obj) not in wanted
        ]
        stored = await cp.store.apply_many(objects, delete=stale)
        return {"kind": "WorkloadList", "apiVersion": "meshlet.dev/v1alpha1", "items": stored}

    @app.put(
        "/node/v1/nodes/{node}/health",
        tags=tags,
        summary="Report readiness of this node's workloads (writes Workload status.ready)",
    )
    async def report_health(
        node: str, body: HealthReport, who: Principal = Security(principal)
    ) -> dict[str, str]:
        who.require_node(node)
        await _write_health(cp, node, body.workloads)
        return {"status": "ok"}

    @app.post(
        "/node/v1/nodes/{node}/csr",
        tags=tags,
        summary="Sign a CSR for an identity hosted on this node",
    )
    async def sign_csr(
        node: str, body: CsrRequest, who: Principal = Security(principal)
    ) -> CsrResponse:
        who.require_node(node)
        await _check_hosted(cp, node, body.identity)
        try:
            cert = cp.ca.sign(body.csr.encode(), body.identity)
        except pki.PkiError as exc:
            raise InvalidRequest(str(exc), [FieldError("csr", str(exc))]) from None
        return CsrResponse(certificate=cert.decode(), ca=cp.ca.cert_pem.decode())

    @app.get(
        "/node/v1/nodes/{node}/config",
        tags=tags,
        summary="The node's compiled config (?watch=true: NDJSON stream, current first)",
    )
    async def node_config(
        node: str, request: Request, who: Principal = Security(principal)
    ) -> Response:
        who.require_node(node)
        if not _watch_requested(request):
            return Response(cp.hub.current(node).to_json(), media_type="application/json")
        return StreamingResponse(_config_lines(cp, node), media_type=NDJSON)


async def _config_lines(cp: ControlPlane, node: str) -> AsyncIterator[bytes]:
    changes = cp.hub.changes(node)
    async for config in with_keepalive(changes, cp.keepalive_interval, cp.closing):
        yield b"{}\n" if config is None else config.to_json() + b"\n"


async def _registered_workloads(cp: ControlPlane, node: str, items: list[Object]) -> list[Object]:
    """Validate a node's workload registration: its own node only, not someone else's name."""
    objects: list[Object] = []
    causes: list[FieldError] = []
    for index, item in enumerate(items):
        prefix = f"workloads[{index}]"
        obj = dict(item)
        obj.setdefault("apiVersion", "meshlet.dev/v1alpha1")
        obj.setdefault("kind", "Workload")
        spec = dict(obj.get("spec") or {})
        spec.setdefault("node", node)
        obj["spec"] = spec
        metadata = obj.get("metadata")
        if isinstance(metadata, dict):
            annotations = dict(metadata.get("annotations") or {})
            annotations[REGISTERED_BY] = node
            obj["metadata"] = {**metadata, "annotations": annotations}
        if spec["node"] != node:
            raise PermissionDenied(
                f"{prefix}.spec.node is {spec['node']!r}: node {node!r} may only register "
                "workloads placed on itself"
            )
        if obj["kind"] != "Workload":
            causes.append(FieldError(f"{prefix}.kind", "must be Workload"))
            continue
        try:
            objects.append(_validated(obj, prefix))
        except InvalidRequest as exc:
            causes.extend(exc.causes)
    if causes:
        raise InvalidRequest("no workload was registered: " + "; ".join(map(str, causes)), causes)
    for obj in objects:
        key = key_of(obj)
        with contextlib.suppress(NotFound):
            existing = await cp.store.get(key.kind, key.namespace, key.name)
            placed = existing["spec"].get("node")
            if placed != node:
                raise Conflict(
                    f"{key} already exists on node {placed!r}; node {node!r} cannot take it over"
                )
    return objects


#: Attempts at writing health when an admin write races with it.
_HEALTH_ATTEMPTS = 3


async def _write_health(
    cp: ControlPlane, node: str, report: Mapping[str, Mapping[str, bool]]
) -> None:
    for attempt in range(_HEALTH_ATTEMPTS):
        updated: list[Object] = []
        for ref, ready in report.items():
            namespace, _, name = ref.partition("/")
            if not name:
                raise InvalidRequest(
                    f"workload {ref!r} must be written <namespace>/<name>",
                    [FieldError(f"workloads[{ref}]", "must be <namespace>/<name>")],
                )
            obj = await cp.store.get("Workload", namespace, name)
            if obj["spec"].get("node") != node:
                raise PermissionDenied(
                    f"Workload {ref} is placed on node {obj['spec'].get('node')!r}, not {node!r}"
                )
            obj["status"] = {**(obj.get("status") or {}), "ready": dict(ready)}
            updated.append(obj)
        try:
            await cp.store.apply_many(updated)
            return
        except Conflict:
            if attempt == _HEALTH_ATTEMPTS - 1:
                raise


async def _check_hosted(cp: ControlPlane, node: str, identity: str) -> None:
    """403 unless ``identity`` is the node's own or a meshlet with a workload on the node."""
    td = cp.trust_domain
    if identity == pki.node_identity(td, node):
        return
    prefix = f"spiffe://{td}/ns/"
    rest = identity[len(prefix) :] if identity.startswith(prefix) else ""
    namespace, _, tail = rest.partition("/meshlet/")
    if namespace and tail and "/" not in namespace and "/" not in tail:
        for workload in await cp.store.list("Workload", namespace):
            if (
                workload["spec"].get("node") == node
                and workload["metadata"].get("labels", {}).get(MESHLET_LABEL) == tail
            ):
                return
    raise PermissionDenied(
        f"node {node!r} hosts no workload with identity {identity!r}: a node may get "
        f"certificates for {pki.node_identity(td, node)} and for the meshlets of its own "
        "workloads only"
    )
