"""Mounting inside the daemon: one MountService per daemon runs the cache, the uploader and,
while mounted, pyfuse3's main loop, all in the daemon's trio nursery.

Start-up replays the cache journal (uploads resume) and, if the last session was mounted when it
ended (cleanly or by kill -9), clears any stale mount with `fusermount3 -u -z` and mounts again.
Unmount and shutdown flush dirty files first (bounded by `flush_timeout`) and report what is still
pending; what did not make it stays in the journal for the next start.

Mounting needs root, or a readable/writable /dev/fuse (0666, the udev default on desktops; 0600
here) plus `fusermount3`; `allow_other` would need `user_allow_other` in /etc/fuse.conf.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from desktop.core.errors import PermaCloudError
from desktop.fuse.backend import Backend
from desktop.fuse.cache import Cache
from desktop.fuse.fetch import Fetcher
from desktop.fuse.fs import PermaFS
from desktop.fuse.nscache import NamespaceCache
from desktop.fuse.uploader import Pending, Uploader

logger = logging.getLogger(__name__)

FS_TYPE = "fuse.permacloud"


class MountError(PermaCloudError):
    """The folder cannot be mounted or unmounted."""


@dataclass(frozen=True)
class MountSettings:
    cache_dir: Path
    state_file: Path
    cache_limit: int = 10 << 30
    upload_delay: float = 2.0
    read_timeout: float = 15.0
    flush_timeout: float = 60.0
    readahead_chunks: int = 16  # 32 MiB ahead of a sequential reader, fetched 4 runs at once
    upload_timeout: float = 300.0
    n: int = 10
    spare_files: int = 1024  # empty files made ahead so creates skip the disk's slow create
    kernel_readahead_kib: int = 8192  # the mount's kernel read-ahead (where we may set it)


def _unescape(field: str) -> str:
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def mounted_type(path: Path) -> str | None:
    """The file system type mounted exactly at `path`, from /proc/self/mounts (None if none)."""
    target = os.path.abspath(path)
    found: str | None = None
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) >= 3 and _unescape(parts[1]) == target:
                    found = parts[2]
    except OSError:
        return None
    return found


def set_kernel_readahead(path: Path, kib: int) -> bool:
    """Raise the kernel's read-ahead for the mount (default 128 KiB): reads then reach the
    file system as 1 MiB requests ahead of the reader instead of 128 KiB ones one by one.
    Only root may write the setting; for others it stays at the default (slower cold reads).
    Blocking (stats the mount): run it in a worker thread once the mount serves requests."""
    try:
        dev = os.stat(path).st_dev
        setting = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
        setting.write_text(str(kib))
    except OSError as error:
        logger.info("kernel read-ahead of %s left at its default: %s", path, error)
        return False
    return True


def clear_stale(path: Path) -> bool:
    """Lazily unmount a PermaCloud mount left at `path` by a killed daemon; True if one was."""
    if mounted_type(path) != FS_TYPE:
        return False
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is not None:
        result = subprocess.run([tool, "-u", "-z", str(path)], capture_output=True, text=True)
        if result.returncode == 0:
            logger.info("cleared a stale mount at %s", path)
            return True
        logger.warning("fusermount3 -u %s: %s", path, result.stderr.strip())
    result = subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True)
    return result.returncode == 0


class MountService:
    def __init__(self, backend: Backend, settings: MountSettings) -> None:
        self.backend = backend
        self.settings = settings
        self.cache: Cache | None = None
        self.uploader: Uploader | None = None
        self.fetcher: Fetcher | None = None
        self.fs: PermaFS | None = None
        self.names = NamespaceCache(backend)
        self.mountpoint: Path | None = None
        self._nursery: trio.Nursery | None = None
        self._main_done = trio.Event()
        self._ready = trio.Event()

    # --- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        pending = self.uploader.pending() if self.uploader else Pending(0, 0)
        return {
            "mounted": self.mountpoint is not None,
            "path": str(self.mountpoint) if self.mountpoint else None,
            "pending_files": pending.files,
            "pending_bytes": pending.bytes,
            "cache_bytes": self.cache.clean_bytes() if self.cache else 0,
            "pending_paths": sorted(
                e.path
                for e in (self.cache.dirty_files() if self.cache else [])
                if e.stored_cap is None
            )[:20],
            "uploading": len(self.uploader.planner.running()) if self.uploader else 0,
            "discarded_uploads": self.uploader.discarded if self.uploader else 0,
        }

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled (daemon shutdown): then unmount, flush, keep the rest."""
        settings = self.settings
        cache = self.cache = Cache(settings.cache_dir, settings.cache_limit)
        uploader = self.uploader = Uploader(
            self.backend,
            cache,
            settings.upload_delay,
            timeout=settings.upload_timeout,
            names=self.names,
        )
        self.fetcher = Fetcher(
            self.backend.pool, cache, settings.read_timeout, settings.readahead_chunks
        )
        upload_scope = trio.CancelScope(shield=True)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(_in_scope, upload_scope, uploader.run)
                nursery.start_soon(self.fetcher.run)
                nursery.start_soon(self._keep_spares, cache)
                nursery.start_soon(self._watch_changes)
                uploader.replay()
                remembered = self._remembered()
                if remembered is not None:
                    try:
                        await self.mount(remembered)
                    except PermaCloudError as error:
                        logger.warning("could not mount %s again: %s", remembered, error)
                self._ready.set()
                try:
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._stop_main()
                        with trio.move_on_after(settings.flush_timeout):
                            await uploader.flush()
                        pending = uploader.pending()
                        if pending.files:
                            logger.warning(
                                "stopping with %d files (%d bytes) not yet uploaded: they upload"
                                " at the next start",
                                pending.files,
                                pending.bytes,
                            )
                        upload_scope.cancel()
                    nursery.cancel_scope.cancel()
        finally:
            cache.close()

    async def _keep_spares(self, cache: Cache) -> None:
        """Refill the spare files when half are used, a batch at a time, off the trio thread."""
        target = self.settings.spare_files
        while True:
            if cache.spares() < target // 2:
                while cache.spares() < target:
                    names = cache.spare_names(min(128, target - cache.spares()))
                    made = await trio.to_thread.run_sync(cache.make_spares, names)
                    cache.add_spares(made)
                    if len(made) < len(names):
                        break  # disk full or the like: try again later
            await trio.sleep(0.25)

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def _remembered(self) -> Path | None:
        try:
            data = json.loads(self.settings.state_file.read_text())
            return Path(data["path"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remember(self, path: Path | None) -> None:
        state = self.settings.state_file
        if path is None:
            state.unlink(missing_ok=True)
            return
        tmp = state.with_name(state.name + ".tmp")
        tmp.write_text(json.dumps({"path": str(path)}))
        os.replace(tmp, state)

    async def mount(self, path: Path) -> Path:
        if self.mountpoint is not None:
            raise MountError(f"already mounted at {self.mountpoint}")
        if self._nursery is None or self.cache is None or self.uploader is None:
            raise MountError("the mount service is not running")
        assert self.fetcher is not None
        path = Path(os.path.abspath(path))  # noqa: ASYNC240 - no I/O, string work
        await trio.to_thread.run_sync(clear_stale, path)
        kind = mounted_type(path)
        if kind is not None:
            raise MountError(f"{path} already has a {kind} file system mounted on it")
        try:
            path.mkdir(parents=True, exist_ok=True)
            if not path.is_dir():
                raise MountError(f"{path} is not a folder")
            if any(path.iterdir()):
                raise MountError(f"{path} is not empty: mount on an empty folder")
        except OSError as error:
            raise MountError(f"cannot use {path}: {error.strerror or error}") from None
        fs = PermaFS(
            self.backend, self.cache, self.uploader, self.fetcher, self.settings.n, self.names
        )
        options = {"fsname=permacloud", "subtype=permacloud", "default_permissions"}
        try:
            pyfuse3.init(fs, str(path), options)
        except RuntimeError as error:
            raise MountError(
                f"cannot mount at {path} ({error}): mounting needs root, or read/write access to"
                " /dev/fuse and fusermount3"
            ) from None
        self.fs = fs
        self.mountpoint = path
        self._main_done = trio.Event()
        self._nursery.start_soon(self._main)
        self._nursery.start_soon(
            trio.to_thread.run_sync, set_kernel_readahead, path, self.settings.kernel_readahead_kib
        )
        self._remember(path)
        logger.info("mounted at %s", path)
        return path

    async def _main(self) -> None:
        try:
            await pyfuse3.main()
        except Exception as error:
            logger.warning("FUSE main loop ended: %r", error)
        finally:
            try:
                pyfuse3.close(unmount=True)
            except Exception as error:
                logger.warning("closing the FUSE session: %r", error)
            logger.info("unmounted %s", self.mountpoint)
            self.fs = None
            self.mountpoint = None
            self._main_done.set()

    async def _stop_main(self) -> None:
        if self.mountpoint is None:
            return
        pyfuse3.terminate()
        await self._main_done.wait()

    async def unmount(self) -> Pending:
        """Flush (bounded), then unmount; what is still pending keeps uploading."""
        if self.mountpoint is None or self.uploader is None:
            raise MountError("nothing is mounted")
        with trio.move_on_after(self.settings.flush_timeout):
            await self.uploader.flush()
        pending = self.uploader.pending()
        await self._stop_main()
        self._remember(None)
        return pending

    # --- remote changes ---------------------------------------------------------------------

    async def _watch_changes(self) -> None:
        async for paths in self.backend.changes():
            self.names.invalidate(paths)
            fs = self.fs
            if fs is None:
                continue
            for ino, parent_ino, name in fs.invalidations(paths):
                if ino:
                    await trio.to_thread.run_sync(_invalidate_inode, ino)
                if parent_ino:
                    try:
                        pyfuse3.invalidate_entry_async(parent_ino, name, ignore_enoent=True)
                    except OSError as error:
                        logger.debug("invalidate_entry %r: %s", name, error)


def _invalidate_inode(ino: int) -> None:
    try:
        pyfuse3.invalidate_inode(ino)
    except OSError as error:
        logger.debug("invalidate_inode %d: %s", ino, error)


async def _in_scope(scope: trio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()
