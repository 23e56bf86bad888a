"""The pyfuse3 file system: namespace metadata, content from the write-back cache.

Metadata operations (mkdir, rmdir, unlink, rename, symlink, chmod of stored files) are appended
to the namespace at once. File content is written to a dirty cache file at local-disk speed and
uploaded after close (see uploader.py); until then the dirty file shadows the namespace entry at
its path. Opening a stored file for writing copies it into a dirty file first (copy-on-write).
Every handler turns failures into FUSEError with the errno from errnos.py.

Names are answered from an in-memory copy of the folders looked at (nscache.py), misses
included (and returned to the kernel as cacheable negative entries), so a create never waits
for the daemon's database thread.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio

from desktop.core.namespace import FileInfo, MkdirOp, PutOp, SymlinkOp
from desktop.core.namespace.paths import join, parent
from desktop.fuse.backend import Backend, NsNode
from desktop.fuse.cache import CHUNK, Cache, CleanEntry, DirtyFile, chunk_count, chunks_for
from desktop.fuse.errnos import check_name, errno_for
from desktop.fuse.fetch import Fetcher
from desktop.fuse.inodes import InodeTable
from desktop.fuse.nscache import NamespaceCache
from desktop.fuse.uploader import Uploader, UploadFailed

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

ATTR_TIMEOUT = 1.0
XATTR_STATUS = b"user.permacloud.status"
XATTR_LINK = b"user.permacloud.link"
XATTR_CAP = b"user.permacloud.cap"


def guarded(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Any failure becomes a FUSEError: an unexpected exception would end pyfuse3's main loop."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except trio.Cancelled:
            raise
        except Exception as error:
            code = errno_for(error)
            if code == errno.EIO:
                logger.warning("%s failed: %r", fn.__name__, error)
            else:
                logger.debug("%s: %s", fn.__name__, error)
            raise pyfuse3.FUSEError(code) from None

    return wrapper


def fail(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


@dataclass
class Stat:
    """What lives at a path: a dirty file (local content) or a namespace node."""

    path: str
    kind: str
    size: int
    mtime_ns: int
    mode: int
    dirty: DirtyFile | None = None
    node: NsNode | None = None

    @property
    def cap(self) -> str | None:
        return None if self.dirty is not None or self.node is None else self.node.cap


@dataclass
class Handle:
    ino: int
    fd: int | None
    writable: bool
    dirty: DirtyFile | None = None
    cap: str | None = None
    size: int = 0
    next_offset: int = -1
    clean: CleanEntry | None = None
    readahead_from: int = -1


class PermaFS(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(
        self,
        backend: Backend,
        cache: Cache,
        uploader: Uploader,
        fetcher: Fetcher,
        n: int,
        names: NamespaceCache | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.names = names if names is not None else NamespaceCache(backend)
        self.cache = cache
        self.uploader = uploader
        self.fetcher = fetcher
        self.n = n
        self.inodes = InodeTable()
        self.handles: dict[int, Handle] = {}
        self.dir_listings: dict[int, list[tuple[str, Stat]]] = {}
        self._next_fh = 1
        self._last_cap: dict[int, str] = {}
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.started_ns = time.time_ns()

    # --- helpers ----------------------------------------------------------------------------

    def _fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _path(self, ino: int) -> str:
        try:
            path = self.inodes.path(ino)
        except KeyError:
            raise fail(errno.ENOENT) from None
        if path is None:
            raise fail(errno.ENOENT)
        return path

    def _child(self, parent_ino: int, name: bytes) -> str:
        return join(self._path(parent_ino), check_name(name))

    async def _stat(self, path: str) -> Stat | None:
        dirty = self.cache.dirty_at(path)
        if dirty is not None:
            return Stat(path, "file", dirty.size, dirty.mtime_ns, dirty.mode, dirty=dirty)
        if path == "/":
            return Stat("/", "dir", 0, self.started_ns, 0o755)
        node = await self.names.lookup(path)
        return None if node is None else self._from_node(node)

    def _from_node(self, node: NsNode) -> Stat:
        size = len(node.target.encode()) if node.kind == "link" and node.target else node.size
        return Stat(node.path, node.kind, size, node.mtime_ns, node.mode, node=node)

    async def _require(self, path: str) -> Stat:
        found = await self._stat(path)
        if found is None:
            raise fail(errno.ENOENT)
        return found

    def _attr(self, ino: int, st: Stat) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = ino
        attr.generation = 0
        attr.entry_timeout = ATTR_TIMEOUT
        attr.attr_timeout = ATTR_TIMEOUT
        if st.kind == "dir":
            attr.st_mode = stat.S_IFDIR | (st.mode & 0o7777 or 0o755)
            attr.st_nlink = 2
            attr.st_size = 4096
        elif st.kind == "link":
            attr.st_mode = stat.S_IFLNK | 0o777
            attr.st_nlink = 1
            attr.st_size = st.size
        else:
            attr.st_mode = stat.S_IFREG | (st.mode & 0o7777 or 0o644)
            attr.st_nlink = 1
            attr.st_size = st.size
        attr.st_uid = self.uid
        attr.st_gid = self.gid
        attr.st_blksize = 128 * 1024
        attr.st_blocks = (attr.st_size + 511) // 512
        mtime = st.mtime_ns or self.started_ns
        attr.st_mtime_ns = mtime
        attr.st_ctime_ns = mtime
        attr.st_atime_ns = mtime
        return attr

    async def _children(self, path: str) -> list[tuple[str, Stat]]:
        out: dict[str, Stat] = {}
        for node in await self.names.listdir(path):
            out[node.name] = self._from_node(node)
        for dirty in self.cache.dirty_children(path):
            name = dirty.path.rsplit("/", 1)[1]
            out[name] = Stat(dirty.path, "file", dirty.size, dirty.mtime_ns, dirty.mode, dirty)
        return sorted(out.items())

    async def _materialize(self, st: Stat, *, empty: bool) -> DirtyFile:
        """A dirty file holding `st`'s content (copied from the network/cache unless `empty`)."""
        if st.dirty is not None:
            return st.dirty
        if st.kind != "file":
            raise fail(errno.EISDIR if st.kind == "dir" else errno.EINVAL)
        cap = st.cap
        if not empty and st.size > 0 and cap is not None:
            await self.fetcher.ensure(cap, st.size, range(chunk_count(st.size)))
        again = self.cache.dirty_at(st.path)
        if again is not None:  # another task materialized it while we fetched
            return again
        entry = self.cache.create_dirty(st.path, st.mode or 0o644, st.mtime_ns or time.time_ns())
        if not empty and st.size > 0 and cap is not None:
            source = self.cache.clean_path(cap)
            target = self.cache.dirty_path(entry)
            await trio.to_thread.run_sync(_copy_file, str(source), str(target), st.size)
            entry.size = st.size
        self.uploader.changed(entry)
        return entry

    def _open_dirty(self, ino: int, entry: DirtyFile, writable: bool) -> Handle:
        fd = os.open(self.cache.dirty_path(entry), os.O_RDWR)
        handle = Handle(ino, fd, writable, dirty=entry)
        if writable:
            self.uploader.opened(entry)
        return handle

    def _register(self, handle: Handle) -> int:
        fh = self._fh()
        self.handles[fh] = handle
        return fh

    def _pinned(self) -> set[str]:
        return {h.cap for h in self.handles.values() if h.cap is not None}

    def _handle(self, fh: int) -> Handle:
        handle = self.handles.get(fh)
        if handle is None:
            raise fail(errno.EBADF)
        return handle

    # --- lookup and attributes --------------------------------------------------------------

    @guarded
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if name == b".":
            path = self._path(parent_inode)
        elif name == b"..":
            path = parent(self._path(parent_inode))
        else:
            path = self._child(parent_inode, name)
        st = await self._stat(path)
        if st is None:
            # A negative entry the kernel may keep: the next open(O_CREAT) of this name skips
            # the lookup. Other devices' creations invalidate it (MountService._watch_changes).
            negative = pyfuse3.EntryAttributes()
            negative.st_ino = 0
            negative.entry_timeout = ATTR_TIMEOUT
            return negative
        return self._attr(self.inodes.lookup(path), st)

    @guarded
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

    @guarded
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        path = self.inodes.path(inode) if inode in self.inodes else None
        if path is None:
            for handle in self.handles.values():
                if handle.ino == inode and handle.fd is not None:
                    info = os.fstat(handle.fd)
                    size = info.st_size if handle.dirty is not None else handle.size
                    return self._attr(inode, Stat("", "file", size, info.st_mtime_ns, 0o644))
            raise fail(errno.ENOENT)
        return self._attr(inode, await self._require(path))

    @guarded
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        path = self._path(inode)
        st = await self._require(path)
        if fields.update_size:
            if st.kind != "file":
                raise fail(errno.EISDIR if st.kind == "dir" else errno.EINVAL)
            entry = await self._materialize(st, empty=attr.st_size == 0)
            os.truncate(self.cache.dirty_path(entry), attr.st_size)
            self.cache.modified(entry, attr.st_size)
            entry.mtime_ns = time.time_ns()
            self.uploader.changed(entry)
            st = await self._require(path)
        mode = attr.st_mode & 0o7777 if fields.update_mode else None
        mtime = attr.st_mtime_ns if fields.update_mtime else None
        if mode is not None or mtime is not None:
            if st.dirty is not None:
                self.cache.set_meta(st.dirty, mode=mode, mtime_ns=mtime)
                self.uploader.changed(st.dirty)
            elif st.kind == "file" and st.node is not None:
                info = st.node.file_info()
                new = FileInfo(
                    info.cap,
                    info.size,
                    info.mtime_ns if mtime is None else mtime,
                    info.content_hash,
                    info.mode if mode is None else mode,
                )
                if new != info:
                    await self.backend.apply([PutOp(path, new)])
                    await self.names.refresh(path)
            elif st.kind == "dir" and path != "/":
                new_mode = st.mode if mode is None else mode
                new_mtime = st.mtime_ns if mtime is None else mtime
                if (new_mode, new_mtime) != (st.mode, st.mtime_ns):
                    await self.backend.apply([MkdirOp(path, new_mode, new_mtime)])
                    await self.names.refresh(path)
            st = await self._require(path)
        return self._attr(inode, st)

    @guarded
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        st = await self._require(self._path(inode))
        if st.kind != "link" or st.node is None or st.node.target is None:
            raise fail(errno.EINVAL)
        return st.node.target.encode()

    # --- directories ------------------------------------------------------------------------

    @guarded
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        st = await self._require(self._path(inode))
        if st.kind != "dir":
            raise fail(errno.ENOTDIR)
        fh = self._fh()
        self.dir_listings[fh] = []
        self.handles[fh] = Handle(inode, None, False)
        return fh

    @guarded
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        handle = self._handle(fh)
        if start_id == 0 or fh not in self.dir_listings or not self.dir_listings[fh]:
            self.dir_listings[fh] = await self._children(self._path(handle.ino))
        listing = self.dir_listings[fh]
        for index in range(start_id, len(listing)):
            name, st = listing[index]
            ino = self.inodes.inode(st.path)
            if not pyfuse3.readdir_reply(token, name.encode(), self._attr(ino, st), index + 1):
                break
            self.inodes.lookup(st.path)

    @guarded
    async def releasedir(self, fh: int) -> None:
        self.dir_listings.pop(fh, None)
        self.handles.pop(fh, None)

    @guarded
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None

    @guarded
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        if await self._stat(path) is not None:
            raise fail(errno.EEXIST)
        await self.backend.apply([MkdirOp(path, (mode & 0o7777) or 0o755, time.time_ns())])
        await self.names.refresh(path)
        st = await self._require(path)
        return self._attr(self.inodes.lookup(path), st)

    @guarded
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        st = await self._require(path)
        if st.kind != "dir":
            raise fail(errno.ENOTDIR)
        if await self._children(path):
            raise fail(errno.ENOTEMPTY)
        await self.backend.remove(path)
        self.names.removed(path)
        self.inodes.detach(path)

    # --- names ------------------------------------------------------------------------------

    @guarded
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self._child(parent_inode, name)
        st = await self._require(path)
        if st.kind == "dir":
            raise fail(errno.EISDIR)
        if st.dirty is not None:
            self.cache.drop_dirty(st.dirty.id)
            self.uploader.dropped(st.dirty)
        node = st.node if st.dirty is None else await self.names.lookup(path)
        if node is not None:
            await self.backend.remove(path)
            self.names.removed(path)
        self.inodes.detach(path)

    @guarded
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        if await self._stat(path) is not None:
            raise fail(errno.EEXIST)
        try:
            text = target.decode("utf-8")
        except UnicodeDecodeError:
            raise fail(errno.EINVAL) from None
        await self.backend.apply([SymlinkOp(path, text, time.time_ns())])
        await self.names.refresh(path)
        st = await self._require(path)
        return self._attr(self.inodes.lookup(path), st)

    @guarded
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        src = self._child(parent_inode_old, name_old)
        dst = self._child(parent_inode_new, name_new)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise fail(errno.EINVAL)
        source = await self._require(src)
        if src == dst:
            return
        if dst.startswith(src + "/"):
            raise fail(errno.EINVAL)
        target = await self._stat(dst)
        if target is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise fail(errno.EEXIST)
            if target.kind == "dir":
                if source.kind != "dir":
                    raise fail(errno.EISDIR)
                if await self._children(dst):
                    raise fail(errno.ENOTEMPTY)
            elif source.kind == "dir":
                raise fail(errno.ENOTDIR)
            if target.dirty is not None:
                self.cache.drop_dirty(target.dirty.id)
                self.uploader.dropped(target.dirty)
        in_namespace = source.node is not None or await self.names.lookup(src) is not None
        if in_namespace:
            await self.backend.rename(src, dst)
            self.names.forget_tree(src)
            self.names.forget_tree(dst)
        elif target is not None and await self.names.lookup(dst) is not None:
            await self.backend.remove(dst)
            self.names.removed(dst)
        self.cache.rename_dirty(src, dst)
        self.inodes.rename(src, dst)

    @guarded
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise fail(errno.EPERM)

    @guarded
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if not stat.S_ISREG(mode):
            raise fail(errno.EPERM)
        path = self._child(parent_inode, name)
        if await self._stat(path) is not None:
            raise fail(errno.EEXIST)
        entry = self.cache.create_dirty(path, mode & 0o7777, time.time_ns())
        self.uploader.changed(entry)
        return self._attr(self.inodes.lookup(path), await self._require(path))

    # --- files ------------------------------------------------------------------------------

    @guarded
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = self._child(parent_inode, name)
        parent_st = await self._require(parent(path))
        if parent_st.kind != "dir":
            raise fail(errno.ENOTDIR)
        existing = await self._stat(path)
        if existing is not None and existing.kind == "dir":
            raise fail(errno.EISDIR)
        entry, fd = self.cache.create_dirty_open(path, (mode & 0o7777) or 0o644, time.time_ns())
        ino = self.inodes.lookup(path)
        handle = Handle(ino, fd, True, dirty=entry)
        self.uploader.activity()
        self.uploader.opened(entry)
        self.uploader.changed(entry)
        fh = self._register(handle)
        st = await self._require(path)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False), self._attr(ino, st)

    @guarded
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        path = self._path(inode)
        st = await self._require(path)
        if st.kind == "dir":
            raise fail(errno.EISDIR)
        if st.kind != "file":
            raise fail(errno.EINVAL)
        writable = bool(flags & (os.O_WRONLY | os.O_RDWR))
        truncate = bool(flags & os.O_TRUNC) and writable
        if writable or truncate:
            entry = await self._materialize(st, empty=truncate)
            if truncate and entry.size:
                os.truncate(self.cache.dirty_path(entry), 0)
                self.cache.modified(entry, 0)
                self.uploader.changed(entry)
            handle = self._open_dirty(inode, entry, writable=True)
            keep = False
        elif st.dirty is not None:
            handle = self._open_dirty(inode, st.dirty, writable=False)
            keep = False
        else:
            cap = st.cap
            assert cap is not None
            handle = Handle(inode, None, False, cap=cap, size=st.size)
            keep = self._last_cap.get(inode) == cap
            self._last_cap[inode] = cap
        fh = self._register(handle)
        self.fetcher.pinned = self._pinned()
        return pyfuse3.FileInfo(fh=fh, keep_cache=keep)

    @guarded
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handle(fh)
        if handle.dirty is not None:
            assert handle.fd is not None
            return os.pread(handle.fd, size, off)
        assert handle.cap is not None
        chunks = chunks_for(off, size, handle.size)
        if not chunks:
            return b""
        clean = handle.clean
        if clean is None or not self.cache.holds(clean, chunks):  # fast path: all cached
            handle.clean = await self.fetcher.ensure(handle.cap, handle.size, chunks)
        else:
            self.cache.touch(clean)
        if handle.fd is None:
            handle.fd = os.open(self.cache.clean_path(handle.cap), os.O_RDONLY)
        last = chunks.stop - 1
        if last != handle.readahead_from and (off == handle.next_offset or off == 0):
            handle.readahead_from = last  # once per chunk, not per 128 KiB request
            self.fetcher.readahead(handle.cap, handle.size, last)
        handle.next_offset = off + size
        return os.pread(handle.fd, size, off)

    @guarded
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handle(fh)
        entry = handle.dirty
        if entry is None or handle.fd is None or not handle.writable:
            raise fail(errno.EBADF)
        written = os.pwrite(handle.fd, buf, off)
        self.cache.modified(entry, max(entry.size, off + written))
        entry.mtime_ns = time.time_ns()
        self.uploader.activity()
        self.uploader.changed(entry)
        return written

    @guarded
    async def flush(self, fh: int) -> None:
        return None

    @guarded
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self._handle(fh)
        entry = handle.dirty
        if entry is None or handle.fd is None:
            return
        await trio.to_thread.run_sync(os.fdatasync, handle.fd)
        if self.cache.dirty(entry.id) is not entry:
            return
        try:
            await self.uploader.wait_stored(entry)
        except UploadFailed as error:
            logger.warning("fsync of %s: %s", entry.path, error)
            raise fail(errno.EIO) from None

    @guarded
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if handle is None:
            return
        self.fetcher.pinned = self._pinned()
        if handle.fd is not None:
            # No fdatasync here: a killed daemon loses nothing in the page cache, and the
            # upload follows shortly; fsync() is the way to ask for durability now.
            os.close(handle.fd)
        if handle.writable and handle.dirty is not None:
            self.uploader.closed(handle.dirty)
            self.uploader.maybe_promote(handle.dirty)

    # --- file system ------------------------------------------------------------------------

    @guarded
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        space = await self.backend.space()
        data = pyfuse3.StatvfsData()
        data.f_bsize = 128 * 1024
        data.f_frsize = 4096
        data.f_blocks = max(space.total, space.free) // data.f_frsize
        data.f_bfree = space.free // data.f_frsize
        data.f_bavail = data.f_bfree
        data.f_files = 1 << 32
        data.f_ffree = (1 << 32) - len(self.inodes)
        data.f_favail = data.f_ffree
        data.f_namemax = 255
        return data

    # --- extended attributes ----------------------------------------------------------------

    async def _status(self, st: Stat) -> str:
        if st.dirty is not None:
            if st.dirty.stored_cap is not None:
                return "stored, cached"
            if self.uploader.uploading(st.dirty):
                return "uploading"
            return "cached, waiting to upload"
        if st.kind != "file" or st.cap is None:
            return "stored"
        stored = self.uploader.uploaded_placements.get(st.cap)
        if stored is None:
            stored = await self.backend.placements(st.cap)
        clean = self.cache.clean(st.cap)
        cached = (
            "cached"
            if clean is not None and clean.complete
            else ("partly cached" if clean is not None and clean.present else "not cached")
        )
        where = f"stored {stored}/{self.n}" if stored else "stored"
        return f"{where}, {cached}"

    @guarded
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        path = self._path(inode)
        st = await self._require(path)
        if name == XATTR_STATUS:
            return (await self._status(st)).encode()
        if name in (XATTR_LINK, XATTR_CAP) and st.cap is not None:
            if name == XATTR_CAP:
                return st.cap.encode()
            return self.backend.share_link(st.cap, path.rsplit("/", 1)[-1]).encode()
        raise fail(pyfuse3.ENOATTR)

    @guarded
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        st = await self._require(self._path(inode))
        if st.kind != "file":
            return [XATTR_STATUS]
        return [XATTR_STATUS] + ([XATTR_LINK, XATTR_CAP] if st.cap is not None else [])

    @guarded
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        raise fail(errno.ENOTSUP)

    @guarded
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise fail(errno.ENOTSUP)

    # --- remote changes ---------------------------------------------------------------------

    def invalidations(self, paths: list[str]) -> list[tuple[int, int | None, bytes]]:
        """(inode or 0, parent inode, name) for every changed path the kernel may have cached."""
        out: list[tuple[int, int | None, bytes]] = []
        for path in paths:
            if path == "/":
                continue
            ino = self.inodes.known(path) or 0
            up = self.inodes.known(parent(path))
            if ino or up:
                out.append((ino, up, path.rsplit("/", 1)[1].encode()))
        return out


def _copy_file(source: str, target: str, size: int) -> None:
    with open(source, "rb") as src, open(target, "r+b") as dst:
        copied = 0
        while copied < size:
            done = os.copy_file_range(src.fileno(), dst.fileno(), min(size - copied, 64 * CHUNK))
            if done == 0:
                break
            copied += done
        if copied < size:
            raise OSError(errno.EIO, "short copy from the cache")
