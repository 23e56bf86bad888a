"""The daemon's side of the FUSE mount: the Backend the mount works through, the one
MountService per daemon, and the IPC methods `mount`, `unmount` and `mount.status`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions
from desktop.core.namespace import (
    DeleteOp,
    DirInfo,
    FileInfo,
    Op,
    PutOp,
    RmdirOp,
    normalize_path,
    plan_rename,
)
from desktop.daemon.index import ViewRow
from desktop.daemon.ipc_protocol import param
from desktop.daemon.ipc_server import CallContext, Handler
from desktop.daemon.links import make_link
from desktop.daemon.per_daemon import per_daemon
from desktop.fuse.backend import NsNode, Space
from desktop.fuse.mount import MountService, MountSettings
from desktop.knobs import env_float

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon


def _node(row: ViewRow) -> NsNode:
    return NsNode(
        row.path,
        row.name,
        row.kind,
        row.size,
        row.mtime_ns,
        row.mode,
        row.cap,
        row.target,
        row.content_hash,
    )


class DaemonBackend:
    """The namespace and node pool of one daemon, as the mount sees them."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._own = 0  # entries this backend appended to the device's log
        self._base: int | None = None

    def _head(self) -> int:
        ns = self.daemon.namespace
        return ns.head_seq(ns.device_id)

    def _append(self, op: Op) -> None:
        """Append on the DB thread, counted as this backend's own change."""
        self.daemon.namespace.append(op)
        self._own += 1

    def foreign_changes(self) -> int:
        """How many entries others (CLI put/mv/rm, the sync folder) appended to this device's
        log since this backend started: the mount's name cache drops itself when it moves."""
        head = self._head()
        if self._base is None:
            self._base = head - self._own
        return head - self._base - self._own

    @property
    def pool(self) -> NodePool:
        return self.daemon.pool

    def upload_options(self) -> UploadOptions:
        return self.daemon.upload_options()

    async def lookup(self, path: str) -> NsNode | None:
        row = await self.daemon.db(self.daemon.index.lookup, normalize_path(path))
        return None if row is None else _node(row)

    async def listdir(self, path: str) -> list[NsNode]:
        rows = await self.daemon.db(self.daemon.index.listdir, normalize_path(path))
        return [_node(r) for r in rows]

    async def apply(self, ops: Sequence[Op]) -> None:
        def run() -> None:
            for op in ops:
                self._append(op)

        await self.daemon.db(run)
        self.daemon.wake_replication()

    async def put(self, path: str, info: FileInfo, placements: dict[int, str]) -> None:
        await self.put_many([(path, info, placements)])

    async def put_many(self, items: Sequence[tuple[str, FileInfo, dict[int, str]]]) -> None:
        index = self.daemon.index

        def run() -> None:
            for path, info, placements in items:
                self._append(PutOp(path, info))
                index.add_placements(info.cap, placements)

        await self.daemon.db(run)
        self.daemon.wake_replication()

    async def rename(self, src: str, dst: str) -> None:
        ns = self.daemon.namespace

        def run() -> None:
            view = ns.replica.view
            existing = view.node(dst)
            if existing is not None:
                self._append(RmdirOp(dst) if isinstance(existing.node, DirInfo) else DeleteOp(dst))
            if view.node(src) is not None:
                self._append(plan_rename(view, src, dst))

        await self.daemon.db(run)
        self.daemon.wake_replication()

    async def remove(self, path: str) -> None:
        ns = self.daemon.namespace

        def run() -> None:
            existing = ns.replica.view.node(path)
            if existing is not None:
                self._append(
                    RmdirOp(path) if isinstance(existing.node, DirInfo) else DeleteOp(path)
                )

        await self.daemon.db(run)
        self.daemon.wake_replication()

    async def placements(self, cap: str) -> int:
        return await self.daemon.db(self.daemon.index.placement_count, cap)

    async def space(self) -> Space:
        stats = self.daemon.pool.stats
        storage = self.daemon.config.storage
        raw_free = sum(s.free for s in stats.values() if s.online)
        free = raw_free * storage.k // max(storage.n, 1)
        _, used = await self.daemon.db(self.daemon.index.view_totals)
        return Space(total=used + free, free=free)

    def share_link(self, cap: str, name: str) -> str:
        return make_link(cap, name)

    async def changes(
        self, topics: frozenset[str] = frozenset({"namespace"})
    ) -> AsyncIterator[list[str]]:
        """Paths changed, as the bus announces them: other devices' (`namespace`) by default."""
        events = self.daemon.bus.subscribe(topics)
        async with events:
            async for event in events:
                data = event.data if isinstance(event.data, dict) else {}
                changed = data.get("changed", [])
                if isinstance(changed, list):
                    yield [str(p) for p in changed]


@per_daemon
def mount_service(daemon: Daemon) -> MountService:
    """The daemon's MountService (created on first use; `run` it in the daemon nursery)."""
    settings = MountSettings(
        cache_dir=daemon.paths.cache_dir / "mount",
        state_file=daemon.paths.data_dir / "mount.json",
        cache_limit=int(env_float("PERMACLOUD_FUSE_CACHE_BYTES", 10 << 30)),
        upload_delay=env_float("PERMACLOUD_FUSE_UPLOAD_DELAY", 2.0),
        read_timeout=env_float("PERMACLOUD_FUSE_READ_TIMEOUT", 15.0),
        flush_timeout=env_float("PERMACLOUD_FUSE_FLUSH_TIMEOUT", 60.0),
        upload_timeout=env_float("PERMACLOUD_FUSE_UPLOAD_TIMEOUT", 300.0),
        n=daemon.config.storage.n,
    )
    service = MountService(DaemonBackend(daemon), settings)
    daemon.extra_status["mount"] = service.status
    return service


def build_mount_handlers(daemon: Daemon) -> dict[str, Handler]:
    service = mount_service(daemon)

    async def mount(params: dict[str, Any], ctx: CallContext) -> Any:
        path = Path(param(params, "path", str))
        await service.wait_ready()
        mounted = await service.mount(path)
        return service.status() | {"path": str(mounted)}

    async def unmount(params: dict[str, Any], ctx: CallContext) -> Any:
        await service.wait_ready()
        path = service.mountpoint
        pending = await service.unmount()
        return {"path": str(path), "pending_files": pending.files, "pending_bytes": pending.bytes}

    async def status(params: dict[str, Any], ctx: CallContext) -> Any:
        return service.status()

    return {"mount": mount, "unmount": unmount, "mount.status": status}
