"""What the mount needs from the daemon, as a protocol so the fuse package never imports it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions
from desktop.core.namespace import FileInfo, Op


@dataclass(frozen=True)
class NsNode:
    """One namespace entry as the mount shows it."""

    path: str
    name: str
    kind: str  # "file", "dir" or "link"
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    cap: str | None = None
    target: str | None = None
    content_hash: str | None = None

    def file_info(self) -> FileInfo:
        assert self.cap is not None and self.content_hash is not None
        return FileInfo(self.cap, self.size, self.mtime_ns, self.content_hash, self.mode)


@dataclass(frozen=True)
class Space:
    total: int
    free: int


class Backend(Protocol):
    @property
    def pool(self) -> NodePool: ...

    def upload_options(self) -> UploadOptions: ...

    async def lookup(self, path: str) -> NsNode | None: ...

    async def listdir(self, path: str) -> list[NsNode]: ...

    async def apply(self, ops: Sequence[Op]) -> None:
        """Append local operations to this device's log (durably) and wake replication."""
        ...

    async def put(self, path: str, info: FileInfo, placements: dict[int, str]) -> None: ...

    async def put_many(self, items: Sequence[tuple[str, FileInfo, dict[int, str]]]) -> None:
        """`put` of many uploaded files in one database call (group commit)."""
        ...

    async def rename(self, src: str, dst: str) -> None:
        """Move `src` to `dst` in the namespace, removing what `dst` named first."""
        ...

    async def remove(self, path: str) -> None:
        """Remove a file, link or (empty) folder at `path` if the namespace has it."""
        ...

    async def placements(self, cap: str) -> int: ...

    async def space(self) -> Space: ...

    def share_link(self, cap: str, name: str) -> str: ...

    def foreign_changes(self) -> int:
        """A counter of local namespace changes made elsewhere in the daemon (CLI, sync
        folder), which `changes` does not report; cheap, called on every cached lookup."""
        ...

    def changes(self) -> AsyncIterator[list[str]]:
        """Paths changed by other devices, as they are merged."""
        ...
