"""One sync folder kept in step with its namespace folder, on trio.

Work is per path: a path becomes *dirty* (watcher event, remote change, scan) and is then
reconciled: the local state, the base and the remote node are gathered, `planner.plan` decides,
and the action runs. A path is never reconciled twice at once. Deletions wait until nothing else
is queued, deepest first, so a move seen as "gone here, new there" is still recognised as a
rename. The scanner walks one folder at a time, compares all three sides there cheaply (no
hashing of files whose fingerprint matches the base) and marks only what differs, waiting while
the queue is long: memory stays bounded for any tree size.

A local file is read only once it has settled: closed by its writer with the size and mtime
seen at close, or unmodified for `settle` seconds. It is re-checked after hashing and after
uploading; if it moved meanwhile, nothing is recorded and it is tried again later.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from desktop.client.download import iter_file
from desktop.client.errors import single_error
from desktop.client.upload import upload_file
from desktop.core.errors import PermaCloudError
from desktop.core.namespace import (
    FileInfo,
    InvalidPath,
    MkdirOp,
    PutOp,
    SymlinkOp,
    conflict_name,
    is_conflict_copy,
    normalize_path,
)
from desktop.core.namespace.paths import ancestors, join
from desktop.knobs import env_float, env_int
from desktop.sync.ignore import IGNORE_FILE, TEMP_PREFIX, IgnoreMatcher
from desktop.sync.planner import (
    Action,
    BaseEntry,
    LocalEntry,
    RemoteEntry,
    fingerprint_matches,
    local_rename_source,
    needs_hash,
    plan,
    remote_rename_source,
    with_base_hash,
)
from desktop.sync.remote import SyncBackend
from desktop.sync.scanner import entry_from_stat, hash_file, local_entry
from desktop.sync.state import SyncState, parent_of
from desktop.sync.watcher import watch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    settle: float = 2.0  # seconds a file must stay untouched (when no close was seen)
    debounce: float = 0.1  # quiet time after an event before the path is looked at
    rescan: float = 300.0  # full rescan period (events can be lost)
    parallel: int = 16  # paths reconciled at once (small files: the batcher coalesces them)
    high_water: int = 2000  # the scanner waits while this many paths are queued

    @classmethod
    def from_env(cls) -> EngineSettings:
        return cls(
            settle=env_float("PERMACLOUD_SYNC_SETTLE", 2.0),
            debounce=env_float("PERMACLOUD_SYNC_DEBOUNCE", 0.1),
            rescan=env_float("PERMACLOUD_SYNC_RESCAN", 300.0),
            parallel=env_int("PERMACLOUD_SYNC_PARALLEL", 16),
        )


class LocalFolderMissing(PermaCloudError):
    """The local folder is gone: nothing is synced (never read as "delete everything")."""


class _Retry(Exception):
    """The path moved under our feet; look at it again soon."""


@dataclass
class FolderStatus:
    local: str
    remote: str
    state: str  # "scanning", "syncing", "in sync", "paused", "error"
    pending: int
    conflicts: int
    error: str | None
    synced: int  # paths with a base

    def to_json(self) -> dict[str, Any]:
        return {
            "local": self.local,
            "remote": self.remote,
            "state": self.state,
            "pending": self.pending,
            "conflicts": self.conflicts,
            "error": self.error,
            "synced": self.synced,
        }


Notify = Callable[[str, dict[str, Any]], None]


class SyncEngine:
    def __init__(
        self,
        local_root: Path,
        remote_root: str,
        backend: SyncBackend,
        state: SyncState,
        settings: EngineSettings,
        *,
        paused: Callable[[], bool] = lambda: False,
        notify: Notify = lambda topic, data: None,
    ) -> None:
        self.local_root = local_root
        self.remote_root = remote_root
        self.backend = backend
        self.state = state
        self.settings = settings
        self.paused = paused
        self.notify = notify
        self.ignore = IgnoreMatcher()
        self._dirty: dict[str, float] = {}
        self._busy: set[str] = set()
        self._deletes: set[str] = set()
        self._closed: dict[str, tuple[int, int]] = {}
        self._failures: dict[str, int] = {}
        self._scans: list[str] = []
        self._wake = trio.Event()
        self._scan_wake = trio.Event()
        self._space = trio.Event()
        self._temps: set[str] = set()
        self._db = trio.CapacityLimiter(1)
        self._slots = trio.Semaphore(settings.parallel)
        self.scanning = True
        self.error: str | None = None
        self.conflicts = 0
        self.synced = 0
        self.changes_done = 0
        self._counts_stale = False
        self._last_state = ""

    # --- helpers ----------------------------------------------------------------------------

    async def _st(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: fn(*args), limiter=self._db)

    def local(self, rel: str) -> Path:
        return self.local_root / rel if rel else self.local_root

    def remote(self, rel: str) -> str:
        return join(self.remote_root, rel) if rel else self.remote_root

    def remote_rel(self, path: str) -> str | None:
        if path == self.remote_root:
            return ""
        prefix = self.remote_root.rstrip("/") + "/"
        return path[len(prefix) :] if path.startswith(prefix) else None

    def _syncable(self, rel: str, is_dir: bool = False) -> bool:
        if not rel:
            return False
        if self.ignore.ignored(rel, is_dir):
            return False
        try:
            return normalize_path(self.remote(rel)) == self.remote(rel)
        except InvalidPath:
            return False

    # --- queue ------------------------------------------------------------------------------

    def mark(self, rel: str, delay: float | None = None) -> None:
        """Look at `rel` after `delay` (default: the debounce time)."""
        due = trio.current_time() + (self.settings.debounce if delay is None else delay)
        self._dirty[rel] = due
        self._wake.set()

    def scan(self, rel: str = "") -> None:
        """Queue a walk of folder `rel` and everything below it."""
        self._scans.append(rel)
        self._scan_wake.set()

    def pending(self) -> int:
        return len(self._dirty) + len(self._busy) + len(self._deletes)

    def poke(self) -> None:
        self._wake.set()
        self._scan_wake.set()

    def on_local_event(self, kind: str, rel: str, is_dir: bool) -> None:
        if rel == IGNORE_FILE and kind != "closed":
            self._reload_ignore()
        if not rel:
            return
        if kind == "closed":
            entry = local_entry(self.local(rel))
            if entry is not None and entry.kind == "file":
                self._closed[rel] = (entry.size, entry.mtime_ns)
        self.mark(rel)
        if is_dir and kind in ("created", "moved"):
            self.scan(rel)

    def on_overflow(self) -> None:
        logger.warning("%s: file events were lost; rescanning", self.local_root)
        self.scan("")

    def _reload_ignore(self) -> None:
        try:
            text = (self.local_root / IGNORE_FILE).read_text(errors="replace")
        except OSError:
            text = ""
        self.ignore = IgnoreMatcher.from_text(text)

    # --- status -----------------------------------------------------------------------------

    def status(self) -> FolderStatus:
        if self.error is not None:
            state = "error"
        elif self.paused():
            state = "paused"
        elif self.scanning:
            state = "scanning"
        elif self.pending():
            state = "syncing"
        else:
            state = "in sync"
        return FolderStatus(
            str(self.local_root),
            self.remote_root,
            state,
            self.pending(),
            self.conflicts,
            self.error,
            self.synced,
        )

    async def _refresh_counts(self) -> None:
        paths = await self._st(self.state.conflict_paths)
        self.conflicts = sum(1 for p in paths if is_conflict_copy("/" + p))
        self.synced = await self._st(self.state.count)

    def _announce(self) -> None:
        state = self.status().state
        if state != self._last_state:
            self._last_state = state
            self.notify("status", {"sync": {"folder": str(self.local_root), "state": state}})
            if state == "in sync" and self.changes_done:
                self.notify(
                    "activity", {"text": f"{self.local_root}: {self.changes_done} changes synced"}
                )
                self.changes_done = 0

    # --- running ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(self._reload_ignore)
        await self._ensure_remote_root()
        await self._refresh_counts()
        await trio.to_thread.run_sync(self._check_root)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, self.local_root, self.on_local_event, self.on_overflow)
            nursery.start_soon(self._follow_remote)
            nursery.start_soon(self._dispatch)
            nursery.start_soon(self._scanner)
            nursery.start_soon(self._periodic_rescan)
            task_status.started()

    async def _ensure_remote_root(self) -> None:
        missing = [
            p
            for p in [*list(reversed(ancestors(self.remote_root)))[1:], self.remote_root]
            if await self.backend.lookup(p) is None
        ]
        if missing:
            await self.backend.apply([MkdirOp(p) for p in missing])

    def _check_root(self) -> None:
        if not self.local_root.is_dir():
            raise LocalFolderMissing(f"the sync folder {self.local_root} is missing")

    async def _periodic_rescan(self) -> None:
        self.scan("")
        while True:
            await trio.sleep(self.settings.rescan)
            self.scan("")

    async def _follow_remote(self) -> None:
        async for paths in self.backend.changes():
            for path in paths:
                rel = self.remote_rel(path)
                if rel:
                    self.mark(rel, 0.0)

    async def _wait_running(self) -> None:
        while self.paused():
            self._announce()
            with trio.move_on_after(1.0):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _dispatch(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await self._wait_running()
                now = trio.current_time()
                due = [r for r, t in self._dirty.items() if t <= now and r not in self._busy]
                due.sort()  # parents before children
                for rel in due:
                    await self._slots.acquire()
                    if self.paused():
                        self._slots.release()
                        break
                    del self._dirty[rel]
                    self._busy.add(rel)
                    nursery.start_soon(self._run_one, rel)
                if (
                    not due
                    and not self._busy
                    and self._deletes
                    and not self.scanning
                    and not self._ready_soon(now)
                ):
                    await self._run_deletes()
                    continue
                if not self.pending():
                    self._space.set()
                    if self._counts_stale:
                        self._counts_stale = False
                        await self._refresh_counts()
                self._announce()
                waits = [t for r, t in self._dirty.items() if r not in self._busy]
                next_due = min(waits) if waits else math.inf
                with trio.move_on_at(next_due):
                    await self._wake.wait()
                self._wake = trio.Event()

    def _ready_soon(self, now: float) -> bool:
        return any(t <= now + self.settings.debounce for t in self._dirty.values())

    async def _run_one(self, rel: str, *, allow_delete: bool = False) -> None:
        try:
            await self._reconcile(rel, allow_delete)
            self._failures.pop(rel, None)
            if self.error is not None and not self._failures:
                self.error = None
        except _Retry:
            self.mark(rel, 0.5)
        except (PermaCloudError, OSError) as error:
            count = self._failures[rel] = self._failures.get(rel, 0) + 1
            self.error = f"{rel}: {error}"
            logger.warning("sync of %s failed (%d): %s", self.local(rel), count, error)
            self.mark(rel, min(2.0**count, 60.0))
        finally:
            self._busy.discard(rel)
            if not allow_delete:
                self._slots.release()
            if len(self._dirty) < self.settings.high_water:
                self._space.set()
            self._wake.set()

    async def _run_deletes(self) -> None:
        """Queued deletions, deepest first, once nothing else is waiting."""
        if not await trio.to_thread.run_sync(self.local_root.is_dir):
            self.error = f"the sync folder {self.local_root} is missing"
            return
        batch = sorted(self._deletes, key=lambda r: (-r.count("/"), r))
        self._deletes.clear()
        for rel in batch:
            if rel in self._dirty:
                continue  # changed again: it is looked at afresh
            if self.paused():
                self._deletes.add(rel)
                continue
            self._busy.add(rel)
            await self._run_one(rel, allow_delete=True)
        await self._refresh_counts()

    async def _scanner(self) -> None:
        while True:
            while not self._scans:
                self.scanning = False
                self._announce()
                await self._scan_wake.wait()
                self._scan_wake = trio.Event()
            self.scanning = True
            top = self._scans.pop()
            await self._wait_running()
            try:
                await self._walk(top)
            except LocalFolderMissing as error:
                self.error = str(error)
                logger.warning("%s", error)
            await self._refresh_counts()

    # --- the scanner ------------------------------------------------------------------------

    async def _walk(self, top: str) -> None:
        if not await trio.to_thread.run_sync(self.local_root.is_dir):
            raise LocalFolderMissing(f"the sync folder {self.local_root} is missing")
        if top == "" and self.error and "missing" in self.error:
            self.error = None
        if top:
            self.mark(top, 0.0)
        stack = [top]
        while stack:
            folder = stack.pop()
            subdirs = await self._compare_folder(folder)
            stack.extend(sorted(subdirs, reverse=True))

    async def _compare_folder(self, folder: str) -> list[str]:
        """Mark every name in `folder` whose three sides do not agree; return the subfolders."""
        local_items = await trio.to_thread.run_sync(self._local_listing, folder)
        base_items: dict[str, BaseEntry] = await self._st(self._base_listing, folder)
        remote_items = await self.backend.listdir(self.remote(folder))
        subdirs: list[str] = []
        for name in sorted(set(local_items) | set(base_items) | set(remote_items)):
            rel = f"{folder}/{name}" if folder else name
            local, base, remote = (
                local_items.get(name),
                base_items.get(name),
                remote_items.get(name),
            )
            is_dir = any(e is not None and e.kind == "dir" for e in (local, base, remote))
            if name.startswith(TEMP_PREFIX) and local is not None and remote is None:
                if rel not in self._temps:  # left by a crash during a download
                    await trio.to_thread.run_sync(_unlink_quietly, self.local(rel))
                continue
            if not self._syncable(rel, is_dir):
                continue
            if is_dir:
                subdirs.append(rel)
            differs = (local is not None and needs_hash(local, base)) or plan(
                local, base, remote, conflict_copy=is_conflict_copy("/" + rel)
            ) != Action.NOTHING
            if differs:
                self.mark(rel, 0.0)
            while len(self._dirty) >= self.settings.high_water:
                self._space = trio.Event()
                await self._space.wait()
        return subdirs

    def _local_listing(self, folder: str) -> dict[str, LocalEntry]:
        out: dict[str, LocalEntry] = {}
        path = self.local(folder)
        try:
            with os.scandir(path) as it:
                for item in it:
                    try:
                        entry = entry_from_stat(Path(item.path), item.stat(follow_symlinks=False))
                    except FileNotFoundError:
                        continue
                    if entry is not None:
                        out[item.name] = entry
        except (FileNotFoundError, NotADirectoryError):
            pass
        return out

    def _base_listing(self, folder: str) -> dict[str, BaseEntry]:
        out: dict[str, BaseEntry] = {}
        for name in self.state.children(folder):
            entry = self.state.get(f"{folder}/{name}" if folder else name)
            if entry is not None:
                out[name] = entry
        return out

    # --- reconciling one path -----------------------------------------------------------------

    async def _gather(
        self, rel: str
    ) -> tuple[LocalEntry | None, BaseEntry | None, RemoteEntry | None]:
        local = await trio.to_thread.run_sync(local_entry, self.local(rel))
        base = await self._st(self.state.get, rel)
        remote = await self.backend.lookup(self.remote(rel))
        return local, base, remote

    def _settled(self, rel: str, local: LocalEntry) -> float | None:
        """None when the file can be read now, else how long to wait."""
        if self._closed.get(rel) == (local.size, local.mtime_ns):
            return None
        age = time.time() - local.mtime_ns / 1e9
        if age >= self.settings.settle or age < -60:
            return None
        return self.settings.settle - age

    async def _reconcile(self, rel: str, allow_delete: bool) -> None:
        if not self._syncable(rel):
            return
        local, base, remote = await self._gather(rel)
        if local is not None and self.ignore.ignored(rel, local.kind == "dir"):
            return
        if remote is not None and self.ignore.ignored(rel, remote.kind == "dir"):
            return
        if local is not None and needs_hash(local, base):
            wait = self._settled(rel, local)
            if wait is not None:
                self.mark(rel, wait + 0.05)
                return
            digest, after = await trio.to_thread.run_sync(hash_file, self.local(rel))
            if after is None or not _same_stat(after, local):
                raise _Retry
            local = replace(local, content_hash=digest)
        elif local is not None:
            local = with_base_hash(local, base)
        action = plan(local, base, remote, conflict_copy=is_conflict_copy("/" + rel))
        if action.deletes and not allow_delete:
            self._deletes.add(rel)
            return
        if action is Action.NOTHING:
            return
        logger.debug("%s: %s", rel, action.value)
        if action is Action.ADOPT:
            assert local is not None and remote is not None
            await self._record(rel, local, remote)
            await self._materialize(rel, remote)
        elif action is Action.FORGET:
            await self._st(self.state.delete, rel)
        elif action is Action.PUSH:
            assert local is not None
            await self._push(rel, local, base, remote)
        elif action is Action.PULL:
            assert remote is not None
            await self._pull(rel, local, base, remote)
        elif action is Action.DELETE_LOCAL:
            assert local is not None and base is not None
            await self._delete_local(rel, local, base)
        elif action is Action.DELETE_REMOTE:
            await self.backend.remove(self.remote(rel))
            forget = self.state.delete_tree if base and base.kind == "dir" else self.state.delete
            await self._st(forget, rel)
        elif action is Action.CONFLICT:
            assert local is not None
            await self._conflict(rel, local)
        self.changes_done += 1
        self._counts_stale = True
        if action is not Action.ADOPT:
            self._closed.pop(rel, None)

    async def _record(self, rel: str, local: LocalEntry, remote: RemoteEntry) -> None:
        base = BaseEntry(
            local.kind,
            local.size,
            local.mtime_ns,
            local.inode,
            local.mode,
            local.target,
            local.content_hash if local.kind == "file" else None,
            remote.cap,
        )
        await self._st(self.state.put, rel, base)

    async def _materialize(self, rel: str, remote: RemoteEntry) -> None:
        """A conflict copy derived by the merge becomes a regular file: a later edit of the
        original would otherwise end the copy (and this device would delete its local copy)."""
        if remote.conflict_of is None or remote.kind != "file":
            return
        assert remote.cap is not None and remote.content_hash is not None
        info = FileInfo(remote.cap, remote.size, remote.mtime_ns, remote.content_hash, remote.mode)
        await self.backend.apply([PutOp(self.remote(rel), info)])

    # --- push ----------------------------------------------------------------------------------

    async def _push(
        self, rel: str, local: LocalEntry, base: BaseEntry | None, remote: RemoteEntry | None
    ) -> None:
        path = self.remote(rel)
        if base is None and remote is None and await self._push_as_rename(rel, local):
            return
        if remote is not None and remote.kind != local.kind:
            await self.backend.remove(path)
            remote = None
        if local.kind == "dir":
            await self.backend.apply([MkdirOp(path, local.mode & 0o7777 or 0o755)])
            await self._record(rel, local, RemoteEntry("dir"))
            self.scan(rel)
            return
        if local.kind == "link":
            assert local.target is not None
            await self.backend.apply([SymlinkOp(path, local.target, local.mtime_ns)])
            await self._record(rel, local, RemoteEntry("link", target=local.target))
            return
        digest = local.content_hash
        assert digest is not None
        cap: str | None = None
        if remote is not None and remote.content_hash == digest:
            cap = remote.cap
        elif base is not None and base.content_hash == digest:
            cap = base.cap
        placements: dict[int, str] = {}
        if cap is None:
            with single_error():
                result = await upload_file(
                    self.backend.pool, self.local(rel), self.backend.upload_options()
                )
            now = await trio.to_thread.run_sync(local_entry, self.local(rel))
            if now is None or not _same_stat(now, local) or result.size != local.size:
                raise _Retry  # written to while uploading: this version is not recorded
            cap, placements = result.cap.to_string(), result.placements
        info = FileInfo(cap, local.size, local.mtime_ns, digest, local.mode & 0o7777)
        await self.backend.put(path, info, placements)
        await self._record(rel, local, RemoteEntry("file", content_hash=digest, cap=cap))

    async def _push_as_rename(self, rel: str, local: LocalEntry) -> bool:
        """A new local path that is a synced one moved here: a namespace rename, no upload."""
        candidates = await self._st(self.state.by_inode, local.inode)
        for src, candidate in candidates:
            if src == rel or not self._syncable(src):
                continue
            at_src, _, remote_src = await self._gather(src)
            if local_rename_source(local, candidate, at_src, remote_src):
                dst_remote = await self.backend.lookup(self.remote(rel))
                if dst_remote is not None:
                    return False
                await self.backend.rename(self.remote(src), self.remote(rel))
                await self._st(self.state.move_tree, src, rel)
                logger.info("renamed %s -> %s", src, rel)
                return True
        return False

    # --- pull ----------------------------------------------------------------------------------

    async def _pull(
        self, rel: str, local: LocalEntry | None, base: BaseEntry | None, remote: RemoteEntry
    ) -> None:
        target = self.local(rel)
        await trio.to_thread.run_sync(self._ensure_local_parent, rel)
        if local is None and base is None and await self._pull_as_rename(rel, remote):
            return
        if remote.kind == "dir":
            if local is not None and local.kind != "dir":
                raise _Retry  # the planner sends a local file here through CONFLICT first
            if local is None:
                await trio.to_thread.run_sync(_mkdir, target, remote.mode)
            now = await trio.to_thread.run_sync(local_entry, target)
            assert now is not None
            await self._record(rel, now, remote)
            self.scan(rel)
            return
        if local is not None and local.kind == "dir":
            raise _Retry
        if (
            local is not None
            and local.kind == "file"
            and remote.kind == "file"
            and local.content_hash == remote.content_hash
        ):
            await trio.to_thread.run_sync(_set_meta, target, remote.mode, remote.mtime_ns)
        else:
            temp = target.parent / f"{TEMP_PREFIX}{os.urandom(6).hex()}"
            temp_rel = f"{parent_of(rel)}/{temp.name}" if parent_of(rel) else temp.name
            self._temps.add(temp_rel)
            try:
                if remote.kind == "link":
                    assert remote.target is not None
                    await trio.to_thread.run_sync(_make_link, temp, remote.target)
                else:
                    await self._download(remote, temp)
                await trio.to_thread.run_sync(self._install, temp, target, local)
            finally:
                await trio.to_thread.run_sync(_unlink_quietly, temp)
                self._temps.discard(temp_rel)
        now = await trio.to_thread.run_sync(local_entry, target)
        if now is None:
            raise _Retry
        if remote.kind == "file":
            now = replace(now, content_hash=remote.content_hash)
        await self._record(rel, now, remote)
        await self._materialize(rel, remote)

    async def _download(self, remote: RemoteEntry, temp: Path) -> None:
        assert remote.cap is not None
        fd = await trio.to_thread.run_sync(
            lambda: os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        )
        try:
            with single_error():
                async for chunk in iter_file(self.backend.pool, remote.cap):
                    await trio.to_thread.run_sync(_write_all, fd, chunk)
            await trio.to_thread.run_sync(os.fsync, fd)
        finally:
            os.close(fd)
        await trio.to_thread.run_sync(_set_meta, temp, remote.mode, remote.mtime_ns)

    def _install(self, temp: Path, target: Path, planned: LocalEntry | None) -> None:
        """Move the downloaded version into place unless the local path changed since it was
        looked at (an unpushed local edit is never overwritten)."""
        now = local_entry(target)
        if planned is None:
            if now is not None:
                raise _Retry
        elif now is None or not _same_stat(now, planned):
            raise _Retry
        os.replace(temp, target)

    async def _pull_as_rename(self, rel: str, remote: RemoteEntry) -> bool:
        """Another device moved a file we hold: move it here too instead of downloading."""
        if remote.kind != "file" or remote.content_hash is None:
            return False
        for src, candidate in await self._st(self.state.by_hash, remote.content_hash):
            if src == rel or not self._syncable(src):
                continue
            at_src, _, remote_src = await self._gather(src)
            if not remote_rename_source(remote, candidate, at_src, remote_src):
                continue
            moved = await trio.to_thread.run_sync(self._move_local, src, rel)
            if not moved:
                return False
            await self._st(self.state.delete, src)
            now = await trio.to_thread.run_sync(local_entry, self.local(rel))
            if now is None:
                raise _Retry
            await trio.to_thread.run_sync(_set_meta, self.local(rel), remote.mode, remote.mtime_ns)
            now = await trio.to_thread.run_sync(local_entry, self.local(rel))
            assert now is not None
            await self._record(rel, replace(now, content_hash=remote.content_hash), remote)
            return True
        return False

    def _move_local(self, src: str, dst: str) -> bool:
        if local_entry(self.local(dst)) is not None:
            return False
        os.rename(self.local(src), self.local(dst))
        return True

    def _ensure_local_parent(self, rel: str) -> None:
        parent = self.local(parent_of(rel))
        if not parent.is_dir():
            parent.mkdir(parents=True, exist_ok=True)

    # --- deletes and conflicts -------------------------------------------------------------

    async def _delete_local(self, rel: str, local: LocalEntry, base: BaseEntry) -> None:
        path = self.local(rel)

        def remove() -> bool:
            now = local_entry(path)
            if now is None:
                return True
            if not fingerprint_matches(now, base):
                raise _Retry
            if now.kind == "dir":
                try:
                    os.rmdir(path)
                except OSError as error:
                    if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        return False  # something new (or ignored) is inside: keep the folder
                    raise
            else:
                os.unlink(path)
            return True

        if await trio.to_thread.run_sync(remove):
            await self._st(self.state.delete, rel)

    async def _conflict(self, rel: str, local: LocalEntry) -> None:
        """Both sides changed: the local version moves aside as a conflict copy (pushed next),
        the other device's version is pulled to the name."""
        name = conflict_name(self.remote(rel), local.mtime_ns // 1_000_000, self.backend.device_id)
        copy_rel = self.remote_rel(name)
        assert copy_rel is not None
        moved = await trio.to_thread.run_sync(self._move_local, rel, copy_rel)
        if not moved:
            raise _Retry
        await self._st(self.state.delete_tree if local.kind == "dir" else self.state.delete, rel)
        self.mark(copy_rel, 0.0)
        self.mark(rel, 0.0)
        self.conflicts += 1
        text = f"{self.remote(rel)} was changed on two devices; your version is kept as {name}"
        self.notify("notify", {"kind": "conflict", "title": "Conflict", "text": text})


def _same_stat(a: LocalEntry, b: LocalEntry) -> bool:
    return (a.kind, a.size, a.mtime_ns, a.inode, a.target) == (
        b.kind,
        b.size,
        b.mtime_ns,
        b.inode,
        b.target,
    )


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _set_meta(path: Path, mode: int, mtime_ns: int) -> None:
    if mode:
        os.chmod(path, mode & 0o7777)
    if mtime_ns:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def _make_link(path: Path, target: str) -> None:
    _unlink_quietly(path)
    os.symlink(target, path)


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(mode=(mode & 0o7777) or 0o755, exist_ok=True)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
