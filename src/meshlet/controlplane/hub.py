"""Config distribution: recompile node configs after store changes and wake their watchers.

Theory of operation. One background task follows the store's change stream (every kind but
MeshService, which this hub itself writes). A change marks the state dirty; after a short quiet
period (``debounce``, 50 ms by default, so that a batch apply compiles once) the hub:

1. lists Meshlets, Workloads and Nodes from the store and validates them into models (an object
   that no longer validates is skipped and logged, never fatal);
2. regenerates the MeshService objects from the Meshlets and writes the difference to the store
   in one transaction (unchanged objects are not rewritten);
3. compiles every node's :class:`~meshlet.nodeconfig.NodeConfig` with
   ``generation`` = the store's resourceVersion at compile time, so generations only grow, across
   restarts too;
4. for each node whose config changed (ignoring the generation), publishes the new config and
   wakes the watchers. A node whose config did not change keeps its old generation, so its
   agent is not woken for nothing.

Watchers iterate :meth:`ConfigHub.changes`: the node's current config, then each newer one.
A node the compiler says nothing about gets an empty config (no workloads), so an agent always
has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from msgspec.structs import replace

from meshlet.api.errors import ValidationFailure
from meshlet.api.meshlet_kind import Meshlet
from meshlet.api.meta import Resource
from meshlet.api.node import Node
from meshlet.api.validation import validate_object
from meshlet.api.workload import Workload
from meshlet.controlplane.compiler import compile_node_configs, generate_mesh_services
from meshlet.nodeconfig import NodeConfig
from meshlet.store import Expired, ResourceKey, ResourceStore, StoreError, key_of

__all__ = ["ConfigHub"]

log = logging.getLogger(__name__)

_R = TypeVar("_R", bound=Resource)
#: Pause before retrying after the store failed.
_RETRY_DELAY = 1.0


class ConfigHub:
    def __init__(self, store: ResourceStore, *, trust_domain: str, debounce: float = 0.05) -> None:
        self._store = store
        self._trust_domain = trust_domain
        self._debounce = debounce
        self._configs: dict[str, NodeConfig] = {}
        self._published = asyncio.Event()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Compile once (so configs exist before the first request), then follow the store."""
        since = await self._store.resource_version()
        await self.recompile()
        self._task = asyncio.create_task(self._run(since), name="meshlet-config-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def current(self, node: str) -> NodeConfig:
        config = self._configs.get(node)
        if config is None:
            return NodeConfig(node=node, trust_domain=self._trust_domain)
        return config

    async def changes(self, node: str) -> AsyncIterator[NodeConfig]:
        """The node's current config, then every newer one, forever."""
        config = self.current(node)
        yield config
        while True:
            # Take the event before reading the config: a publish in between sets this event.
            published = self._published
            newer = self.current(node)
            if newer.generation != config.generation:
                config = newer
                yield config
            else:
                await published.wait()

    # Following the store ---------------------------------------------------------------------

    async def _run(self, since: int) -> None:
        follower = asyncio.create_task(self._follow(since), name="meshlet-config-hub-watch")
        try:
            while True:
                await self._dirty.wait()
                await asyncio.sleep(self._debounce)
                self._dirty.clear()
                try:
                    await self.recompile()
                except StoreError as exc:
                    log.error("cannot compile node configs: %s; retrying", exc)
                    self._dirty.set()
                    await asyncio.sleep(_RETRY_DELAY)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower

    async def _follow(self, since: int | None) -> None:
        while True:
            try:
                async for event in self._store.watch(since=since):
                    since = event.resource_version
                    if event.key.kind != "MeshService":
                        self._dirty.set()
                return  # the store was closed
            except Expired:
                since = None  # start over from a fresh snapshot: recompile everything
                self._dirty.set()
            except StoreError as exc:
                log.error("lost the store's change stream: %s; retrying", exc)
                await asyncio.sleep(_RETRY_DELAY)
                self._dirty.set()

    async def recompile(self) -> None:
        """Regenerate MeshServices and node configs from the store now."""
        generation = await self._store.resource_version()
        meshlets = await self._load("Meshlet", Meshlet)
        workloads = await self._load("Workload", Workload)
        nodes = await self._load("Node", Node)
        await self._sync_mesh_services(meshlets)
        compiled = compile_node_configs(
            meshlets, workloads, nodes, trust_domain=self._trust_domain, generation=generation
        )
        for node in set(self._configs) - set(compiled):
            compiled[node] = NodeConfig(
                node=node, generation=generation, trust_domain=self._trust_domain
            )
        changed = False
        for node, config in compiled.items():
            old = self._configs.get(node)
            if old is not None and replace(config, generation=old.generation) == old:
                continue
            self._configs[node] = config
            changed = True
        if changed:
            published, self._published = self._published, asyncio.Event()
            published.set()

    async def _load(self, kind: str, model: type[_R]) -> list[_R]:
        result: list[_R] = []
        for obj in await self._store.list(kind):
            try:
                resource = validate_object(obj)
            except ValidationFailure as exc:
                log.warning("ignoring stored %s that no longer validates: %s", key_of(obj), exc)
                continue
            if isinstance(resource, model):
                result.append(resource)
        return result

    async def _sync_mesh_services(self, meshlets: Sequence[Meshlet]) -> None:
        desired: list[dict[str, Any]] = [svc.to_dict() for svc in generate_mesh_services(meshlets)]
        wanted = {key_of(obj) for obj in desired}
        stale: list[ResourceKey] = [
            key_of(obj)
            for obj in await self._store.list("MeshService")
            if key_of(obj) not in wanted
        ]
        await self._store.apply_many(desired, delete=stale)
