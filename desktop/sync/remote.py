"""What the sync engine needs from the daemon: the namespace, the node pool, change feed.

A protocol, so the sync package never imports the daemon (the daemon imports sync). The
daemon's implementation wraps the mount's `DaemonBackend` and adds view lookups that say
whether a node is a conflict copy derived by the merge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions
from desktop.core.namespace import FileInfo, Op
from desktop.sync.planner import RemoteEntry


class SyncBackend(Protocol):
    @property
    def pool(self) -> NodePool: ...

    @property
    def device_id(self) -> str: ...

    def upload_options(self) -> UploadOptions: ...

    async def lookup(self, path: str) -> RemoteEntry | None: ...

    async def listdir(self, path: str) -> dict[str, RemoteEntry]:
        """Name -> entry for the nodes in namespace folder `path` (empty if not a folder)."""
        ...

    async def apply(self, ops: Sequence[Op]) -> None: ...

    async def put(self, path: str, info: FileInfo, placements: dict[int, str]) -> None: ...

    async def rename(self, src: str, dst: str) -> None: ...

    async def remove(self, path: str) -> None: ...

    def changes(self) -> AsyncIterator[list[str]]: ...
