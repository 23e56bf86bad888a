"""Background uploads of dirty files, debounced by `UploadPlanner`.

An upload counts only if the file did not change while it ran (its `gen` did not move): then the
namespace entry is appended (durable in the index, published from the outbox) and the journal
row records the cap. A closed, stored file is promoted to clean cache data. `fsync` and unmount
wait here until the content is stored on `happy` nodes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import blake3
import trio

from desktop.client.errors import single_error
from desktop.client.upload import upload_file
from desktop.core.errors import PermaCloudError
from desktop.core.namespace import FileInfo
from desktop.fuse.backend import Backend
from desktop.fuse.cache import Cache, DirtyFile
from desktop.fuse.nscache import NamespaceCache
from desktop.fuse.planner import UploadPlanner
from desktop.net.errors import NodeError

logger = logging.getLogger(__name__)

HASH_CHUNK = 4 << 20
DELETE_TIMEOUT = 10.0
SMALL_FILE = 1 << 20  # up to this size uploads run many at once (their shares go in batches)
MAX_PUTS = 256  # namespace entries appended in one database call


class UploadFailed(PermaCloudError):
    """The content could not be stored (too few nodes reachable)."""


def content_hash(path: str) -> str:
    hasher = blake3.blake3()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            hasher.update(chunk)
    return str(hasher.hexdigest())


@dataclass
class Pending:
    files: int
    bytes: int


@dataclass
class _Put:
    path: str
    info: FileInfo
    placements: dict[int, str]
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


class Uploader:
    def __init__(
        self,
        backend: Backend,
        cache: Cache,
        delay: float,
        parallel: int = 4,
        timeout: float = 300.0,
        names: NamespaceCache | None = None,
        small_parallel: int = 32,
    ) -> None:
        self.backend = backend
        self.timeout = timeout
        self.cache = cache
        self.names = names
        self.planner = UploadPlanner(delay)
        # Large files share `parallel` slots; small ones get their own, wider, pool: their
        # shares to one node then travel in one batch request (client/batcher.py).
        self.limiter = trio.CapacityLimiter(parallel)
        self.small_limiter = trio.CapacityLimiter(small_parallel)
        # A timer wake-up waits this much longer, so files that became due close together
        # start together (fewer wake-ups, bigger batches); fsync and flush wake at once.
        self.slack = min(0.1, delay / 4)
        self._sleep_until = math.inf
        self._puts: list[_Put] = []
        self._committing = False
        self._committed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.discarded = 0  # uploads whose content was superseded before it was recorded
        self.failures: dict[int, int] = {}
        self.last_error: dict[int, str] = {}
        self.uploaded_placements: dict[str, int] = {}
        self._wake = trio.Event()
        self._progress = trio.Event()

    # --- what the file system tells us ------------------------------------------------------

    def poke(self) -> None:
        self._wake.set()

    def _poke_if_sooner(self, file_id: int) -> None:
        """Wake the scheduler only if this file is due before its planned wake-up: a write
        burst then costs no scheduler work per write."""
        due = self.planner.due_at(file_id)
        if due is not None and due + self.slack < self._sleep_until:
            self.poke()

    def activity(self) -> None:
        self.planner.activity(trio.current_time())

    def opened(self, entry: DirtyFile) -> None:
        self.planner.opened(entry.id, trio.current_time())

    def closed(self, entry: DirtyFile) -> None:
        self.planner.closed(entry.id, trio.current_time())
        self._poke_if_sooner(entry.id)

    def changed(self, entry: DirtyFile) -> None:
        self.planner.changed(entry.id, trio.current_time())
        self._poke_if_sooner(entry.id)

    def dropped(self, entry: DirtyFile) -> None:
        self.planner.forget(entry.id)
        self._notify()

    def uploading(self, entry: DirtyFile) -> bool:
        return entry.id in self.planner.running()

    def pending(self) -> Pending:
        waiting = [e for e in self.cache.dirty_files() if e.stored_cap is None]
        return Pending(len(waiting), sum(e.size for e in waiting))

    def _notify(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    # --- running ----------------------------------------------------------------------------

    def replay(self) -> int:
        """Schedule every dirty file left in the journal (after a crash or a stop); count."""
        now = trio.current_time()
        count = 0
        for entry in self.cache.dirty_files():
            if entry.stored_cap is not None:
                self.cache.promote(entry)
                continue
            self.planner.urgent(entry.id, now)
            count += 1
        if count:
            logger.info("resuming %d uploads from the cache journal", count)
        self.poke()
        return count

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                for file_id in self.planner.due(trio.current_time()):
                    nursery.start_soon(self._upload, file_id)
                due = self.planner.next_due()
                self._sleep_until = math.inf if due is None else due + self.slack
                with trio.move_on_at(self._sleep_until):
                    await self._wake.wait()
                self._sleep_until = -math.inf  # awake: every change pokes until we sleep
                self._wake = trio.Event()

    async def _upload(self, file_id: int) -> None:
        ok, again = False, False
        try:
            entry = self.cache.dirty(file_id)
            small = entry is not None and entry.size <= SMALL_FILE
            async with self.small_limiter if small else self.limiter:
                entry = self.cache.dirty(file_id)
                # A stalled upload must not block the queue: the base timeout plus 1 MiB/s.
                limit = self.timeout + (entry.size if entry else 0) / (1 << 20)
                with trio.fail_after(limit):
                    ok, again = await self._store(file_id)
        except (PermaCloudError, OSError, trio.TooSlowError) as error:
            self.failures[file_id] = self.failures.get(file_id, 0) + 1
            self.last_error[file_id] = str(error) or type(error).__name__
            entry = self.cache.dirty(file_id)
            logger.warning("upload of %s failed: %s", entry.path if entry else file_id, error)
        finally:
            self.planner.finished(file_id, trio.current_time(), ok=ok, again=again)
            self.poke()
            self._notify()

    async def _store(self, file_id: int) -> tuple[bool, bool]:
        entry = self.cache.dirty(file_id)
        if entry is None:
            return True, False
        gen = entry.gen
        if entry.stored_cap is None:
            source = self.cache.dirty_path(entry)
            digest = await trio.to_thread.run_sync(content_hash, str(source))
            options = self.backend.upload_options()
            with single_error():
                result = await upload_file(self.backend.pool, source, options)
            if self.cache.dirty(file_id) is not entry or entry.gen != gen:
                # Unlinked, replaced or changed meanwhile: this content is nobody's. It is not
                # recorded (so never renewed: its leases run out), and deleted now unless
                # convergent encryption could have made another file share its storage index.
                if options.convergence_secret is None:
                    self._discard(result.cap.storage_index, result.placements)
                return True, self.cache.dirty(file_id) is entry
            cap = result.cap.to_string()
            info = FileInfo(cap, result.size, entry.mtime_ns, digest, entry.mode & 0o7777)
            await self._record(entry.path, info, result.placements)
            self.uploaded_placements[cap] = len(result.placements)
            if self.cache.dirty(file_id) is not entry or entry.gen != gen:
                return True, True
            self.cache.mark_stored(entry, cap)
            self.failures.pop(file_id, None)
            self.last_error.pop(file_id, None)
        self.maybe_promote(entry)
        return True, False

    def _discard(self, si: bytes, placements: dict[int, str]) -> None:
        if self._nursery is None:
            return
        self.discarded += 1
        for shnum, node in placements.items():
            self._nursery.start_soon(self._delete_share, si, shnum, node)

    async def _delete_share(self, si: bytes, shnum: int, node: str) -> None:
        with trio.move_on_after(DELETE_TIMEOUT):
            try:
                await self.backend.pool.client(node).delete(si, shnum)
            except NodeError as error:
                logger.info("could not delete discarded share %d on %s: %s", shnum, node, error)

    async def _record(self, path: str, info: FileInfo, placements: dict[int, str]) -> None:
        """Append the file to the namespace, in one database call with every other upload that
        finished meanwhile (group commit): the first waiting upload commits for all."""
        item = _Put(path, info, placements)
        self._puts.append(item)
        while not item.done.is_set():
            if self._committing:
                await self._committed.wait()
                continue
            self._committing = True
            try:
                while self._puts and not item.done.is_set():
                    batch, self._puts = self._puts[:MAX_PUTS], self._puts[MAX_PUTS:]
                    try:
                        await self.backend.put_many([(p.path, p.info, p.placements) for p in batch])
                    except BaseException as error:
                        for put in batch:
                            put.error = error
                        raise
                    finally:
                        for put in batch:
                            put.done.set()
                    if self.names is not None:
                        for put in batch:
                            if put.error is None:
                                self.names.stored(put.path, put.info)
            finally:
                self._committing = False
                self._committed.set()
                self._committed = trio.Event()
        if item.error is not None:
            if isinstance(item.error, (PermaCloudError, OSError)):
                raise item.error
            raise UploadFailed(f"recording {path}: {item.error!r}")

    def maybe_promote(self, entry: DirtyFile) -> None:
        """Closed and stored: the journal row goes, the bytes stay as clean cache."""
        if (
            entry.stored_cap is not None
            and self.cache.dirty(entry.id) is entry
            and self.planner_writers(entry) == 0
        ):
            self.cache.promote(entry)

    def planner_writers(self, entry: DirtyFile) -> int:
        state = self.planner._files.get(entry.id)
        return 0 if state is None else state.writers

    # --- waiting ----------------------------------------------------------------------------

    async def wait_stored(self, entry: DirtyFile) -> None:
        """Until `entry`'s current content is stored (fsync); UploadFailed if an attempt fails."""
        failures = self.failures.get(entry.id, 0)
        self.planner.urgent(entry.id, trio.current_time())
        self.poke()
        while True:
            current = self.cache.dirty(entry.id)
            if current is None or current.stored_cap is not None:
                return
            if self.failures.get(entry.id, 0) > failures:
                raise UploadFailed(self.last_error.get(entry.id, "upload failed"))
            await self._progress.wait()

    async def flush(self) -> Pending:
        """Upload every dirty file now; returns what is still pending (call under a timeout)."""
        now = trio.current_time()
        for entry in self.cache.dirty_files():
            if entry.stored_cap is None:
                self.planner.urgent(entry.id, now)
        self.poke()
        while True:
            pending = self.pending()
            if pending.files == 0:
                return pending
            await self._progress.wait()
