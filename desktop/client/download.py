"""Reading a file back from the nodes that hold its shares.

* Locate: a reader does not know where shares are, so it asks every known node `list_shares`
  concurrently (at most `locate_parallel` at once, in rendezvous order) and starts as soon as
  k + 1 shares are known (k primaries + 1 spare ends the search at once; otherwise a short
  grace lets stragglers answer). Unasked nodes are asked later if the known shares run out.
* Plan: `download_plan.DownloadPlanner` picks k shares on distinct nodes, primaries first (their
  decode is a copy), then the fastest nodes; the next best share is the spare for a switch.
* Fetch: consecutive blocks of a share are contiguous, so one request fetches a whole group of
  segments (up to `fetch_size` bytes per share), the k requests of a group run concurrently and
  the next group is fetched while the current one is decoded (two threads; zfec, AES-GCM and
  BLAKE3 drop the GIL). Memory: about 2 groups x k x fetch_size.
* Every block is verified by the core before use. A node that errors or takes longer than
  `timeout` is dropped; a share that fails verification is dropped on that node; both are
  logged by node ID and the group is completed from another share.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import trio

from desktop.client.download_plan import DownloadPlanner
from desktop.client.errors import single_error
from desktop.client.pool import NodePool
from desktop.core.caps import ReadCap, VerifyCap, parse_cap, storage_index_to_str
from desktop.core.decoder import Decoder
from desktop.core.errors import CapError, NotEnoughShares, PermaCloudError, ShareCorrupt
from desktop.core.layout import HEADER_SIZE, HeaderError, parse_header
from desktop.core.placement import Candidate, rendezvous_order
from desktop.net.errors import NodeError

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class DownloadOptions:
    timeout: float = 20.0  # per request: a node slower than this is treated as failed
    locate_timeout: float = 5.0
    locate_grace: float = 0.05
    locate_parallel: int = 16
    locate_hedge: float = 0.5  # ask one more node when none answered for this long
    fetch_size: int = 8 * 1024 * 1024
    whole_share_limit: int = 1024 * 1024  # shares up to this size are read in one request
    workers: int = 2


class DownloadError(PermaCloudError):
    """The output file could not be written."""


class _NodeFailed(Exception):
    def __init__(self, node_id: str, reason: str) -> None:
        super().__init__(reason)
        self.node_id = node_id
        self.reason = reason


async def locate_shares(
    pool: NodePool,
    storage_index: bytes,
    *,
    want: int | None,
    k: int = 0,
    options: DownloadOptions | None = None,
    skip: frozenset[str] = frozenset(),
) -> tuple[dict[str, dict[int, int]], set[str], dict[str, str]]:
    """Ask nodes which sealed shares they hold: ({node: {shnum: size}}, nodes that answered,
    {node: why it failed}).

    With `want`, returns once that many distinct shares are known (after a short grace, or at
    once when the k primaries are among them); with None, waits for every node (or timeout).
    """
    options = options or DownloadOptions()
    # The uploader placed shares by rendezvous order weighted by free space; with the same
    # weights the first nodes asked are the likely holders.
    weights = {c.node_id: c.weight for c in pool.candidates()}
    candidates = [Candidate(n, weights.get(n, 1.0)) for n in pool.node_ids]
    order = [
        c.node_id for c in rendezvous_order(storage_index, candidates) if c.node_id not in skip
    ]
    found: dict[str, dict[int, int]] = {}
    answered: set[str] = set()
    failed: dict[str, str] = {}
    Answer = tuple[str, dict[int, int] | str]
    send, receive = trio.open_memory_channel[Answer](math.inf)

    async def ask(node_id: str) -> None:
        started = time.monotonic()
        result: dict[int, int] | str = f"no answer within {options.timeout:.1f} s"
        with trio.move_on_after(options.timeout):
            try:
                shares = await pool.client(node_id).list_shares(storage_index)
                result = {s.shnum: s.size for s in shares if s.sealed}
                pool.record_success(node_id, time.monotonic() - started)
            except NodeError as error:
                logger.info("node %s cannot list shares: %s", node_id, error)
                pool.record_failure(node_id, error)
                result = str(error)
        with trio.CancelScope(shield=True):
            await send.send((node_id, result))

    # With `want`, only want + 1 nodes are asked at first; every empty or failed answer, and
    # every `locate_hedge` seconds without an answer, asks one more. Without, all at once.
    pending = list(order)
    in_flight = 0

    def ask_more(nursery: trio.Nursery, count: int) -> None:
        nonlocal in_flight
        for _ in range(count):
            if not pending:
                return
            nursery.start_soon(ask, pending.pop(0))
            in_flight += 1

    async with trio.open_nursery() as nursery:
        first = len(pending) if want is None else want + 1
        ask_more(nursery, min(first, options.locate_parallel))
        with trio.move_on_after(options.locate_timeout) as scope:
            while in_flight:
                with trio.move_on_after(options.locate_hedge) as wait:
                    node_id, shares = await receive.receive()
                if wait.cancelled_caught:
                    ask_more(nursery, 1)
                    continue
                in_flight -= 1
                if isinstance(shares, str):
                    failed[node_id] = shares
                    ask_more(nursery, 1)
                    continue
                answered.add(node_id)
                if shares:
                    found[node_id] = shares
                else:
                    ask_more(nursery, 1)
                if want is None:
                    ask_more(nursery, 1)
                    continue
                known = {s for held in found.values() for s in held}
                if len(known) >= want:
                    if k and set(range(k)) <= known:
                        break
                    scope.deadline = min(scope.deadline, trio.current_time() + options.locate_grace)
        nursery.cancel_scope.cancel()
    return found, answered, failed


class FileReader:
    """An opened file: located shares and verified metadata, ready for any number of reads
    (`read`, `iter_range`). Keep one per open file (the FUSE mount does) to skip re-locating."""

    def __init__(
        self, pool: NodePool, cap: ReadCap, options: DownloadOptions | None = None
    ) -> None:
        self.pool = pool
        self.cap = cap
        self.si = cap.storage_index
        self.options = options or DownloadOptions()
        self.decoder = Decoder(cap)
        self.planner = DownloadPlanner(1)
        self.sizes: dict[tuple[int, str], int] = {}
        self.asked: set[str] = set()
        self.current: dict[int, str] = {}
        self._whole: dict[tuple[int, str], bytes] = {}
        self._loaded: dict[int, str] = {}
        self._opened = False

    @property
    def size(self) -> int:
        return self.decoder.plaintext_size

    @property
    def label(self) -> str:
        return storage_index_to_str(self.si)[:10]

    async def open(self) -> FileReader:
        if self._opened:
            return self
        with single_error():
            await self._locate(want=4)
            # The first metadata tells k; until then any share will do.
            while not self.decoder.loaded_shares:
                option = self.planner.replacement({})
                if option is None:
                    if not await self._locate_more():
                        raise self._not_found()
                    continue
                await self._try_load(*option)
            self.planner.k = self.decoder.params.k
            self.current = await self._choose()
            self._opened = True
        return self

    def _not_found(self) -> NotEnoughShares:
        if not self.planner.bad_nodes and not self.planner.bad_shares:
            return NotEnoughShares(
                f"file {self.label} not found: none of the {len(self.pool)} known nodes holds a"
                " share of it"
            )
        return self.planner.not_enough(k_known=bool(self.decoder.loaded_shares))

    async def _locate(self, want: int | None) -> None:
        found, answered, failed = await locate_shares(
            self.pool,
            self.si,
            want=want,
            k=self.planner.k if self._opened else 0,
            options=self.options,
            skip=frozenset(self.asked),
        )
        self.asked |= answered | set(failed)
        for node_id, reason in failed.items():
            self.planner.node_failed(node_id, reason)
        for node_id, shares in found.items():
            for shnum, size in shares.items():
                self.sizes[(shnum, node_id)] = size
                self.planner.add_location(shnum, node_id)
        for node_id, seconds in self.pool.latency().items():
            self.planner.set_latency(node_id, seconds)

    async def _locate_more(self) -> bool:
        """Ask the nodes not asked yet; True if any share became usable."""
        if self.asked >= set(self.pool.node_ids):
            return False
        before = len(self.planner.usable())
        await self._locate(want=None)
        return len(self.planner.usable()) > before

    # ---- requests --------------------------------------------------------------------------

    async def _read(self, node_id: str, shnum: int, offset: int, length: int) -> bytes:
        started = time.monotonic()
        try:
            with trio.fail_after(self.options.timeout):
                data = await self.pool.client(node_id).read(self.si, shnum, offset, length)
        except trio.TooSlowError:
            reason = f"no answer within {self.options.timeout:.1f} s"
            self.pool.record_failure(node_id, reason)
            raise _NodeFailed(node_id, reason) from None
        except NodeError as error:
            self.pool.record_failure(node_id, error)
            raise _NodeFailed(node_id, str(error)) from None
        self.pool.record_success(node_id, time.monotonic() - started)
        return data

    def _fail_node(self, node_id: str, shnum: int, reason: str) -> None:
        logger.warning(
            "file %s: node %s failed while reading share %d: %s; switching to another node",
            self.label,
            node_id,
            shnum,
            reason,
        )
        self.planner.node_failed(node_id, reason)

    def _fail_share(self, node_id: str, shnum: int, reason: str) -> None:
        logger.warning(
            "file %s: node %s served a bad share %d: %s; switching to another share",
            self.label,
            node_id,
            shnum,
            reason,
        )
        self.planner.share_failed(shnum, node_id, reason)

    async def _try_load(self, shnum: int, node_id: str) -> bool:
        """Fetch and verify share metadata; False (and the culprit recorded) on failure."""
        if self._loaded.get(shnum) == node_id:
            return True
        size = self.sizes.get((shnum, node_id), 0)
        try:
            if 0 < size <= self.options.whole_share_limit:
                whole = await self._read(node_id, shnum, 0, size)
                self._whole[(shnum, node_id)] = whole
                header = whole[:HEADER_SIZE]
            else:
                header = await self._read(node_id, shnum, 0, HEADER_SIZE)
            try:
                layout, _ = parse_header(header)
            except HeaderError as error:
                raise ShareCorrupt(shnum, str(error)) from None
            if size and size != layout.share_size:
                raise ShareCorrupt(
                    shnum, f"node lists it as {size} bytes, its header says {layout.share_size}"
                )
            whole_data = self._whole.get((shnum, node_id))
            if whole_data is not None:
                start = layout.metadata_offset
                metadata: Buffer = memoryview(whole_data)[start : start + layout.metadata_size]
            else:
                metadata = await self._read(
                    node_id, shnum, layout.metadata_offset, layout.metadata_size
                )
            self.decoder.load_share_metadata(shnum, header, metadata)
        except _NodeFailed as failed:
            self._fail_node(node_id, shnum, failed.reason)
            return False
        except ShareCorrupt as error:
            self._whole.pop((shnum, node_id), None)
            self._fail_share(node_id, shnum, error.reason)
            return False
        self._loaded[shnum] = node_id
        return True

    async def _choose(self) -> dict[int, str]:
        """k shares with loaded metadata, loading (and falling back) as needed."""
        while True:
            try:
                chosen = self.planner.choose()
            except NotEnoughShares:
                if await self._locate_more():
                    continue
                raise self._not_found() from None
            results: dict[int, bool] = {}
            async with trio.open_nursery() as nursery:
                for shnum, node_id in chosen.items():
                    nursery.start_soon(self._load_into, results, shnum, node_id)
            if all(results.values()):
                return chosen

    async def _load_into(self, results: dict[int, bool], shnum: int, node_id: str) -> None:
        results[shnum] = await self._try_load(shnum, node_id)

    async def _fetch(self, shnum: int, node_id: str, segments: range) -> Buffer:
        layout = self.decoder.layout
        start = layout.block_range(segments.start)[0]
        last_offset, last_length = layout.block_range(segments.stop - 1)
        end = last_offset + last_length
        whole = self._whole.get((shnum, node_id))
        if whole is not None:
            return memoryview(whole)[start:end]
        return await self._read(node_id, shnum, start, end - start)

    async def _fetch_group(self, segments: range) -> dict[int, tuple[str, Buffer]]:
        """k shares' blocks for these segments, each from one request, with fallbacks."""
        got: dict[int, tuple[str, Buffer]] = {}

        async def one(shnum: int, node_id: str) -> None:
            try:
                got[shnum] = (node_id, await self._fetch(shnum, node_id, segments))
            except _NodeFailed as failed:
                self._fail_node(node_id, shnum, failed.reason)

        async with trio.open_nursery() as nursery:
            for shnum, node_id in self.current.items():
                nursery.start_soon(one, shnum, node_id)
        return await self._complete(segments, got)

    def _usable(self, shnum: int, node_id: str) -> bool:
        return (
            node_id not in self.planner.bad_nodes
            and (shnum, node_id) not in self.planner.bad_shares
        )

    async def _complete(
        self, segments: range, got: dict[int, tuple[str, Buffer]]
    ) -> dict[int, tuple[str, Buffer]]:
        k = self.planner.k
        while True:
            good = {s: v for s, v in got.items() if self._usable(s, v[0])}
            if len(good) >= k:
                return good
            current = {s: v[0] for s, v in good.items()}
            option = self.planner.replacement(current)
            if option is None:
                if await self._locate_more():
                    continue
                raise self._not_found()
            shnum, node_id = option
            if not await self._try_load(shnum, node_id):
                continue
            try:
                got[shnum] = (node_id, await self._fetch(shnum, node_id, segments))
            except _NodeFailed as failed:
                self._fail_node(node_id, shnum, failed.reason)
                continue
            self.current = {**current, shnum: node_id}

    async def _decode_group(
        self, segments: range, fetched: dict[int, tuple[str, Buffer]]
    ) -> list[bytes]:
        layout = self.decoder.layout
        base = layout.block_range(segments.start)[0]
        limiter = trio.CapacityLimiter(max(1, self.options.workers))
        while True:
            k = self.planner.k
            use = dict(sorted(fetched.items())[:k])
            results: dict[int, bytes] = {}
            errors: list[ShareCorrupt] = []
            async with trio.open_nursery() as nursery:
                for index in segments:
                    nursery.start_soon(self._decode_one, index, use, base, limiter, results, errors)
            if not errors:
                return [results[i] for i in segments]
            for error in errors:
                node_id = use[error.shnum][0]
                if self._usable(error.shnum, node_id):
                    self._fail_share(node_id, error.shnum, error.reason)
            fetched = await self._complete(
                segments, {s: v for s, v in fetched.items() if self._usable(s, v[0])}
            )
            self.current = {s: v[0] for s, v in sorted(fetched.items())[:k]}

    async def _decode_one(
        self,
        index: int,
        use: dict[int, tuple[str, Buffer]],
        base: int,
        limiter: trio.CapacityLimiter,
        results: dict[int, bytes],
        errors: list[ShareCorrupt],
    ) -> None:
        offset, length = self.decoder.layout.block_range(index)
        blocks = {
            s: memoryview(data)[offset - base : offset - base + length]
            for s, (_, data) in use.items()
        }
        try:
            results[index] = await trio.to_thread.run_sync(
                self.decoder.decode_segment, index, blocks, limiter=limiter
            )
        except ShareCorrupt as error:
            errors.append(error)

    async def _decode_into(
        self, out: list[bytes], group: range, fetched: dict[int, tuple[str, Buffer]]
    ) -> None:
        out.extend(await self._decode_group(group, fetched))

    async def _fetch_into(self, out: dict[int, tuple[str, Buffer]], group: range) -> None:
        out.update(await self._fetch_group(group))

    def _groups(self, segments: range) -> list[range]:
        layout = self.decoder.layout
        per_group = max(1, self.options.fetch_size // max(layout.block_size, 1))
        return [
            range(start, min(start + per_group, segments.stop))
            for start in range(segments.start, segments.stop, per_group)
        ]

    async def iter_range(
        self, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[Buffer, None]:
        """Plaintext of [offset, offset+length) in order, as chunks (clipped to the file).

        Use with `contextlib.aclosing` when you may stop early."""
        await self.open()
        size = self.size
        offset = min(max(offset, 0), size)
        end = size if length is None else min(size, offset + max(length, 0))
        segments = self.decoder.segments_for_range(offset, end - offset)
        groups = self._groups(segments)
        if not groups:
            return
        seg_size = self.decoder.params.segment_size
        with single_error():
            fetched = await self._fetch_group(groups[0])
        for position, group in enumerate(groups):
            decoded: list[bytes] = []
            following: dict[int, tuple[str, Buffer]] = {}
            with single_error():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._decode_into, decoded, group, fetched)
                    if position + 1 < len(groups):
                        nursery.start_soon(self._fetch_into, following, groups[position + 1])
            fetched = following
            for index, plain in zip(group, decoded, strict=True):
                seg_start = index * seg_size
                lo = max(offset - seg_start, 0)
                hi = min(end - seg_start, len(plain))
                yield plain if lo == 0 and hi == len(plain) else memoryview(plain)[lo:hi]

    async def read(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) (shorter at the end of the file): random access that
        fetches only the segments covering the range."""
        parts: list[Buffer] = []
        async with aclosing(self.iter_range(offset, length)) as chunks:
            async for chunk in chunks:
                parts.append(chunk)
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return b"".join(parts)


def _read_cap(cap: ReadCap | str) -> ReadCap:
    if isinstance(cap, ReadCap):
        return cap
    parsed = parse_cap(cap)
    if not isinstance(parsed, ReadCap):
        raise CapError("a read cap is needed to download, got a verify cap")
    return parsed


async def open_file(
    pool: NodePool, cap: ReadCap | str, options: DownloadOptions | None = None
) -> FileReader:
    """Locate shares and load metadata once, for many reads of one file."""
    return await FileReader(pool, _read_cap(cap), options).open()


async def iter_file(
    pool: NodePool,
    cap: ReadCap | str,
    *,
    offset: int = 0,
    length: int | None = None,
    options: DownloadOptions | None = None,
) -> AsyncGenerator[Buffer, None]:
    """Stream a file (or a byte range of it) as plaintext chunks, bounded memory."""
    reader = await open_file(pool, cap, options)
    async with aclosing(reader.iter_range(offset, length)) as chunks:
        async for chunk in chunks:
            yield chunk


async def read_range(
    pool: NodePool,
    cap: ReadCap | str,
    offset: int,
    length: int,
    options: DownloadOptions | None = None,
) -> bytes:
    reader = await open_file(pool, cap, options)
    return await reader.read(offset, length)


async def download_bytes(
    pool: NodePool, cap: ReadCap | str, options: DownloadOptions | None = None
) -> bytes:
    reader = await open_file(pool, cap, options)
    return await reader.read(0, reader.size)


async def download_to_file(
    pool: NodePool,
    cap: ReadCap | str,
    out_path: Path,
    *,
    progress: Progress | None = None,
    options: DownloadOptions | None = None,
) -> int:
    """Write the file to `out_path` atomically (temp file + fsync + rename); returns its size.
    On any failure `out_path` is left untouched."""
    reader = await open_file(pool, cap, options)
    out_path = Path(out_path)
    directory = out_path.parent if str(out_path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".part", dir=directory)
    except OSError as error:
        raise DownloadError(f"cannot write to {directory}: {error.strerror or error}") from None
    done = 0
    renamed = False
    try:
        async with aclosing(reader.iter_range()) as chunks:
            async for chunk in chunks:
                await trio.to_thread.run_sync(_write_all, fd, chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, reader.size)
        await trio.to_thread.run_sync(os.fsync, fd)
        os.close(fd)
        fd = -1
        os.replace(tmp_name, out_path)
        renamed = True
    except OSError as error:
        raise DownloadError(f"cannot write {out_path}: {error.strerror or error}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if not renamed:
            os.unlink(tmp_name)
    return done


def _write_all(fd: int, data: Buffer) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def check_file(
    pool: NodePool, cap: ReadCap | VerifyCap | str, options: DownloadOptions | None = None
) -> dict[int, str]:
    """Which node holds which sealed share (asks every node; reads no share data).

    When two nodes hold the same share number, the first in rendezvous order is reported."""
    parsed = parse_cap(cap) if isinstance(cap, str) else cap
    si = parsed.storage_index
    with single_error():
        found, _, _ = await locate_shares(pool, si, want=None, options=options)
    order = [c.node_id for c in rendezvous_order(si, [Candidate(n) for n in found])]
    holders: dict[int, str] = {}
    for node_id in order:
        for shnum in sorted(found[node_id]):
            holders.setdefault(shnum, node_id)
    return dict(sorted(holders.items()))


def describe_holders(holders: Mapping[int, str]) -> str:
    return ", ".join(f"{s}@{n[:8]}" for s, n in sorted(holders.items()))
