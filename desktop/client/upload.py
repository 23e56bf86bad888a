"""Uploading one file (or blob) to many nodes: encode once, stream every share in parallel.

How it runs (the decisions live in `upload_plan.UploadTracker`):

* `n + spare` share numbers are encoded (the cap commits to all of them) and streamed at once to
  distinct nodes in weighted rendezvous order. Two encoder threads read and encode segments; each
  share has a bounded queue, so memory stays bounded whatever the file size, and a slow node
  slows the producer (back-pressure) -- unless spares give slack: a share whose queue stays full
  for `lag_grace` seconds is then dropped (cancelled, its partial share deleted), which is how
  the slowest uploads are cut off. Once `n` shares are sealed, the others are cancelled too.
* A node that fails (down, QuotaExceeded, refused) loses its share; if the spares no longer
  cover `n`, the share number is given to the next node in rendezvous order and re-encoded for it
  from the source (a local file or bytes), each block checked against the finished hash tree.
* Each share task coalesces consecutive blocks into writes of up to `write_size` bytes; a share
  that fits in one write is sent as one write after encoding (create + write + seal).
* Success needs `happy` sealed shares. Otherwise every share written is deleted (best effort)
  and `NotEnoughNodes` is raised.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio

from desktop.client.errors import single_error
from desktop.client.pool import NodePool
from desktop.client.upload_plan import NotEnoughNodes, UploadTracker
from desktop.core.caps import ReadCap
from desktop.core.decoder import ShareVerifier
from desktop.core.encoder import Block, EncodedSegment, Encoder, FinishedEncoding, convergent_key
from desktop.core.errors import InputSizeError, PermaCloudError, ShareCorrupt
from desktop.core.params import DEFAULT_SEGMENT_SIZE, MAX_SHARES, EncodingParams
from desktop.core.placement import choose_nodes
from desktop.net.errors import NodeError, NodeRefused
from desktop.net.protocol import MAX_WRITE_BODY

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""progress(bytes_done, bytes_total), called from the trio thread."""

DELETE_TIMEOUT = 5.0
DEFAULT_LEASE_SECONDS = 365 * 86400


class SourceChanged(PermaCloudError):
    """The file changed while it was being uploaded."""


@dataclass(frozen=True)
class UploadOptions:
    k: int = 3
    n: int = 10
    happy: int = 7
    spare: int = 2
    segment_size: int = DEFAULT_SEGMENT_SIZE
    lease_seconds: int = DEFAULT_LEASE_SECONDS
    convergence_secret: bytes | None = None
    lag_grace: float = 2.0
    write_size: int = 4 * 1024 * 1024
    write_depth: int = 2
    workers: int = 2

    def params(self) -> EncodingParams:
        total = min(self.n + max(self.spare, 0), MAX_SHARES)
        return EncodingParams(self.k, total, self.segment_size)


@dataclass(frozen=True)
class UploadResult:
    cap: ReadCap
    size: int
    placements: dict[int, str] = field(default_factory=dict)


class _Source(Protocol):
    size: int

    def pread(self, offset: int, length: int) -> bytes | memoryview: ...


class _FileSource:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def pread(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        if len(data) == length:
            return data
        parts = [data]
        got = len(data)
        while got < length:
            chunk = os.pread(self.fd, length - got, offset + got)
            if not chunk:
                raise InputSizeError("the file shrank while it was read")
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)


class _BytesSource:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.view = memoryview(data).cast("B")
        self.size = len(self.view)

    def pread(self, offset: int, length: int) -> memoryview:
        return self.view[offset : offset + length]


class _Upload:
    def __init__(
        self, pool: NodePool, source: _Source, options: UploadOptions, progress: Progress | None
    ) -> None:
        self.pool = pool
        self.source = source
        self.options = options
        self.progress = progress
        self.params = options.params()
        self.senders: dict[int, trio.MemorySendChannel[EncodedSegment]] = {}
        self.scopes: dict[int, trio.CancelScope] = {}
        self.created: set[tuple[int, str]] = set()
        self.finished: FinishedEncoding | None = None
        self.finished_event = trio.Event()
        self.sent_bytes = 0

    async def _key(self) -> bytes | None:
        secret = self.options.convergence_secret
        if secret is None:
            return None
        hasher = convergent_key(secret, self.params, self.source.size)
        chunk = 8 * 1024 * 1024

        def digest() -> bytes:
            for offset in range(0, self.source.size, chunk):
                hasher.update(self.source.pread(offset, min(chunk, self.source.size - offset)))
            return hasher.key()

        return await trio.to_thread.run_sync(digest)

    async def run(self) -> UploadResult:
        options = self.options
        await self.pool.ensure_fresh()
        self.encoder = Encoder(self.params, self.source.size, key=await self._key())
        self.si = self.encoder.storage_index
        self.layout = self.encoder.layout
        self.small = self.layout.share_size <= min(options.write_size, MAX_WRITE_BODY)
        candidates = self.pool.candidates()
        order = [c.node_id for c in choose_nodes(self.si, candidates, len(candidates))]
        try:
            self.tracker = UploadTracker(
                order,
                total=self.params.n,
                target=min(options.n, self.params.n),
                happy=options.happy,
                reachable=len(candidates),
            )
        except NotEnoughNodes as error:
            raise NotEnoughNodes(f"{error}{self._offline_detail()}") from None
        capacity = max(2, options.write_size // max(self.layout.block_size, 1))
        started = time.monotonic()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                for shnum, node in self.tracker.initial().items():
                    send, receive = trio.open_memory_channel[EncodedSegment](capacity)
                    self.senders[shnum] = send
                    nursery.start_soon(self._share_task, shnum, node, receive)
                nursery.start_soon(self._produce)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._delete_all(self.created)
            raise
        failure = self.tracker.outcome_error()
        placements = self.tracker.placements()
        if failure is not None:
            with trio.CancelScope(shield=True):
                await self._delete_all(self.created)
            raise failure
        assert self.finished is not None
        if len(placements) < options.n:
            logger.warning(
                "upload stored only %d of %d shares (happy is %d): repair will add the rest",
                len(placements),
                options.n,
                options.happy,
            )
        logger.info(
            "uploaded %d bytes as %d shares in %.2f s (bad nodes: %s)",
            self.source.size,
            len(placements),
            time.monotonic() - started,
            self.tracker.bad_nodes or "none",
        )
        return UploadResult(self.finished.cap, self.source.size, placements)

    def _offline_detail(self) -> str:
        problems = [
            f"{stats.node_id[:8]}: {stats.last_error}"
            for stats in self.pool.stats.values()
            if stats.online is False and stats.last_error
        ]
        if not problems:
            return ""
        more = f"; {len(problems) - 2} more" if len(problems) > 2 else ""
        return f" ({'; '.join(problems[:2])}{more})"

    # ---- producer --------------------------------------------------------------------------

    def _encode(self, index: int) -> EncodedSegment:
        offset, length = self.layout.segment_range(index)
        return self.encoder.encode_segment_at(index, self.source.pread(offset, length))

    async def _produce(self) -> None:
        num_segments = self.layout.num_segments
        next_index = 0
        limiter = trio.CapacityLimiter(max(1, self.options.workers))

        async def worker() -> None:
            nonlocal next_index
            while next_index < num_segments:
                index = next_index
                next_index += 1
                segment = await trio.to_thread.run_sync(self._encode, index, limiter=limiter)
                if self.tracker.alive == 0:
                    error = self.tracker.outcome_error()
                    assert error is not None
                    raise error
                await self._distribute(segment)
                self.sent_bytes += self.layout.segment_length(index)
                if self.progress is not None:
                    self.progress(self.sent_bytes, self.source.size)

        async with trio.open_nursery() as workers:
            for _ in range(max(1, self.options.workers)):
                workers.start_soon(worker)
        self.finished = await trio.to_thread.run_sync(self.encoder.finish)
        for send in self.senders.values():
            send.close()
        self.senders.clear()
        self.finished_event.set()

    async def _distribute(self, segment: EncodedSegment) -> None:
        for shnum, send in list(self.senders.items()):
            try:
                send.send_nowait(segment)
                continue
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.senders.pop(shnum, None)
                continue
            try:
                with trio.move_on_after(self.options.lag_grace):
                    await send.send(segment)
                    continue
                if self.tracker.may_drop(shnum):
                    reason = f"lagging {self.options.lag_grace:.1f} s behind the others"
                    logger.info("dropping share %d: %s", shnum, reason)
                    self.tracker.on_dropped(shnum, reason)
                    self.senders.pop(shnum, None)
                    send.close()
                    self.scopes[shnum].cancel()
                    continue
                await send.send(segment)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.senders.pop(shnum, None)

    # ---- one share -------------------------------------------------------------------------

    async def _share_task(
        self,
        shnum: int,
        node: str,
        receive: trio.MemoryReceiveChannel[EncodedSegment] | None,
    ) -> None:
        scope = trio.CancelScope()
        self.scopes[shnum] = scope
        client = self.pool.client(node)
        started = time.monotonic()
        failure: BaseException | None = None
        try:
            with scope:
                try:
                    await self._upload_share(client_node=node, shnum=shnum, receive=receive)
                except (NodeError, ShareCorrupt) as error:
                    failure = error
        finally:
            if receive is not None:
                receive.close()
        if failure is not None:
            logger.warning("node %s failed with share %d: %s", node, shnum, failure)
            if isinstance(failure, NodeError):
                self.pool.record_failure(node, failure)
            replacement = self.tracker.on_failed(shnum, str(failure))
            await self._delete(shnum, node)
            if replacement is not None:
                logger.info("share %d goes to node %s instead", shnum, replacement.node_id)
                self.nursery.start_soon(self._share_task, shnum, replacement.node_id, None)
            return
        if scope.cancelled_caught:
            self.tracker.on_dropped(shnum, "cancelled")
            await self._delete(shnum, node)
            return
        self.pool.record_success(node, (time.monotonic() - started) / 10)
        del client
        for other in self.tracker.on_sealed(shnum):
            self.tracker.on_dropped(other, f"not needed: {self.tracker.target} shares are sealed")
            self.scopes[other].cancel()
            send = self.senders.pop(other, None)
            if send is not None:
                send.close()

    async def _upload_share(
        self,
        *,
        client_node: str,
        shnum: int,
        receive: trio.MemoryReceiveChannel[EncodedSegment] | None,
    ) -> None:
        client = self.pool.client(client_node)
        si = self.si
        if receive is None:
            await self.finished_event.wait()  # a replacement checks blocks against the trees
        whole = bytearray(self.layout.share_size) if self.small else None
        if whole is None:
            await client.create_share(si, shnum, self.layout.share_size, self.options.lease_seconds)
            self.created.add((shnum, client_node))
        if receive is not None:
            await self._stream(client_node, shnum, receive, whole)
        else:
            await self._reencode(client_node, shnum, whole)
        await self.finished_event.wait()
        assert self.finished is not None
        metadata = self.finished.share_metadata(shnum)
        if whole is not None:
            for offset, data in metadata:
                whole[offset : offset + len(data)] = data
            self.created.add((shnum, client_node))
            await self._put_whole(client_node, shnum, memoryview(whole))
            return
        for offset, data in metadata:
            await client.write(si, shnum, offset, data)
        await client.seal(si, shnum)

    async def _put_whole(self, node: str, shnum: int, share: memoryview) -> None:
        """One request per small share; nodes without that endpoint get create+write+seal."""
        client = self.pool.client(node)
        lease = self.options.lease_seconds
        try:
            await self.pool.small_puts.put(client, self.si, shnum, share, lease)
            return
        except NodeRefused as error:
            old_node = error.status == 405 or (error.status == 404 and "endpoint" in error.reason)
            if not old_node:
                raise
        await client.create_share(self.si, shnum, len(share), lease)
        await client.write(self.si, shnum, 0, share)
        await client.seal(self.si, shnum)

    async def _write_runs(
        self,
        node: str,
        shnum: int,
        blocks: list[tuple[int, Block]],
        whole: bytearray | None,
    ) -> None:
        """Write blocks (segment index, block) as few contiguous writes."""
        layout = self.layout
        if whole is not None:
            for index, block in blocks:
                offset, length = layout.block_range(index)
                whole[offset : offset + length] = block
            return
        blocks.sort(key=lambda item: item[0])
        client = self.pool.client(node)
        run: list[Block] = []
        run_start = -1
        next_index = -1
        for index, block in [*blocks, (-1, b"")]:
            if run and index != next_index:
                offset = layout.block_range(run_start)[0]
                data = run[0] if len(run) == 1 else b"".join(run)
                await client.write(self.si, shnum, offset, data)
                run = []
            if index < 0:
                break
            if not run:
                run_start = index
            run.append(block)
            next_index = index + 1

    async def _stream(
        self,
        node: str,
        shnum: int,
        receive: trio.MemoryReceiveChannel[EncodedSegment],
        whole: bytearray | None,
    ) -> None:
        limit = self.options.write_size
        if whole is not None:  # small share: collected here, sent in one request later
            async for segment in receive:
                await self._write_runs(node, shnum, [(segment.index, segment.blocks[shnum])], whole)
            return
        # Up to `write_depth` writes in flight per share, so the node's fsync of one write
        # overlaps the transfer of the next.
        slots = trio.Semaphore(max(1, self.options.write_depth))
        errors: list[NodeError] = []

        async def write(batch: list[tuple[int, Block]], cancel: trio.CancelScope) -> None:
            try:
                await self._write_runs(node, shnum, batch, None)
            except NodeError as error:
                errors.append(error)
                cancel.cancel()
            finally:
                slots.release()

        async with trio.open_nursery() as writes:
            while not errors:
                try:
                    first = await receive.receive()
                except trio.EndOfChannel:
                    break
                batch = [(first.index, first.blocks[shnum])]
                size = len(batch[0][1])
                while size < limit:
                    try:
                        segment = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append((segment.index, segment.blocks[shnum]))
                    size += len(batch[-1][1])
                await slots.acquire()
                writes.start_soon(write, batch, writes.cancel_scope)
        if errors:
            raise errors[0]

    async def _reencode(self, node: str, shnum: int, whole: bytearray | None) -> None:
        """Re-create share `shnum` from the source for a replacement node."""
        assert self.finished is not None
        verifier = ShareVerifier(self.finished.cap.verify_cap())
        (_, header), (_, metadata) = self.finished.share_metadata(shnum)
        verifier.load_share_metadata(shnum, header, metadata)
        layout = self.layout
        per_write = max(1, self.options.write_size // max(layout.block_size, 1))

        def encode(indexes: Sequence[int]) -> list[tuple[int, Block]]:
            out: list[tuple[int, Block]] = []
            for index in indexes:
                offset, length = layout.segment_range(index)
                block = self.encoder.encode_subset(
                    index, self.source.pread(offset, length), [shnum]
                )[shnum]
                try:
                    verifier.verify_block(shnum, index, block)
                except ShareCorrupt:
                    raise SourceChanged(
                        "the file changed while it was uploaded; upload it again"
                    ) from None
                out.append((index, block))
            return out

        for first in range(0, layout.num_segments, per_write):
            indexes = range(first, min(first + per_write, layout.num_segments))
            blocks = await trio.to_thread.run_sync(encode, indexes)
            await self._write_runs(node, shnum, blocks, whole)

    # ---- cleanup ---------------------------------------------------------------------------

    async def _delete(self, shnum: int, node: str) -> None:
        """Best effort: a partial share is never served anyway, and leases expire."""
        if (shnum, node) not in self.created:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(DELETE_TIMEOUT):
            try:
                await self.pool.client(node).delete(self.si, shnum)
            except NodeError as error:
                logger.info("could not delete share %d on node %s: %s", shnum, node, error)
                return
        self.created.discard((shnum, node))

    async def _delete_all(self, created: set[tuple[int, str]]) -> None:
        if not created:
            return
        async with trio.open_nursery() as nursery:
            for shnum, node in list(created):
                nursery.start_soon(self._delete, shnum, node)


async def upload_file(
    pool: NodePool,
    path: Path,
    options: UploadOptions | None = None,
    *,
    progress: Progress | None = None,
) -> UploadResult:
    """Upload a local file; returns its read cap once `happy` nodes hold sealed shares."""
    options = options or UploadOptions()
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as error:
        raise UploadSourceError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UploadSourceError(f"{path} is not a regular file")
        with single_error():
            return await _Upload(pool, _FileSource(fd), options, progress).run()
    finally:
        os.close(fd)


async def upload_bytes(
    pool: NodePool, data: bytes | bytearray | memoryview, options: UploadOptions | None = None
) -> UploadResult:
    """Upload a blob held in memory (small files, manifests, log entries)."""
    with single_error():
        return await _Upload(pool, _BytesSource(data), options or UploadOptions(), None).run()


class UploadSourceError(PermaCloudError):
    """The file to upload cannot be read."""
