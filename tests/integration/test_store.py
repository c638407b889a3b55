"""The SQLite ResourceStore on real files: CRUD, versions, batches, watches, restarts, tokens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from meshlet.store import (
    AlreadyExists,
    Conflict,
    Expired,
    NotFound,
    ResourceKey,
    SqliteStore,
    TokenRecord,
    WatchEvent,
)


def meshlet(name: str, ns: str = "demo", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ext.burningxflame.github.com/v1",
        "kind": "Meshlet",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "state.db")
    yield s
    await s.close()


async def test_create_get_list_and_store_owned_metadata(store: SqliteStore) -> None:
    created = await store.create(meshlet("a"))
    await store.create(meshlet("b", ns="other"))
    assert created["metadata"]["resourceVersion"] == "1"
    assert created["metadata"]["uid"]
    assert await store.get("Meshlet", "demo", "a") == created
    assert [o["metadata"]["name"] for o in await store.list("Meshlet")] == ["a", "b"]
    assert [o["metadata"]["name"] for o in await store.list("Meshlet", "other")] == ["b"]
    assert await store.list("Workload") == []


async def test_create_of_existing_object_conflicts(store: SqliteStore) -> None:
    await store.create(meshlet("a"))
    with pytest.raises(AlreadyExists, match="Meshlet demo/a already exists"):
        await store.create(meshlet("a"))


async def test_missing_objects_raise_not_found(store: SqliteStore) -> None:
    with pytest.raises(NotFound, match="Meshlet demo/x not found"):
        await store.get("Meshlet", "demo", "x")
    with pytest.raises(NotFound):
        await store.delete("Meshlet", "demo", "x")
    with pytest.raises(NotFound):
        await store.replace(meshlet("x"))


async def test_replace_checks_resource_version_and_keeps_uid(store: SqliteStore) -> None:
    created = await store.create(meshlet("a"))
    changed = meshlet("a", client=[])
    changed["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    replaced = await store.replace(changed)
    assert replaced["metadata"]["resourceVersion"] == "2"
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    stale = meshlet("a", server=None)
    stale["metadata"]["resourceVersion"] = "1"
    with pytest.raises(Conflict, match="was modified"):
        await store.replace(stale)


async def test_unchanged_replace_keeps_version_and_status_is_kept(store: SqliteStore) -> None:
    created = await store.create({**meshlet("a"), "status": {"ready": True}})
    again = await store.replace(meshlet("a"))
    assert again == created
    assert await store.resource_version() == 1


async def test_apply_many_is_all_or_nothing(store: SqliteStore) -> None:
    first = await store.create(meshlet("a"))
    stale = meshlet("a", client=[])
    stale["metadata"]["resourceVersion"] = "99"
    with pytest.raises(Conflict):
        await store.apply_many([meshlet("new"), stale])
    assert await store.list("Meshlet") == [first]
    stored = await store.apply_many(
        [meshlet("new"), meshlet("a", client=[])], delete=[ResourceKey("Meshlet", "demo", "zz")]
    )
    assert [o["metadata"]["resourceVersion"] for o in stored] == ["2", "3"]
    await store.apply_many([], delete=[ResourceKey("Meshlet", "demo", "new")])
    assert [o["metadata"]["name"] for o in await store.list("Meshlet")] == ["a"]


async def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = await SqliteStore.open(path)
    created = await first.create(meshlet("a"))
    await first.add_token(TokenRecord("h1", "node", "n1"))
    await first.close()
    second = await SqliteStore.open(path)
    try:
        assert await second.get("Meshlet", "demo", "a") == created
        assert await second.find_token("h1") == TokenRecord("h1", "node", "n1")
        nxt = await second.create(meshlet("b"))
        assert nxt["metadata"]["resourceVersion"] == "2"
    finally:
        await second.close()


async def _take(events: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    out = []
    async for event in events:
        out.append(event)
        if len(out) == n:
            break
    return out


async def test_watch_starts_with_snapshot_then_streams_changes(store: SqliteStore) -> None:
    await store.create(meshlet("a"))
    await store.create({**meshlet("w"), "kind": "Workload"})
    watch = store.watch("Meshlet")
    first = await anext(watch)
    assert (first.type, first.key.name) == ("ADDED", "a")
    await store.replace(meshlet("a", client=[]))
    await store.delete("Meshlet", "demo", "a")
    rest = await asyncio.wait_for(_take(watch, 2), 5)
    assert [(e.type, e.resource_version) for e in rest] == [("MODIFIED", 3), ("DELETED", 4)]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_watch_resumes_from_a_resource_version(store: SqliteStore) -> None:
    await store.create(meshlet("a"))
    await store.create(meshlet("b"))
    await store.delete("Meshlet", "demo", "a")
    events = await asyncio.wait_for(_take(store.watch(since=1), 2), 5)
    assert [(e.type, e.key.name) for e in events] == [("ADDED", "b"), ("DELETED", "a")]


async def test_watch_from_compacted_history_is_expired(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "s.db", history=2)
    try:
        for name in "abcd":
            await store.create(meshlet(name))
        with pytest.raises(Expired):
            await anext(store.watch(since=1))
        assert [e.key.name for e in await _take(store.watch(since=2), 2)] == ["c", "d"]
    finally:
        await store.close()


async def test_tokens_are_found_by_hash_and_revoked_by_role(store: SqliteStore) -> None:
    await store.add_token(TokenRecord("a", "admin"))
    await store.add_token(TokenRecord("n", "node", "node-a"))
    assert await store.find_token("a") == TokenRecord("a", "admin", None)
    assert await store.find_token("zz") is None
    assert await store.delete_tokens(role="admin") == 1
    assert await store.find_token("a") is None
    assert await store.find_token("n") is not None
