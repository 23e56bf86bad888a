"""Reading stored files through the clean cache: only the chunks a read needs, plus read-ahead.

One `FileReader` per cap (located once, reused by every handle); reads of one cap are serialised
(a FileReader is not re-entrant) and concurrent requests for the same chunk wait for one fetch.
Every fetch is bounded by `timeout`, so a read of uncached data with the network down fails with
EIO instead of hanging the application; cached chunks never touch the network.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Collection

import trio

from desktop.client.download import DownloadOptions, FileReader, open_file
from desktop.client.errors import single_error
from desktop.client.pool import NodePool
from desktop.core.errors import PermaCloudError
from desktop.fuse.cache import CHUNK, Cache, CleanEntry, chunk_count

logger = logging.getLogger(__name__)

MAX_RUN = 8  # chunks per request: 16 MiB


def runs(chunks: list[int]) -> list[range]:
    """Group sorted chunk indexes into contiguous ranges of at most MAX_RUN."""
    out: list[range] = []
    for chunk in sorted(chunks):
        if out and out[-1].stop == chunk and len(out[-1]) < MAX_RUN:
            out[-1] = range(out[-1].start, chunk + 1)
        else:
            out.append(range(chunk, chunk + 1))
    return out


class Fetcher:
    def __init__(self, pool: NodePool, cache: Cache, timeout: float, readahead: int) -> None:
        self.pool = pool
        self.cache = cache
        self.timeout = timeout
        self.readahead_chunks = readahead
        self.options = DownloadOptions(
            timeout=min(timeout, 20.0), locate_timeout=min(timeout / 2, 5.0)
        )
        self._readers: dict[str, FileReader] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._inflight: dict[tuple[str, int], trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self.pinned: Collection[str] = ()

    async def run(self) -> None:
        """Host read-ahead tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await trio.sleep_forever()

    def _lock(self, cap: str) -> trio.Lock:
        lock = self._locks.get(cap)
        if lock is None:
            lock = self._locks[cap] = trio.Lock()
        return lock

    async def ensure(self, cap: str, size: int, chunks: range) -> CleanEntry:
        """Make `chunks` of `cap` present in the clean cache, or raise OSError(EIO)."""
        entry = self.cache.clean_entry(cap, size)
        try:
            with trio.fail_after(self.timeout):
                for _ in range(3):
                    missing = self.cache.missing(entry, chunks)
                    if not missing:
                        self.cache.touch(entry)
                        return entry
                    waits = [
                        self._inflight[(entry.key, c)]
                        for c in missing
                        if (entry.key, c) in self._inflight
                    ]
                    mine = [c for c in missing if (entry.key, c) not in self._inflight]
                    await self._fetch(entry, mine)
                    for event in waits:
                        await event.wait()
        except trio.TooSlowError:
            logger.warning("reading %s timed out after %.0f s", entry.key[:8], self.timeout)
            raise OSError(errno.EIO, "timed out reading from the network") from None
        if self.cache.missing(entry, chunks):
            raise OSError(errno.EIO, "chunks could not be fetched")
        return entry

    def readahead(self, cap: str, size: int, after: int) -> None:
        """Start fetching the chunks after chunk `after` in the background (sequential reads)."""
        if self._nursery is None or self.readahead_chunks <= 0:
            return
        entry = self.cache.clean(cap)
        if entry is None:
            return
        stop = min(after + 1 + self.readahead_chunks, chunk_count(size))
        wanted = [
            c
            for c in range(after + 1, stop)
            if c not in entry.present and (entry.key, c) not in self._inflight
        ]
        if wanted:
            self._nursery.start_soon(self._background, entry, wanted)

    async def _background(self, entry: CleanEntry, chunks: list[int]) -> None:
        try:
            with trio.move_on_after(self.timeout):
                await self._fetch(entry, chunks)
        except OSError as error:
            logger.info("read-ahead of %s failed: %s", entry.key[:8], error)

    async def _fetch(self, entry: CleanEntry, chunks: list[int]) -> None:
        chunks = [c for c in chunks if (entry.key, c) not in self._inflight]
        if not chunks:
            return
        events = {c: trio.Event() for c in chunks}
        for chunk, event in events.items():
            self._inflight[(entry.key, chunk)] = event
        try:
            for run in runs(chunks):
                await self._fetch_run(entry, run)
        finally:
            for chunk, event in events.items():
                self._inflight.pop((entry.key, chunk), None)
                event.set()
        if self.cache.limit and self.cache.clean_bytes() > self.cache.limit:
            self.cache.evict(self.pinned)

    async def _fetch_run(self, entry: CleanEntry, run: range) -> None:
        offset = run.start * CHUNK
        length = min(len(run) * CHUNK, entry.size - offset)
        try:
            async with self._lock(entry.cap):
                reader = await self._reader(entry.cap)
                with single_error():
                    data = await reader.read(offset, length)
        except (PermaCloudError, OSError) as error:
            self._readers.pop(entry.cap, None)
            logger.warning("fetching %s failed: %s", entry.key[:8], error)
            raise OSError(errno.EIO, str(error)) from None
        if len(data) != length:
            raise OSError(errno.EIO, "short read from the network")
        path = self.cache.clean_dir / entry.key
        await trio.to_thread.run_sync(_write_at, path, offset, data)
        self.cache.add_chunks(entry, run)

    async def _reader(self, cap: str) -> FileReader:
        reader = self._readers.get(cap)
        if reader is None:
            reader = await open_file(self.pool, cap, self.options)
            self._readers[cap] = reader
        return reader

    def forget(self, cap: str) -> None:
        self._readers.pop(cap, None)
        self._locks.pop(cap, None)


def _write_at(path: os.PathLike[str], offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
    finally:
        os.close(fd)
