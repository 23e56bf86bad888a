"""Inode numbers for namespace paths, with the kernel's lookup counts.

The namespace is addressed by path; the kernel by inode. A path keeps its inode while the kernel
remembers it (lookup count > 0), and an inode whose name was unlinked or replaced stays valid
(detached, no path) until the kernel forgets it, so open files keep working.
"""

from __future__ import annotations

from desktop.core.namespace.paths import is_under

ROOT_INODE = 1


class InodeTable:
    def __init__(self) -> None:
        self._path: dict[int, str | None] = {ROOT_INODE: "/"}
        self._inode: dict[str, int] = {"/": ROOT_INODE}
        self._lookups: dict[int, int] = {}
        self._next = ROOT_INODE + 1

    def __len__(self) -> int:
        return len(self._path)

    def __contains__(self, ino: int) -> bool:
        return ino in self._path

    def inode(self, path: str) -> int:
        """The inode of `path`, allocating one if the path has none yet."""
        found = self._inode.get(path)
        if found is not None:
            return found
        ino = self._next
        self._next += 1
        self._inode[path] = ino
        self._path[ino] = path
        return ino

    def known(self, path: str) -> int | None:
        return self._inode.get(path)

    def path(self, ino: int) -> str | None:
        """The path of `ino`; None when detached (unlinked or replaced but still referenced).

        Raises KeyError for an inode the kernel has forgotten (or never had)."""
        return self._path[ino]

    def lookup(self, path: str) -> int:
        """One more kernel reference to `path`'s inode (lookup, create, readdirplus)."""
        ino = self.inode(path)
        self._lookups[ino] = self._lookups.get(ino, 0) + 1
        return ino

    def lookups(self, ino: int) -> int:
        return self._lookups.get(ino, 0)

    def forget(self, ino: int, count: int) -> None:
        left = self._lookups.get(ino, 0) - count
        if left > 0:
            self._lookups[ino] = left
            return
        self._lookups.pop(ino, None)
        if ino == ROOT_INODE:
            return
        path = self._path.pop(ino, None)
        if path is not None and self._inode.get(path) == ino:
            del self._inode[path]

    def detach(self, path: str) -> int | None:
        """`path` (and everything below) no longer names its inodes; they live until forgotten."""
        moved = [p for p in self._inode if p == path or is_under(p, path)]
        first: int | None = None
        for p in moved:
            ino = self._inode.pop(p)
            if p == path:
                first = ino
            if self._lookups.get(ino, 0) > 0:
                self._path[ino] = None
            else:
                self._path.pop(ino, None)
        return first

    def rename(self, src: str, dst: str) -> None:
        """Move `src` and its subtree to `dst`; whatever `dst` named before is detached."""
        if src == dst:
            return
        self.detach(dst)
        moved = [(p, ino) for p, ino in self._inode.items() if p == src or is_under(p, src)]
        for p, _ in moved:
            del self._inode[p]
        for p, ino in moved:
            new = dst + p[len(src) :]
            self._inode[new] = ino
            self._path[ino] = new
