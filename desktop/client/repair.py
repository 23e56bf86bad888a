"""Checking, renewing and repairing one file on the nodes (the decisions are in core).

* Survey: every online node is asked which shares of the file it holds (`list_shares`, one
  cheap GET per node); the answer also carries each share's lease expiry.
* Verify (a sample): a whole share is read in bounded chunks and checked against the hash tree
  the cap commits to; a corrupt share does not count and its node gets no new share.
* Renew: leases that expire within half a lease are extended (any device of the account may:
  shares are owned by the account's storage key, see `desktop/daemon/health.py`).
* Repair: below the threshold, k verified shares are streamed group by group, only the missing
  share numbers are regenerated (`core.regenerate`, no file key needed) and written to nodes
  chosen by the placement rules (`core.repair_policy.choose_repair_targets`). Writes are
  idempotent (same owner, same bytes), so a resumed or concurrent repair converges instead
  of adding shares: two devices choose the same node for each share number.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import trio

from desktop.client.pool import NodePool
from desktop.core.caps import ReadCap, VerifyCap, parse_cap
from desktop.core.decoder import ShareVerifier
from desktop.core.errors import NotEnoughShares, PermaCloudError, ShareCorrupt
from desktop.core.layout import HEADER_SIZE, HeaderError, ShareLayout, parse_header
from desktop.core.placement import Candidate
from desktop.core.regenerate import ShareRegenerator
from desktop.core.repair_policy import RepairPolicy, best_holders, choose_repair_targets
from desktop.net.errors import NodeError
from desktop.net.protocol import MAX_WRITE_BODY

logger = logging.getLogger(__name__)

SURVEY_TIMEOUT = 10.0
READ_CHUNK = 4 * 1024 * 1024  # bytes per source share per fetch: memory is ~ (k + m) x this
WHOLE_SHARE_LIMIT = min(1024 * 1024, MAX_WRITE_BODY)  # smaller shares go in one sealed put


class RepairFailed(PermaCloudError):
    """The file could not be brought back to health (too few shares or nodes)."""


@dataclass
class FileHealth:
    """What the nodes said about one file's shares."""

    storage_index: bytes
    holdings: dict[str, dict[int, float]] = field(default_factory=dict)  # node -> shnum -> lease
    unsealed: dict[str, set[int]] = field(default_factory=dict)
    corrupt: set[tuple[str, int]] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)
    verified: int = 0

    def good(self) -> dict[str, set[int]]:
        return {
            node: {s for s in shares if (node, s) not in self.corrupt}
            for node, shares in self.holdings.items()
        }

    @property
    def held(self) -> dict[int, str]:
        """One node per share number, as many distinct nodes as possible."""
        return best_holders(self.good())

    @property
    def healthy(self) -> int:
        return len(self.held)

    def suspects(self) -> set[str]:
        """Nodes that hold a corrupt share of this file: they get none of its new shares."""
        return {node for node, _ in self.corrupt}


@dataclass(frozen=True)
class RepairResult:
    before: int
    after: int
    added: dict[int, str]


def _verify_cap(cap: ReadCap | VerifyCap | str) -> VerifyCap:
    parsed = parse_cap(cap) if isinstance(cap, str) else cap
    return parsed.verify_cap() if isinstance(parsed, ReadCap) else parsed


async def survey(pool: NodePool, storage_index: bytes) -> FileHealth:
    """Ask every online node which sealed shares of the file it holds (with their leases)."""
    health = FileHealth(storage_index)

    async def ask(node_id: str) -> None:
        started = time.monotonic()
        with trio.move_on_after(SURVEY_TIMEOUT):
            try:
                shares = await pool.client(node_id).list_shares(storage_index)
            except NodeError as error:
                pool.record_failure(node_id, error)
                health.unreachable.add(node_id)
                return
            pool.record_success(node_id, time.monotonic() - started)
            sealed = {s.shnum: float(s.lease_expires) for s in shares if s.sealed}
            if sealed:
                health.holdings[node_id] = sealed
            partial = {s.shnum for s in shares if not s.sealed}
            if partial:
                health.unsealed[node_id] = partial
            return
        health.unreachable.add(node_id)

    async with trio.open_nursery() as nursery:
        for node_id in pool.online():
            nursery.start_soon(ask, node_id)
    return health


async def _load_share_metadata(
    pool: NodePool, verifier: ShareVerifier, node_id: str, shnum: int
) -> bytes:
    """Header + metadata of one share, checked against the cap; returns the metadata bytes."""
    client = pool.client(node_id)
    si = verifier.storage_index
    header = await client.read(si, shnum, 0, HEADER_SIZE)
    try:
        layout, _ = parse_header(header)
    except HeaderError as error:
        raise ShareCorrupt(shnum, str(error)) from None
    metadata = await client.read(si, shnum, layout.metadata_offset, layout.metadata_size)
    verifier.load_share_metadata(shnum, header, metadata)
    return metadata


def _groups(layout: ShareLayout) -> list[range]:
    """Consecutive segments whose blocks fit in READ_CHUNK bytes per share."""
    per_group = max(1, READ_CHUNK // max(layout.block_size, 1))
    return [
        range(start, min(start + per_group, layout.num_segments))
        for start in range(0, layout.num_segments, per_group)
    ]


def _span(layout: ShareLayout, segments: range) -> tuple[int, int]:
    start, _ = layout.block_range(segments.start)
    last_start, last_len = layout.block_range(segments.stop - 1)
    return start, last_start + last_len - start


async def verify_share(pool: NodePool, cap: VerifyCap, node_id: str, shnum: int) -> None:
    """Read one whole share in bounded chunks and check every block (ShareCorrupt if not)."""
    verifier = ShareVerifier(cap)
    await _load_share_metadata(pool, verifier, node_id, shnum)
    layout = verifier.layout
    client = pool.client(node_id)
    for segments in _groups(layout):
        offset, length = _span(layout, segments)
        data = memoryview(await client.read(cap.storage_index, shnum, offset, length))
        position = 0
        for index in segments:
            size = layout.block_length(index)
            verifier.verify_block(shnum, index, data[position : position + size])
            position += size


async def verify_sample(
    pool: NodePool, cap: VerifyCap, health: FileHealth, count: int, rng: random.Random
) -> None:
    """Fully verify `count` random held shares; corrupt ones are recorded in `health`."""
    pairs = [(node, s) for node, shares in health.holdings.items() for s in shares]
    for node_id, shnum in rng.sample(pairs, min(count, len(pairs))):
        try:
            await verify_share(pool, cap, node_id, shnum)
            health.verified += 1
        except ShareCorrupt as error:
            logger.warning("node %s: %s", node_id[:8], error)
            health.corrupt.add((node_id, shnum))
        except NodeError as error:
            logger.info("verifying share %d on %s: %s", shnum, node_id[:8], error)


async def renew_leases(
    pool: NodePool, health: FileHealth, lease_seconds: int, *, now: float | None = None
) -> int:
    """Extend every lease that ends within half a lease; returns how many were renewed."""
    now = time.time() if now is None else now
    due = [
        (node, shnum)
        for node, shares in health.holdings.items()
        for shnum, expires in shares.items()
        if expires < now + lease_seconds / 2
    ]
    renewed = 0
    for node_id, shnum in due:
        try:
            expires = await pool.client(node_id).renew_lease(
                health.storage_index, shnum, lease_seconds
            )
        except NodeError as error:
            logger.warning("renewing share %d on %s: %s", shnum, node_id[:8], error)
            continue
        health.holdings[node_id][shnum] = expires
        renewed += 1
    return renewed


def repair_candidates(pool: NodePool) -> list[Candidate]:
    """Online nodes with room, unweighted: every device of the account must rank them alike
    (free-space weights differ between two devices' views and would split their choice)."""
    return [Candidate(c.node_id) for c in pool.candidates()]


class _Sources:
    """k verified source shares; a failing one is swapped for another holder."""

    def __init__(self, pool: NodePool, verifier: ShareVerifier, health: FileHealth) -> None:
        self.pool = pool
        self.verifier = verifier
        self.options = [(node, s) for s, node in health.held.items()]
        self.options += [
            (node, s)
            for node, shares in health.good().items()
            for s in sorted(shares)
            if (node, s) not in self.options
        ]
        self.active: dict[int, str] = {}
        self.metadata: bytes | None = None

    async def fill(self, k: int) -> None:
        while len(self.active) < k:
            if not self.options:
                raise RepairFailed(
                    f"not enough good shares to repair: need {k}, have {len(self.active)}"
                )
            node_id, shnum = self.options.pop(0)
            if shnum in self.active:
                continue
            try:
                meta = await _load_share_metadata(self.pool, self.verifier, node_id, shnum)
            except (NodeError, ShareCorrupt) as error:
                logger.info("repair source %d on %s unusable: %s", shnum, node_id[:8], error)
                continue
            self.metadata = self.metadata or meta
            self.active[shnum] = node_id

    async def fetch(self, segments: range, k: int) -> dict[int, memoryview]:
        """The k source shares' bytes covering `segments`, refilling after failures."""
        layout = self.verifier.layout
        offset, length = _span(layout, segments)
        while True:
            await self.fill(k)
            out: dict[int, memoryview] = {}
            failed: list[int] = []

            async def one(
                shnum: int, node_id: str, out: dict[int, memoryview], failed: list[int]
            ) -> None:
                si = self.verifier.storage_index
                try:
                    data = await self.pool.client(node_id).read(si, shnum, offset, length)
                    position = 0
                    for index in segments:
                        size = layout.block_length(index)
                        self.verifier.verify_block(shnum, index, data[position : position + size])
                        position += size
                    out[shnum] = memoryview(data)
                except (NodeError, ShareCorrupt) as error:
                    logger.info("repair source %d on %s failed: %s", shnum, node_id[:8], error)
                    failed.append(shnum)

            async with trio.open_nursery() as nursery:
                for shnum, node_id in list(self.active.items()):
                    nursery.start_soon(one, shnum, node_id, out, failed)
            if not failed:
                return out
            for shnum in failed:
                del self.active[shnum]


async def repair_file(
    pool: NodePool,
    cap: ReadCap | VerifyCap | str,
    policy: RepairPolicy,
    *,
    lease_seconds: int,
    health: FileHealth | None = None,
    exclude: Iterable[str] = (),
    force: bool = False,
    asleep: Mapping[int, str] | None = None,
) -> RepairResult:
    """Bring the file back to `policy.n` distinct nodes (only if below the threshold, unless
    `force`). Safe to rerun after a crash and alongside another device doing the same.

    `asleep`: share number -> node for shares on nodes offline now but seen within the grace
    period; they count as healthy, and their numbers are regenerated last."""
    vcap = _verify_cap(cap)
    si = vcap.storage_index
    if health is None:
        health = await survey(pool, si)
    sleeping = {s: n for s, n in (asleep or {}).items() if s not in health.held}
    sleepers = set(sleeping.values()) - set(health.held.values())
    before = health.healthy
    if policy.is_lost(before):
        raise RepairFailed(f"only {before} of the {policy.k} shares needed are left: file lost")
    if not force and not policy.needs_repair(before + len(sleepers)):
        return RepairResult(before, before, {})
    wanted = policy.shares_to_add(health.held, unseen=sleeping)
    if not wanted:
        return RepairResult(before, before, {})
    targets = choose_repair_targets(
        si,
        repair_candidates(pool),
        wanted,
        holders=set(health.held.values()) | sleepers,
        exclude={*exclude, *health.suspects()},
    )
    if not targets:
        raise RepairFailed("no node is free to take a repaired share")
    verifier = ShareVerifier(vcap)
    sources = _Sources(pool, verifier, health)
    k = policy.k
    await sources.fill(k)
    assert sources.metadata is not None
    layout = verifier.layout
    regen = ShareRegenerator(verifier, sources.metadata, targets)
    added = await _write_shares(pool, si, layout, regen, sources, targets, k, lease_seconds)
    after = len(best_holders({**health.good(), **{n: {s} for s, n in added.items()}}))
    logger.info("repaired %s: %d -> %d nodes", vcap.to_string()[:16], before, after)
    return RepairResult(before, after, added)


async def _write_shares(
    pool: NodePool,
    si: bytes,
    layout: ShareLayout,
    regen: ShareRegenerator,
    sources: _Sources,
    targets: dict[int, str],
    k: int,
    lease_seconds: int,
) -> dict[int, str]:
    """Stream regenerated blocks to their nodes; returns the shares that were sealed."""
    whole = layout.share_size <= WHOLE_SHARE_LIMIT
    live = dict(targets)
    buffers = {s: bytearray(layout.share_size) for s in live} if whole else {}
    if not whole:
        for shnum, node_id in list(live.items()):
            try:
                created = await pool.client(node_id).create_share(
                    si, shnum, layout.share_size, lease_seconds
                )
                if created.sealed:
                    regen.shnums.remove(shnum)  # already there (another device repaired)
            except NodeError as error:
                logger.warning("repair: node %s refused share %d: %s", node_id[:8], shnum, error)
                del live[shnum]
    for segments in _groups(layout):
        blocks = await sources.fetch(segments, k)
        offset, length = _span(layout, segments)
        out = {s: bytearray(length) for s in live}
        position = 0
        for index in segments:
            size = layout.block_length(index)
            view = {s: data[position : position + size] for s, data in blocks.items()}
            for shnum, block in (
                await trio.to_thread.run_sync(regen.regenerate, index, view)
            ).items():
                if shnum in out:
                    out[shnum][position : position + size] = block
            position += size
        for shnum in list(live):
            if whole:
                buffers[shnum][offset : offset + length] = out[shnum]
            elif shnum in regen.shnums:
                try:
                    await pool.client(live[shnum]).write(si, shnum, offset, memoryview(out[shnum]))
                except NodeError as error:
                    logger.warning("repair write to %s failed: %s", live[shnum][:8], error)
                    del live[shnum]
    done: dict[int, str] = {}
    for shnum, node_id in live.items():
        if not whole and shnum not in regen.shnums:
            done[shnum] = node_id  # found sealed: another device finished it
            continue
        header, metadata = regen.header(shnum), regen.metadata(shnum)
        client = pool.client(node_id)
        try:
            if whole:
                share = buffers[shnum]
                share[: len(header)] = header
                share[layout.metadata_offset :] = metadata
                await client.put_sealed(si, shnum, memoryview(share), lease_seconds)
            else:
                await client.write(si, shnum, 0, header)
                await client.write(si, shnum, layout.metadata_offset, metadata)
                await client.seal(si, shnum)
        except NodeError as error:
            logger.warning("repair: share %d on %s failed: %s", shnum, node_id[:8], error)
            continue
        done[shnum] = node_id
    return done


__all__ = [
    "FileHealth",
    "NotEnoughShares",
    "RepairFailed",
    "RepairResult",
    "renew_leases",
    "repair_file",
    "survey",
    "verify_sample",
    "verify_share",
]
