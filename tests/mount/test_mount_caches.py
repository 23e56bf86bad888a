"""The mount's speed-ups without a mount: the name cache, spare dirty files, upload holding.

The name cache runs over an in-memory stand-in for the daemon's namespace (the real one needs a
daemon; the real mount tests cover it end to end, including CLI puts seen through the mount).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import trio
import trio.testing

from desktop.core.namespace import FileInfo
from desktop.core.namespace.paths import parent
from desktop.fuse.backend import NsNode
from desktop.fuse.cache import Cache
from desktop.fuse.nscache import NamespaceCache
from desktop.fuse.planner import UploadPlanner


class MemoryNames:
    """Just the read side of the Backend protocol the name cache uses, with call counts."""

    def __init__(self) -> None:
        self.nodes: dict[str, NsNode] = {}
        self.listdirs = 0
        self.foreign = 0
        self.gate: trio.Event | None = None

    def add(self, path: str, kind: str = "file", size: int = 0) -> None:
        self.nodes[path] = NsNode(path, path.rsplit("/", 1)[1], kind, size)

    async def lookup(self, path: str) -> NsNode | None:
        return self.nodes.get(path)

    async def listdir(self, path: str) -> list[NsNode]:
        self.listdirs += 1
        snapshot = [n for p, n in self.nodes.items() if parent(p) == path and p != "/"]
        if self.gate is not None:
            await self.gate.wait()
        return snapshot

    def foreign_changes(self) -> int:
        return self.foreign

    async def put_many(self, items: Sequence[tuple[str, FileInfo, dict[int, str]]]) -> None:
        raise AssertionError("not used")

    def changes(self) -> AsyncIterator[list[str]]:
        raise AssertionError("not used")


def names_over(backend: MemoryNames) -> NamespaceCache:
    return NamespaceCache(backend)  # type: ignore[arg-type]  # a partial stand-in


async def test_lookups_come_from_one_listing_including_misses() -> None:
    backend = MemoryNames()
    backend.add("/d", "dir")
    backend.add("/d/a")
    names = names_over(backend)
    assert (await names.lookup("/d/a")) is not None
    for i in range(100):
        assert await names.lookup(f"/d/missing{i}") is None
    assert backend.listdirs == 1


async def test_own_changes_update_in_place_and_others_invalidate() -> None:
    backend = MemoryNames()
    backend.add("/d", "dir")
    names = names_over(backend)
    assert await names.lookup("/d/new") is None
    names.stored("/d/new", FileInfo("pc1r:x", 5, 1, "h", 0o644))
    found = await names.lookup("/d/new")
    assert found is not None and found.size == 5 and found.cap == "pc1r:x"
    names.removed("/d/new")
    assert await names.lookup("/d/new") is None
    backend.add("/d/remote")
    assert await names.lookup("/d/remote") is None  # cached miss until told
    names.invalidate(["/d/remote"])
    assert await names.lookup("/d/remote") is not None
    backend.add("/d/by-cli")
    backend.foreign += 1  # another part of the daemon appended to the log
    assert await names.lookup("/d/by-cli") is not None


async def test_a_listing_read_during_a_change_is_not_kept() -> None:
    backend = MemoryNames()
    backend.add("/d", "dir")
    names = names_over(backend)
    backend.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(names.lookup, "/d/late")
        await trio.testing.wait_all_tasks_blocked()
        backend.add("/d/late")
        names.invalidate(["/d/late"])  # arrives while the stale listing is in flight
        backend.gate.set()
    backend.gate = None
    assert await names.lookup("/d/late") is not None
    assert "/d" in names


def test_spare_files_are_used_and_survive_restart(tmp_path: Path) -> None:
    cache = Cache(tmp_path, limit=1 << 30)
    made = cache.make_spares(cache.spare_names(3))
    cache.add_spares(made)
    entry, fd = cache.create_dirty_open("/a", 0o644, 1)
    os.write(fd, b"data")
    os.close(fd)
    cache.modified(entry, 4)
    assert entry.name in made and cache.spares() == 2
    (cache.dirty_dir / "999").write_bytes(b"orphan")  # a dropped file a crash left behind
    cache.close()
    again = Cache(tmp_path, limit=1 << 30)
    reloaded = again.dirty_at("/a")
    assert reloaded is not None and again.dirty_path(reloaded).read_bytes() == b"data"
    assert again.spares() == 2
    assert not (again.dirty_dir / "999").exists()
    again.drop_dirty(reloaded.id)
    assert not again.dirty_path(reloaded).exists()
    fresh = again.create_dirty("/b", 0o644, 2)
    assert fresh.name.startswith("s") and again.spares() == 1


def test_uploads_wait_for_writes_to_settle_but_not_forever() -> None:
    planner = UploadPlanner(delay=1.0, max_hold=10.0)
    planner.changed(1, now=0.0)
    planner.closed(1, now=0.0)
    for t in range(1, 9):  # other files keep being written
        planner.activity(float(t))
    assert planner.due(5.0) == []
    assert planner.due(9.5) == [1]  # a second after the last write
    planner.finished(1, 9.5, ok=True)
    planner.closed(2, now=0.0)
    for t in range(1, 30):
        planner.activity(float(t))
    assert planner.due(9.0) == []
    assert planner.due(11.0) == [2]  # held at most max_hold past its due time
    planner.closed(3, now=20.0)
    planner.urgent(3, now=20.0)  # fsync does not wait
    assert planner.due(20.0) == [3]
