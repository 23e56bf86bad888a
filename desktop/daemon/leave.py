"""Graceful exit (`permacloud agent leave`): hand every share this device's node holds to
other nodes, then stop donating.

The node holds other accounts' shares too; it cannot read them and cannot sign as their
owners, so each share is *handed over* (`POST /v1/shares/<si>/<shnum>/handoff/<owner>`,
docs/protocol.md): the receiver creates it under the original owner's key with the remaining
lease, this node writes and seals it (signed with its device key), the receiver answers with
the BLAKE3 of its copy, and only a copy equal to the local bytes lets the local share go.

Order of work, each step safe to interrupt and rerun:

1. sharing is set to "never": no new shares arrive while the old ones leave;
2. per storage index, the nodes are surveyed once: a node already holding this share number
   (e.g. the owner repaired it) only needs its copy checked; one holding another share of the
   file is skipped (one share per node); one holding an unfinished copy of this share (an
   interrupted handoff) is tried first and resumes where it stopped;
3. receivers are tried in the upload's placement order (`core.repair_policy.handoff_targets`);
   a full node (507) or an unreachable one just moves to the next; when every node without a
   share of the file is full, one that has another share of it takes this one too (no
   durability gained, but the share number survives and the owner's repair can move it);
4. when the node is empty, a marker file keeps it from starting again and it stops listening.
   Expired and unfinished shares are dropped: nobody can use them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import trio

from desktop.agent.human_values import format_size
from desktop.agent.store import ShareState, ShareStore
from desktop.client.repair import survey
from desktop.core.errors import PermaCloudError
from desktop.core.repair_policy import handoff_targets
from desktop.net.errors import NodeError, NodeUnavailable
from desktop.net.node_client import NodeClient
from desktop.net.nodes_file import NodeAddress
from desktop.net.protocol import MAX_WRITE_BODY

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

logger = logging.getLogger(__name__)

LEFT_MARKER = "left"  # in the node's data dir: the daemon does not start the node again
CHUNK = min(4 * 1024 * 1024, MAX_WRITE_BODY)


class LeaveFailed(PermaCloudError):
    """Some shares could not be handed over; the node keeps serving them."""


def left_marker(data_dir: Path) -> Path:
    """Where the daemon looks before it starts the node (`data_dir` is the daemon's)."""
    return data_dir / "node" / LEFT_MARKER


@dataclass
class LeaveProgress:
    total_bytes: int = 0
    done_bytes: int = 0
    total_shares: int = 0
    moved: int = 0  # handed over to another node
    already: int = 0  # another node already held an identical copy
    dropped: int = 0  # expired or unfinished: nobody can use them
    failed: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "done": self.done_bytes,
            "total": self.total_bytes,
            "shares": self.total_shares,
            "moved": self.moved,
            "already": self.already,
            "dropped": self.dropped,
            "failed": len(self.failed),
        }


Report = Callable[[LeaveProgress], Awaitable[None]]


def _local_hash(state: ShareState) -> str:
    hasher = blake3.blake3()
    with open(state.data_path, "rb") as data:
        while chunk := data.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _read_local(state: ShareState, offset: int, length: int) -> bytes:
    fd = os.open(state.data_path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


async def _remote_hash(client: NodeClient, state: ShareState) -> str:
    """Read a remote copy back (only when its node cannot tell us its hash)."""
    hasher = blake3.blake3()
    for offset in range(0, state.size, CHUNK):
        hasher.update(
            await client.read(state.si, state.shnum, offset, min(CHUNK, state.size - offset))
        )
    return hasher.hexdigest()


class Leaver:
    """One `agent.leave` run of a daemon (reruns start a new one and continue)."""

    def __init__(self, daemon: Daemon, store: ShareStore, self_id: str, report: Report) -> None:
        self.daemon = daemon
        self.store = store
        self.self_id = self_id
        self.report = report
        self.progress = LeaveProgress()
        self._clients: dict[str, NodeClient] = {}
        self.addresses: dict[str, NodeAddress] = {}
        self._last_report = 0.0

    def _client(self, node_id: str) -> NodeClient:
        """Clients signing with this device's key: the receiver sees which node hands over."""
        client = self._clients.get(node_id)
        if client is None:
            address = self.addresses.get(node_id)
            if address is None:
                raise NodeUnavailable(f"node {node_id}: address unknown")
            client = NodeClient(node_id, address.address, self.daemon.keys.device_key)
            self._clients[node_id] = client
        return client

    async def _tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= 0.2:
            self._last_report = now
            await self.report(self.progress)

    async def _copy(self, node_id: str, state: ShareState, local: str) -> bool:
        """Hand one share to one node; True once its copy is sealed and equal to ours."""
        client = self._client(node_id)
        created = await client.create_handoff(
            state.si, state.shnum, state.owner, state.size, state.lease_expires
        )
        if not created.sealed:
            for start, end in created.missing():
                for offset in range(start, end, CHUNK):
                    length = min(CHUNK, end - offset)
                    data = await trio.to_thread.run_sync(_read_local, state, offset, length)
                    await client.write(state.si, state.shnum, offset, data)
                    self.progress.done_bytes += length
                    await self._tick()
        try:
            digest = await client.seal(state.si, state.shnum)
        except NodeError:
            digest = None  # the owner's own sealed copy: we may not touch it, only read it
        if digest is None:
            digest = await _remote_hash(client, state)
        if digest != local:
            logger.warning("node %s: copy of share %d differs", node_id[:8], state.shnum)
            return False
        return True

    async def _hand_over(
        self, state: ShareState, sealed: dict[str, set[int]], unsealed: dict[str, set[int]]
    ) -> None:
        local = await trio.to_thread.run_sync(_local_hash, state)
        before = self.progress.done_bytes
        # A sealed copy elsewhere (the owner repaired it, or our last run sealed it but stopped
        # before deleting ours) only needs checking; an unfinished one of ours is resumed.
        same = sorted(n for n, shnums in sealed.items() if state.shnum in shnums)
        resume = sorted(n for n, shnums in unsealed.items() if state.shnum in shnums)
        order = handoff_targets(
            state.si,
            self.daemon.pool.candidates(),
            exclude={*sealed, *unsealed, self.self_id},
            resume=[*same, *resume],
            crowded={*sealed, *unsealed} - {self.self_id},
        )
        for node_id in order:
            if node_id == self.self_id:
                continue
            self.progress.done_bytes = before
            try:
                if await self._copy(node_id, state, local):
                    await trio.to_thread.run_sync(self.store.discard, state.si, state.shnum)
                    if node_id in same:
                        self.progress.already += 1
                    else:
                        self.progress.moved += 1
                    self.progress.done_bytes = before + state.size
                    sealed.setdefault(node_id, set()).add(state.shnum)
                    return
            except NodeError as error:
                logger.info("handing share %d to %s: %s", state.shnum, node_id[:8], error)
        self.progress.done_bytes = before + state.size
        self.progress.failed.append(f"{state.si.hex()}/{state.shnum}")

    async def run(self) -> LeaveProgress:
        known = await self.daemon.db(self.daemon.known_node_addresses)
        self.addresses = {a.node_id: a for a in known}
        now = time.time()
        keep: list[ShareState] = []
        for state in self.store.all_shares():
            if state.sealed and state.lease_expires > now:
                keep.append(state)
            else:
                await trio.to_thread.run_sync(self.store.discard, state.si, state.shnum)
                self.progress.dropped += 1
        self.progress.total_shares = len(keep)
        self.progress.total_bytes = sum(s.size for s in keep)
        await self._tick(force=True)
        by_si: dict[bytes, list[ShareState]] = {}
        for state in keep:
            by_si.setdefault(state.si, []).append(state)
        try:
            for si, states in by_si.items():
                health = await survey(self.daemon.pool, si)
                sealed = {n: set(s) for n, s in health.holdings.items() if n != self.self_id}
                unsealed = {n: set(s) for n, s in health.unsealed.items() if n != self.self_id}
                for state in states:
                    await self._hand_over(state, sealed, unsealed)
                    await self._tick()
        finally:
            with trio.CancelScope(shield=True):
                for client in self._clients.values():
                    await client.aclose()
        await self._tick(force=True)
        return self.progress


async def leave(daemon: Daemon, report: Report) -> dict[str, Any]:
    """Empty this device's node onto other nodes, then stop it for good (see module doc)."""
    marker = left_marker(daemon.paths.data_dir)
    node = daemon.node
    if node is None or node.server.stopped.is_set():
        if marker.exists():
            return {**LeaveProgress().public(), "left": True}
        raise LeaveFailed("this device runs no storage node: there is nothing to hand over")
    await daemon.agent.set("sharing", "never")  # no new shares while the old ones leave
    await daemon.refresh_nodes()
    progress = await Leaver(daemon, node.server.store, node.node_id, report).run()
    if progress.failed:
        still = sum(s.size for s in node.server.store.all_shares())
        raise LeaveFailed(
            f"{len(progress.failed)} share(s) ({format_size(still)}) could not be handed over: "
            "no other reachable node has room for them; this node keeps serving them "
            "(sharing is off); run 'permacloud agent leave' again when another node has room"
        )
    await trio.to_thread.run_sync(lambda: marker.write_text(f"{time.time()}\n"))
    node.server.stop()
    daemon.activity.add("agent", f"left: {progress.moved} share(s) handed to other nodes")
    logger.info("left the network: %s", progress.public())
    return {**progress.public(), "left": True}


def rejoin(daemon: Daemon) -> bool:
    """Donating again after a leave: the node starts at the next daemon start."""
    marker = left_marker(daemon.paths.data_dir)
    if marker.exists():
        marker.unlink()
        return True
    return False


__all__ = ["LEFT_MARKER", "LeaveFailed", "LeaveProgress", "leave", "left_marker", "rejoin"]
