"""Reading stored files through the clean cache: only the chunks a read needs, plus read-ahead.

One `FileReader` per cap (located once, reused by every handle and every fetch). A fetch is a
run of up to RUN_CHUNKS contiguous chunks streamed from the nodes segment by segment (a chunk
is one 2 MiB segment), each chunk written to the sparse clean file and announced as it lands,
so a reader waiting for the first chunk of a run does not wait for the whole run.

Sequential reads keep a window of `readahead` chunks ahead of the reader, fetched as several
runs at once (up to `parallel` runs in flight in all): one run at a time left the network idle
while each run was decoded and written, and cold reads ran at a sixth of the download speed.
Concurrent requests for the same chunk wait for one fetch. Every fetch is bounded by `timeout`,
so a read of uncached data with the network down fails with EIO instead of hanging the
application; cached chunks never touch the network.

The downloads themselves (locate, receive, verify and decode, write to the clean file) run on
a trio loop of their own in a dedicated thread (`loop_thread.LoopThread`) with its own
NodePool, so the bulk receive does not take turns with FUSE requests on the daemon's loop.
Chunk bookkeeping (the cache index, waiting readers) stays on the daemon's loop: the thread
announces each landed chunk there.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Collection, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace

import trio

from desktop.client.download import DownloadOptions, FileReader, open_file
from desktop.client.errors import single_error
from desktop.client.pool import NodePool
from desktop.core.errors import PermaCloudError
from desktop.fuse.cache import CHUNK, Cache, CleanEntry, chunk_count
from desktop.fuse.loop_thread import LoopThread, LoopThreadStopped
from desktop.net.identity import DeviceKey
from desktop.net.node_client import NodeClient, Timeouts
from desktop.net.nodes_file import NodeAddress

logger = logging.getLogger(__name__)

RUN_CHUNKS = 4  # chunks per fetch: 8 MiB of plaintext, ~2.7 MiB per share request at k=3
MAX_RUN = RUN_CHUNKS


def runs(chunks: Sequence[int], max_run: int = RUN_CHUNKS) -> list[range]:
    """Group chunk indexes into sorted contiguous ranges of at most `max_run`."""
    out: list[range] = []
    for chunk in sorted(chunks):
        if out and out[-1].stop == chunk and len(out[-1]) < max_run:
            out[-1] = range(out[-1].start, chunk + 1)
        else:
            out.append(range(chunk, chunk + 1))
    return out


class Fetcher:
    def __init__(
        self,
        pool: NodePool,
        cache: Cache,
        timeout: float,
        readahead: int,
        parallel: int = 4,
    ) -> None:
        self.pool = pool
        self.cache = cache
        self.timeout = timeout
        self.readahead_chunks = readahead
        self.options = DownloadOptions(
            timeout=min(timeout, 20.0), locate_timeout=min(timeout / 2, 5.0)
        )
        self._runs = trio.CapacityLimiter(parallel)
        self._loop = LoopThread("permacloud-fetch")
        self._remote = _Downloads(self._loop, self.options)
        self._inflight: dict[tuple[str, int], trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self.pinned: Collection[str] = ()

    async def run(self) -> None:
        """Host read-ahead tasks and the download thread until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._loop.serve, None, self._remote.aclose)
            self._nursery = nursery
            await trio.sleep_forever()

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
                    mine = [c for c in missing if (entry.key, c) not in self._inflight]
                    if mine:
                        await self._fetch_all(entry, mine)
                    for c in missing:
                        event = self._inflight.get((entry.key, c))
                        if event is not None:
                            await event.wait()
        except trio.TooSlowError:
            logger.warning("reading %s timed out after %.0f s", entry.key[:8], self.timeout)
            raise OSError(errno.EIO, "timed out reading from the network") from None
        if self.cache.missing(entry, chunks):
            raise OSError(errno.EIO, "chunks could not be fetched")
        return entry

    def readahead(self, cap: str, size: int, after: int) -> None:
        """Keep the chunks after chunk `after` coming in the background (sequential reads)."""
        if self._nursery is None or self.readahead_chunks <= 0:
            return
        entry = self.cache.clean(cap)
        if entry is None:
            return
        last = chunk_count(size)
        stop = min(after + 1 + self.readahead_chunks, last)
        wanted = [
            c
            for c in range(after + 1, stop)
            if c not in entry.present and (entry.key, c) not in self._inflight
        ]
        if len(wanted) < RUN_CHUNKS and stop < last:
            return  # top the window up a whole run at a time: fewer, bigger requests
        for run in runs(wanted):
            self._claim(entry, run)
            self._nursery.start_soon(self._background, entry, run)

    async def _background(self, entry: CleanEntry, run: range) -> None:
        try:
            with trio.move_on_after(self.timeout):
                await self._fetch_run(entry, run)
        except OSError as error:
            logger.info("read-ahead of %s failed: %s", entry.key[:8], error)
        finally:
            self._release(entry, run)

    def _claim(self, entry: CleanEntry, run: range) -> None:
        for chunk in run:
            self._inflight[(entry.key, chunk)] = trio.Event()

    def _release(self, entry: CleanEntry, chunks: range) -> None:
        for chunk in chunks:
            event = self._inflight.pop((entry.key, chunk), None)
            if event is not None:
                event.set()

    async def _fetch_all(self, entry: CleanEntry, chunks: list[int]) -> None:
        """Fetch `chunks` as concurrent runs; the first failure is raised after all end."""
        failures: list[OSError] = []

        async def one(run: range) -> None:
            try:
                await self._fetch_run(entry, run)
            except OSError as error:
                failures.append(error)
            finally:
                self._release(entry, run)

        planned = runs(chunks)
        for run in planned:
            self._claim(entry, run)
        async with trio.open_nursery() as nursery:
            for run in planned:
                nursery.start_soon(one, run)
        if failures:
            raise failures[0]

    async def _fetch_run(self, entry: CleanEntry, run: range) -> None:
        offset = run.start * CHUNK
        length = min(len(run) * CHUNK, entry.size - offset)
        job = _Job(
            entry.cap,
            str(self.cache.clean_dir / entry.key),
            run,
            offset,
            length,
            _snapshot(self.pool),
            lambda chunks: self._landed(entry, chunks),
        )
        try:
            async with self._runs:
                await self._loop.run(self._remote.fetch, job)
        except (PermaCloudError, OSError, LoopThreadStopped) as error:
            logger.warning("fetching %s failed: %s", entry.key[:8], error)
            raise OSError(errno.EIO, str(error)) from None
        if self.cache.limit and self.cache.clean_bytes() > self.cache.limit:
            self.cache.evict(self.pinned)

    def _landed(self, entry: CleanEntry, chunks: range) -> None:
        """On the daemon's loop: chunks written to the clean file are ready to serve."""
        fresh = [c for c in chunks if c not in entry.present]
        if fresh:
            self.cache.add_chunks(entry, fresh)
            self._release(entry, range(fresh[0], fresh[-1] + 1))

    def forget(self, cap: str) -> None:
        self._loop.call_soon(self._remote.forget, cap)


@dataclass(frozen=True)
class _PoolSnapshot:
    """What downloads need from the daemon's NodePool: the nodes, and what placement knows."""

    addresses: list[NodeAddress]
    online: dict[str, tuple[bool | None, int]]
    reputation_weight: dict[str, float]
    vetted: set[str]
    timeouts: Timeouts
    max_connections: int
    client_key: DeviceKey


def _snapshot(pool: NodePool) -> _PoolSnapshot:
    addresses = []
    for node_id in pool.node_ids:
        client: NodeClient = pool.client(node_id)  # no connection is made
        host, port = client.address
        addresses.append(NodeAddress(node_id, host, port))
    return _PoolSnapshot(
        addresses,
        {n: (s.online, s.free) for n, s in pool.stats.items()},
        dict(pool.reputation_weight),
        set(pool.vetted),
        pool.timeouts,
        pool.max_connections,
        pool.client_key,
    )


@dataclass(frozen=True)
class _Job:
    cap: str
    path: str
    run: range
    offset: int
    length: int
    pool: _PoolSnapshot
    landed: Callable[[range], None] = field(repr=False)


class _Downloads:
    """Lives on the download thread's loop: its own NodePool (trio connections belong to one
    loop) and one located `FileReader` per cap."""

    def __init__(self, loop: LoopThread, options: DownloadOptions) -> None:
        self.loop = loop
        self.options = options
        self.pool: NodePool | None = None
        self._readers: dict[str, FileReader] = {}
        self._locks: dict[str, trio.Lock] = {}

    def _sync_pool(self, snap: _PoolSnapshot) -> NodePool:
        pool = self.pool
        if pool is None:
            pool = self.pool = NodePool(
                snap.client_key,
                snap.addresses,
                timeouts=snap.timeouts,
                max_connections=snap.max_connections,
            )
        else:
            pool.update(snap.addresses)
        for node_id, (online, free) in snap.online.items():
            stats = pool.stats.get(node_id)
            if stats is not None and online is not None:
                pool.stats[node_id] = replace(stats, online=online, free=free)
        pool.reputation_weight = snap.reputation_weight
        pool.vetted = snap.vetted
        return pool

    async def fetch(self, job: _Job) -> None:
        pool = self._sync_pool(job.pool)
        try:
            reader = await self._reader(pool, job.cap)
            fd = await trio.to_thread.run_sync(os.open, job.path, os.O_WRONLY)
            try:
                await self._stream(reader, job, fd)
            finally:
                os.close(fd)
        except (PermaCloudError, OSError):
            self._readers.pop(job.cap, None)
            raise

    async def _stream(self, reader: FileReader, job: _Job, fd: int) -> None:
        """Write the run's plaintext as it is decoded; each whole chunk is announced at once."""
        run = job.run
        position = job.offset
        end = job.offset + job.length
        announced = run.start
        with single_error():
            async with aclosing(reader.iter_range(job.offset, job.length)) as pieces:
                async for piece in pieces:
                    await trio.to_thread.run_sync(_write_at, fd, position, piece)
                    position += len(piece)
                    done = min(position // CHUNK, run.stop)
                    if position == end:
                        done = run.stop
                    if done > announced:
                        self.loop.to_main(job.landed, range(announced, done))
                        announced = done
        if position != end:
            raise OSError(errno.EIO, "short read from the network")

    async def _reader(self, pool: NodePool, cap: str) -> FileReader:
        reader = self._readers.get(cap)
        if reader is None:
            lock = self._locks.setdefault(cap, trio.Lock())
            async with lock:  # one locate per cap, however many runs start at once
                reader = self._readers.get(cap)
                if reader is None:
                    reader = await open_file(pool, cap, self.options)
                    self._readers[cap] = reader
        return reader

    def forget(self, cap: str) -> None:
        self._readers.pop(cap, None)
        self._locks.pop(cap, None)

    async def aclose(self) -> None:
        self._readers.clear()
        if self.pool is not None:
            await self.pool.aclose()


def _write_at(fd: int, offset: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
