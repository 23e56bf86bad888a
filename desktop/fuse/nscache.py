"""An in-memory copy of the namespace folders the mount has looked at, positive and negative.

Without it every FUSE lookup (and the lookup the kernel does before each create) is a round
trip to the daemon's single database thread, which is also busy appending uploaded files to
the log: a burst of small-file creates then waits behind fsyncs. Here a folder is read once
(one `listdir`) and every later lookup in it, including of names that do not exist, is answered
from memory.

Staying correct: the mount's own changes go through `refresh`/`stored`/`removed`/`forget_tree`
(the file system and uploader call them after each change they make), other devices' changes
through `invalidate` (from the backend's change stream), and local changes made elsewhere in
the daemon (CLI put, the sync folder) drop the whole cache (`backend.foreign_changes()` moves).
A listing read while a change to its folder was in flight is not kept (per-folder generation,
and an epoch for whole-cache drops), so a stale read never overwrites a newer change. Memory is
bounded: least recently used folders are dropped beyond `max_entries` names in all.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict
from collections.abc import Iterable

from desktop.core.namespace import FileInfo
from desktop.core.namespace.paths import is_under, parent
from desktop.fuse.backend import Backend, NsNode


class NamespaceCache:
    def __init__(self, backend: Backend, max_entries: int = 200_000) -> None:
        self.backend = backend
        self.max_entries = max_entries
        self._folders: OrderedDict[str, dict[str, NsNode]] = OrderedDict()
        self._gen: dict[str, int] = {}
        self._entries = 0
        self._foreign = backend.foreign_changes()
        self._epoch = 0
        self.loads = 0  # folder reads from the backend (for tests and status)

    def __contains__(self, folder: str) -> bool:
        return folder in self._folders

    async def lookup(self, path: str) -> NsNode | None:
        if path == "/":
            return None
        folder = await self._folder(parent(path))
        return folder.get(unicodedata.normalize("NFC", path.rsplit("/", 1)[1]))

    async def listdir(self, path: str) -> list[NsNode]:
        folder = await self._folder(path)
        return sorted(folder.values(), key=lambda n: n.name)

    def clear(self) -> None:
        self._epoch += 1
        self._folders.clear()
        self._entries = 0
        self._gen.clear()

    def _check_foreign(self) -> None:
        foreign = self.backend.foreign_changes()
        if foreign != self._foreign:
            self._foreign = foreign
            self.clear()

    async def _folder(self, path: str) -> dict[str, NsNode]:
        self._check_foreign()
        found = self._folders.get(path)
        if found is not None:
            self._folders.move_to_end(path)
            return found
        gen, epoch = self._gen.get(path, 0), self._epoch
        nodes = await self.backend.listdir(path)
        folder = {n.name: n for n in nodes}
        self._check_foreign()
        if self._gen.get(path, 0) == gen and self._epoch == epoch and path not in self._folders:
            self.loads += 1
            self._folders[path] = folder
            self._entries += len(folder)
            self._trim()
        return self._folders.get(path, folder)

    def _trim(self) -> None:
        while self._entries > self.max_entries and len(self._folders) > 1:
            _, dropped = self._folders.popitem(last=False)
            self._entries -= len(dropped)

    def _bump(self, folder: str) -> None:
        self._gen[folder] = self._gen.get(folder, 0) + 1

    def _drop(self, folder: str) -> None:
        self._bump(folder)
        dropped = self._folders.pop(folder, None)
        if dropped is not None:
            self._entries -= len(dropped)

    def _set(self, path: str, node: NsNode | None) -> None:
        folder_path = parent(path)
        self._bump(folder_path)
        folder = self._folders.get(folder_path)
        if folder is None:
            return
        name = path.rsplit("/", 1)[1]
        before = len(folder)
        if node is None:
            folder.pop(name, None)
        else:
            folder[name] = node
        self._entries += len(folder) - before

    async def refresh(self, path: str) -> NsNode | None:
        """Re-read one path after this device changed it; returns what is there now."""
        self._bump(parent(path))
        node = await self.backend.lookup(path)
        self._set(path, node)
        if node is None or node.kind != "dir":
            self.forget_tree(path, include_parent=False)
        return node

    def removed(self, path: str) -> None:
        """This device removed `path` (no read needed: nothing is there now)."""
        self._set(path, None)
        self.forget_tree(path, include_parent=False)

    def stored(self, path: str, info: FileInfo) -> None:
        """This device put `info` at `path` (as `Namespace.append(PutOp)` makes it appear)."""
        name = path.rsplit("/", 1)[1]
        self._set(
            path,
            NsNode(
                path,
                name,
                "file",
                info.size,
                info.mtime_ns,
                info.mode,
                info.cap,
                None,
                info.content_hash,
            ),
        )

    def forget_tree(self, path: str, *, include_parent: bool = True) -> None:
        """Drop what is cached at and below `path` (a folder moved or removed)."""
        if include_parent and path != "/":
            self._drop(parent(path))
        for folder in [f for f in self._folders if f == path or is_under(f, path)]:
            self._drop(folder)
        self._bump(path)

    def invalidate(self, paths: Iterable[str]) -> None:
        """Other devices changed these paths."""
        for path in paths:
            self.forget_tree(path)
