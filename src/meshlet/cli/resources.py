"""Commands that talk to the control plane: ``apply``, ``get``, ``describe``, ``delete``,
``token create``.

Each command resolves the client settings (:mod:`meshlet.cli.settings`), runs one coroutine
against a :class:`meshlet.cpclient.CPClient` and prints kubectl-style output
(:mod:`meshlet.cli.output`). ``apply`` and ``delete -f`` validate every manifest locally first
(:mod:`meshlet.cli.manifests`) and send nothing when any is invalid; ``apply`` then makes one
all-or-nothing call.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from meshlet.api.manifests import dump_manifests
from meshlet.api.meta import Resource
from meshlet.api.registry import KindInfo, kind_by_name, kind_of
from meshlet.cli.console import err, out
from meshlet.cli.errors import CLIError, ConfigError
from meshlet.cli.manifests import load_all, read_sources
from meshlet.cli.output import columns_for, describe_lines, object_ref, resource_table
from meshlet.cli.settings import ClientFile, ClientSettings, resolve_client_settings
from meshlet.cpclient import CPClient, CPError, NotFound, load_client_config

__all__ = [
    "apply",
    "delete",
    "describe",
    "get",
    "open_client",
    "token_create",
]

T = TypeVar("T")

CpOpt = Annotated[
    str | None,
    typer.Option("--cp", help="Control plane URL, e.g. https://127.0.0.1:15443 (env MESHLET_CP)."),
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", help="Admin token (env MESHLET_TOKEN).", show_default=False)
]
CaOpt = Annotated[
    Path | None,
    typer.Option("--ca-file", help="The control plane's CA certificate (env MESHLET_CA_FILE)."),
]
NamespaceOpt = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the object(s).")]
FilesOpt = Annotated[
    list[str],
    typer.Option("--filename", "-f", help="A file, a directory of *.yaml/*.yml/*.json, or -."),
]


class OutputFormat(StrEnum):
    table = "table"
    wide = "wide"
    yaml = "yaml"
    json = "json"


def _load_client_file(path: Path) -> ClientFile:
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    try:
        config = load_client_config(path)
        token = config.read_token()
    except CPError as exc:
        raise ConfigError(f"{path} is not usable: {exc.message}") from None
    return ClientFile(server=config.server, token=token, ca_file=config.ca_file)


def client_settings(cp: str | None, token: str | None, ca_file: Path | None) -> ClientSettings:
    return resolve_client_settings(
        cp=cp, token=token, ca_file=ca_file, env=os.environ, load_client_file=_load_client_file
    )


def open_client(settings: ClientSettings) -> CPClient:
    return CPClient(settings.server, settings.token, ca_file=str(settings.ca_file))


def _run(
    cp: str | None,
    token: str | None,
    ca_file: Path | None,
    action: Callable[[CPClient], Awaitable[T]],
) -> T:
    settings = client_settings(cp, token, ca_file)

    async def go() -> T:
        async with open_client(settings) as client:
            return await action(client)

    return asyncio.run(go())


def _ref(obj: Mapping[str, Any] | Resource) -> str:
    if isinstance(obj, Resource):
        info = kind_of(obj)
        return object_ref(info.kind, info.group, obj.name)
    info = kind_by_name(str(obj.get("kind")))
    return object_ref(info.kind, info.group, str((obj.get("metadata") or {}).get("name")))


def _key(kind: str, namespace: str | None, name: str) -> tuple[str, str, str]:
    return (kind, namespace or "", name)


def _obj_key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    metadata = obj.get("metadata") or {}
    return _key(str(obj.get("kind")), metadata.get("namespace"), str(metadata.get("name")))


def _rv(obj: Mapping[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("resourceVersion")


def _apply_verb(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """kubectl's word: the control plane keeps the resourceVersion of an unchanged object."""
    if before is None:
        return "created"
    return "unchanged" if _rv(before) == _rv(after) else "configured"


def apply(
    filename: FilesOpt,
    cp: CpOpt = None,
    token: TokenOpt = None,
    ca_file: CaOpt = None,
) -> None:
    """Create or update objects from manifests, all or nothing.

    Every document is validated locally first: on any error, every problem is printed (file,
    document, object, field path) and nothing is sent.
    """
    if not filename:
        raise CLIError("nothing to apply: pass -f <file|dir|->")
    objects = load_all(read_sources(filename))
    items = [obj.to_dict() for obj in objects]

    async def go(client: CPClient) -> list[tuple[str, str]]:
        before = await _existing(client, objects)
        stored = await client.apply(items)
        return [
            (_ref(obj), _apply_verb(before.get(_obj_key(item)), after))
            for obj, item, after in zip(objects, items, stored, strict=True)
        ]

    for ref, verb in _run(cp, token, ca_file, go):
        out.print(f"{ref} {verb}")


async def _existing(
    client: CPClient, objects: list[Resource]
) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    """The stored versions of the objects about to be applied (to print created/configured)."""
    found: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    scopes = {(obj.kind, obj.namespace if kind_of(obj).namespaced else None) for obj in objects}
    for kind, namespace in sorted(scopes, key=lambda s: (s[0], s[1] or "")):
        for stored in await client.list(kind, namespace):
            found[_obj_key(stored)] = stored
    return found


def _scope(info: KindInfo, namespace: str) -> str | None:
    return namespace if info.namespaced else None


def get(
    kind: Annotated[
        str, typer.Argument(help="meshlets (ml), workloads (wl), meshservices (ms), nodes (no)")
    ],
    name: Annotated[str | None, typer.Argument(help="One object; all when omitted.")] = None,
    namespace: NamespaceOpt = "default",
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
    ] = False,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table, wide, yaml or json.")
    ] = OutputFormat.table,
    cp: CpOpt = None,
    token: TokenOpt = None,
    ca_file: CaOpt = None,
) -> None:
    """List objects of a kind, or show one (kubectl-like table, or -o yaml|json|wide)."""
    info = kind_by_name(kind)

    async def go(client: CPClient) -> list[dict[str, Any]]:
        if name is not None:
            try:
                return [await client.get(info.kind, name, _scope(info, namespace))]
            except NotFound:
                raise CLIError(_not_found(info, name, namespace)) from None
        return await client.list(info.kind, None if all_namespaces else _scope(info, namespace))

    objects = _run(cp, token, ca_file, go)
    if output in (OutputFormat.yaml, OutputFormat.json):
        fmt: Literal["yaml", "json"] = "json" if output is OutputFormat.json else "yaml"
        sys.stdout.write(dump_manifests(objects, fmt))
        return
    if not objects:
        where = "" if all_namespaces or not info.namespaced else f" in {namespace} namespace"
        err.print(f"No resources found{where}.")
        return
    columns = columns_for(
        info.kind,
        all_namespaces=all_namespaces,
        namespaced=info.namespaced,
        wide=output is OutputFormat.wide,
    )
    out.print(resource_table(objects, columns))


def describe(
    kind: Annotated[
        str, typer.Argument(help="meshlets (ml), workloads (wl), meshservices (ms), nodes (no)")
    ],
    name: Annotated[str, typer.Argument(help="Name of the object.")],
    namespace: NamespaceOpt = "default",
    cp: CpOpt = None,
    token: TokenOpt = None,
    ca_file: CaOpt = None,
) -> None:
    """Show one object in detail."""
    info = kind_by_name(kind)

    async def go(client: CPClient) -> dict[str, Any]:
        try:
            return await client.get(info.kind, name, _scope(info, namespace))
        except NotFound:
            raise CLIError(_not_found(info, name, namespace)) from None

    for line in describe_lines(_run(cp, token, ca_file, go)):
        out.print(line)


def delete(
    kind: Annotated[str | None, typer.Argument(help="Kind of the object.")] = None,
    name: Annotated[str | None, typer.Argument(help="Name of the object.")] = None,
    namespace: NamespaceOpt = "default",
    filename: Annotated[
        list[str] | None,
        typer.Option("--filename", "-f", help="Delete the objects these manifests describe."),
    ] = None,
    cp: CpOpt = None,
    token: TokenOpt = None,
    ca_file: CaOpt = None,
) -> None:
    """Delete one object (KIND NAME) or every object of manifests (-f)."""
    targets: list[tuple[KindInfo, str, str | None]]
    if filename:
        if kind or name:
            raise CLIError("give either KIND NAME or -f, not both")
        targets = [
            (kind_of(obj), obj.name, obj.namespace if kind_of(obj).namespaced else None)
            for obj in load_all(read_sources(filename))
        ]
    elif kind and name:
        info = kind_by_name(kind)
        targets = [(info, name, _scope(info, namespace))]
    else:
        raise CLIError(
            "nothing to delete: give KIND NAME (e.g. `meshlet delete ml echo -n demo`) or -f"
        )

    async def go(client: CPClient) -> list[str]:
        done, missing = [], []
        for info, obj_name, ns in targets:
            try:
                await client.delete(info.kind, obj_name, ns)
            except NotFound:
                missing.append(_not_found(info, obj_name, ns or ""))
                continue
            done.append(object_ref(info.kind, info.group, obj_name))
            out.print(f"{done[-1]} deleted")
        if missing:
            raise CLIError("; ".join(missing))
        return done

    _run(cp, token, ca_file, go)


def _not_found(info: KindInfo, name: str, namespace: str) -> str:
    where = f" in namespace {namespace!r}" if info.namespaced else ""
    hint = (
        f" (list them with `meshlet get {info.plural} -A`)"
        if info.namespaced
        else f" (list them with `meshlet get {info.plural}`)"
    )
    return f"{info.singular} {name!r} not found{where}{hint}"


def token_create(
    kind: Annotated[str, typer.Argument(help="Token kind: node.")],
    node: Annotated[str, typer.Argument(help="The node the token is bound to.")],
    cp: CpOpt = None,
    token: TokenOpt = None,
    ca_file: CaOpt = None,
) -> None:
    """Create a node token; prints `<token>#sha256:<CA pin>` for `meshlet agent run`."""
    if kind != "node":
        raise CLIError(f"unknown token kind {kind!r}: only `meshlet token create node <node>`")
    settings = client_settings(cp, token, ca_file)

    async def go() -> str:
        async with open_client(settings) as client:
            return (await client.create_node_token(node)).pinned

    sys.stdout.write(asyncio.run(go()) + "\n")
    err.print(
        f"On node {node}: save the token to a file (mode 0600) and run\n"
        f"  meshlet agent run --cp {settings.server} --token-file <file> --node {node} "
        "--config agent.yaml",
        markup=False,
    )
