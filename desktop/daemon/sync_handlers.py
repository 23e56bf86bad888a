"""The daemon's side of the sync folders: one SyncEngine per configured folder, the IPC methods
`syncfolder.add`, `syncfolder.remove`, `syncfolder.status`, and the `sync` status section.

The engines work through the same namespace and node pool as the mount (`DaemonBackend`), so a
file stored by the mount, `put` or a sync folder is the same content hash everywhere. They obey
`sync.pause` (the daemon's `sync_paused` flag) and are woken by its `status` event on resume.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from desktop.client.errors import single_error
from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions
from desktop.core.errors import PermaCloudError
from desktop.core.namespace import FileInfo, Op, PutOp, normalize_path
from desktop.daemon.group_commit import GroupCommitter
from desktop.daemon.index import ViewRow
from desktop.daemon.ipc_protocol import IpcProtocolError, param
from desktop.daemon.ipc_server import CallContext, Handler
from desktop.daemon.mount_handlers import DaemonBackend, mount_service
from desktop.daemon.per_daemon import per_daemon
from desktop.sync.engine import EngineSettings, SyncEngine
from desktop.sync.folders import (
    DEFAULT_REMOTE,
    SyncFolder,
    SyncFolderError,
    check_new_folder,
    load_folders,
    save_folders,
)
from desktop.sync.planner import RemoteEntry
from desktop.sync.state import SyncState

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

logger = logging.getLogger(__name__)

RETRY_SECONDS = 10.0


def _remote_entry(row: ViewRow) -> RemoteEntry:
    return RemoteEntry(
        row.kind,
        row.size,
        row.mtime_ns,
        row.mode,
        row.target,
        row.content_hash,
        row.cap,
        row.conflict_of,
    )


class DaemonSyncBackend:
    """`DaemonBackend` plus view lookups that keep `conflict_of` (the mount has no use for it);
    puts and mkdirs of all folders go through one group committer (many files, one fsync)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.inner = DaemonBackend(daemon)
        self.committer = GroupCommitter(daemon)

    @property
    def pool(self) -> NodePool:
        return self.inner.pool

    @property
    def device_id(self) -> str:
        return self.daemon.namespace.device_id

    def upload_options(self) -> UploadOptions:
        return self.inner.upload_options()

    async def lookup(self, path: str) -> RemoteEntry | None:
        row = await self.daemon.db(self.daemon.index.lookup, normalize_path(path))
        return None if row is None else _remote_entry(row)

    async def listdir(self, path: str) -> dict[str, RemoteEntry]:
        rows = await self.daemon.db(self.daemon.index.listdir, normalize_path(path))
        return {row.name: _remote_entry(row) for row in rows}

    async def apply(self, ops: Sequence[Op]) -> None:
        await self.committer.commit(ops)

    async def put(self, path: str, info: FileInfo, placements: dict[int, str]) -> None:
        await self.committer.commit([PutOp(path, info)], [(info.cap, placements)])

    async def rename(self, src: str, dst: str) -> None:
        await self.inner.rename(src, dst)

    async def remove(self, path: str) -> None:
        await self.inner.remove(path)

    def changes(self) -> AsyncIterator[list[str]]:
        """Other devices' changes and this device's own (CLI, mount, this and other folders):
        a file put into /Sync through the mount must reach the local folder too."""
        return self.inner.changes(frozenset({"namespace", "namespace.local"}))


class _Running:
    def __init__(self, folder: SyncFolder, scope: trio.CancelScope) -> None:
        self.folder = folder
        self.scope = scope
        self.engine: SyncEngine | None = None
        self.error: str | None = None


class SyncService:
    """Runs an engine per folder (restarted after a failure) and answers for all of them."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.backend = DaemonSyncBackend(daemon)
        self.settings = EngineSettings.from_env()
        self.config_file = daemon.paths.config_dir / "sync.toml"
        self.state_dir = daemon.paths.data_dir / "sync"
        self.running: dict[Path, _Running] = {}
        self._nursery: trio.Nursery | None = None
        self._ready = trio.Event()
        self._lock = trio.Lock()
        self._outbox = 0
        self._view_conflicts = 0

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        folders = await trio.to_thread.run_sync(load_folders, self.config_file)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for folder in folders:
                self._start(folder)
            nursery.start_soon(self._wake_on_resume)
            nursery.start_soon(self._refresh_loop)
            self._ready.set()
            await trio.sleep_forever()

    def _start(self, folder: SyncFolder) -> None:
        assert self._nursery is not None
        running = _Running(folder, trio.CancelScope())
        self.running[folder.local] = running
        self.daemon.extra_status["sync"] = self.status_section
        self._nursery.start_soon(self._supervise, running)

    async def _supervise(self, running: _Running) -> None:
        folder = running.folder
        with running.scope:
            while True:
                state = await trio.to_thread.run_sync(
                    SyncState, self.state_dir / f"{folder.id}.sqlite3"
                )
                engine = SyncEngine(
                    folder.local,
                    folder.remote,
                    self.backend,
                    state,
                    self.settings,
                    paused=lambda: self.daemon.sync_paused,
                    notify=self._notify,
                )
                running.engine = engine
                try:
                    with single_error():
                        await engine.run()
                except (PermaCloudError, OSError) as error:
                    running.error = str(error)
                    logger.warning("sync folder %s stopped: %s", folder.local, error)
                except Exception:  # a bug in one folder must not take the daemon down
                    running.error = "internal error (see the daemon log)"
                    logger.exception("sync folder %s failed", folder.local)
                finally:
                    state.close()
                await trio.sleep(RETRY_SECONDS)

    def _notify(self, topic: str, data: dict[str, Any]) -> None:
        if topic == "activity":
            self.daemon.activity.add("sync", str(data.get("text", "")))
            return
        if topic == "notify" and data.get("kind") == "conflict":
            self.daemon.activity.add("conflict", str(data.get("text", "")))
        self.daemon.bus.publish(topic, data)

    async def _wake_on_resume(self) -> None:
        events = self.daemon.bus.subscribe(frozenset({"status"}))
        async with events:
            async for _ in events:
                for running in self.running.values():
                    if running.engine is not None:
                        running.engine.poke()

    async def _refresh_loop(self) -> None:
        """Keep the namespace figures the sync status section shows (it is read synchronously)."""
        index = self.daemon.index
        while True:
            if self.running:
                self._outbox = await self.daemon.db(index.outbox_size)
                self._view_conflicts = await self.daemon.db(index.conflict_count)
            await trio.sleep(1.0)

    # --- folders ----------------------------------------------------------------------------

    async def add(self, local: Path, remote: str) -> SyncFolder:
        await self._ready.wait()
        async with self._lock:
            existing = await trio.to_thread.run_sync(load_folders, self.config_file)
            mountpoint = mount_service(self.daemon).mountpoint
            folder = await trio.to_thread.run_sync(
                check_new_folder, local, remote, existing, mountpoint
            )
            await trio.to_thread.run_sync(save_folders, self.config_file, [*existing, folder])
            self._start(folder)
        self.daemon.activity.add("sync", f"syncing {folder.local} with {folder.remote}")
        return folder

    async def remove(self, local: Path) -> SyncFolder:
        await self._ready.wait()
        async with self._lock:
            existing = await trio.to_thread.run_sync(load_folders, self.config_file)
            resolved = await trio.to_thread.run_sync(_resolved, local)
            found = [f for f in existing if f.local in (local, resolved)]
            if not found:
                raise SyncFolderError(f"{local} is not a sync folder")
            folder = found[0]
            await trio.to_thread.run_sync(
                save_folders, self.config_file, [f for f in existing if f != folder]
            )
            running = self.running.pop(folder.local, None)
            if running is not None:
                running.scope.cancel()
            state_file = self.state_dir / f"{folder.id}.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                await trio.to_thread.run_sync(_unlink, Path(str(state_file) + suffix))
            if not self.running:
                self.daemon.extra_status.pop("sync", None)
        self.daemon.activity.add("sync", f"stopped syncing {folder.local}")
        return folder

    # --- status -----------------------------------------------------------------------------

    def folders(self) -> list[dict[str, Any]]:
        out = []
        for running in self.running.values():
            if running.engine is not None:
                item = running.engine.status().to_json()
            else:
                item = {
                    "local": str(running.folder.local),
                    "remote": running.folder.remote,
                    "state": "starting",
                    "pending": 0,
                    "conflicts": 0,
                    "error": None,
                    "synced": 0,
                }
            if running.error and item["error"] is None:
                item["error"] = running.error
                item["state"] = "error"
            out.append(item)
        return out

    def status_section(self) -> dict[str, Any]:
        """The `sync` section of `status`: the namespace figures plus the folders'."""
        folders = self.folders()
        pending = self._outbox + sum(int(f["pending"]) for f in folders)
        errors = [f"{f['local']}: {f['error']}" for f in folders if f["error"]]
        if self.daemon.sync_paused:
            state = "paused"
        elif errors:
            state = "error"
        elif pending:
            state = "syncing"
        else:
            state = "idle"
        return {
            "state": state,
            "pending": pending,
            "conflicts": self._view_conflicts,
            "folder": folders[0]["local"] if folders else None,
            "error": errors[0] if errors else None,
            "folders": folders,
        }


def _resolved(path: Path) -> Path:
    return path.resolve() if path.exists() else path


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


@per_daemon
def sync_service(daemon: Daemon) -> SyncService:
    """The daemon's SyncService (created on first use; `run` it in the daemon nursery)."""
    return SyncService(daemon)


def build_sync_handlers(daemon: Daemon) -> dict[str, Handler]:
    service = sync_service(daemon)

    async def add(params: dict[str, Any], ctx: CallContext) -> Any:
        local = Path(param(params, "local", str))
        if not local.is_absolute():
            raise IpcProtocolError("parameter 'local' must be an absolute path")
        remote = param(params, "remote", str, default=DEFAULT_REMOTE)
        folder = await service.add(local, remote)
        return {"local": str(folder.local), "remote": folder.remote}

    async def remove(params: dict[str, Any], ctx: CallContext) -> Any:
        local = Path(param(params, "local", str))
        if not local.is_absolute():
            raise IpcProtocolError("parameter 'local' must be an absolute path")
        folder = await service.remove(local)
        return {"local": str(folder.local), "remote": folder.remote}

    async def status(params: dict[str, Any], ctx: CallContext) -> Any:
        await service._ready.wait()
        return service.folders()

    return {"syncfolder.add": add, "syncfolder.remove": remove, "syncfolder.status": status}
