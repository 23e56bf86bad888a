"""The set of storage nodes this client knows, with one pinned NodeClient each and what we
learnt about them (online, free space, latency), so uploads can weight placement by free space
and downloads can prefer the fastest nodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import trio

from desktop.client.batcher import SmallPutBatcher
from desktop.core.placement import Candidate, weight_for
from desktop.net.errors import NodeError, NodeUnavailable
from desktop.net.identity import DeviceKey
from desktop.net.node_client import NodeClient, Timeouts
from desktop.net.nodes_file import NodeAddress

logger = logging.getLogger(__name__)

INFO_TIMEOUT = 5.0
_EWMA = 0.3


@dataclass
class NodeStats:
    """What one node has shown us. `latency` is an EWMA of request seconds (lower is faster)."""

    node_id: str
    online: bool | None = None  # None: never asked
    free: int = 0
    latency: float = 1.0
    failures: int = 0
    last_error: str = ""
    last_seen: float = 0.0

    def record_success(self, seconds: float) -> None:
        self.online = True
        self.last_seen = time.monotonic()
        self.latency = (
            seconds
            if self.failures == 0 and self.latency == 1.0
            else ((1 - _EWMA) * self.latency + _EWMA * seconds)
        )

    def record_failure(self, reason: str) -> None:
        self.failures += 1
        self.last_error = reason
        self.latency = min(self.latency * 2 + 1.0, 60.0)


class NodePool:
    """Clients for the known nodes. Safe to share between concurrent uploads and downloads."""

    def __init__(
        self,
        client_key: DeviceKey,
        nodes: Iterable[NodeAddress],
        *,
        timeouts: Timeouts | None = None,
        max_connections: int = 8,
    ) -> None:
        self.client_key = client_key
        self.timeouts = timeouts or Timeouts(connect=5.0, request=60.0)
        self.max_connections = max_connections
        self._addresses: dict[str, NodeAddress] = {}
        self._clients: dict[str, NodeClient] = {}
        self.stats: dict[str, NodeStats] = {}
        self._retired: list[NodeClient] = []
        self.last_refresh = 0.0
        self.small_puts = SmallPutBatcher()
        # Reputation, pushed in by the daemon (desktop/daemon/reputation_store.py): a weight
        # multiplier per node (0: disqualified, no new shares; absent: 1) and the nodes vetted by
        # audits (when none is, placement is plain rendezvous). `observer(node_id, reachable,
        # latency_ms)` hears every contact attempt of `refresh` and every unreachable node.
        self.reputation_weight: dict[str, float] = {}
        self.vetted: set[str] = set()
        self.observer: Callable[[str, bool, float | None], None] | None = None
        self.update(nodes)

    def update(self, nodes: Iterable[NodeAddress]) -> None:
        """Replace the node list; clients of unchanged nodes (and their connections) are kept."""
        fresh = {n.node_id: n for n in nodes}
        for node_id in list(self._addresses):
            if fresh.get(node_id) != self._addresses[node_id]:
                client = self._clients.pop(node_id, None)
                if client is not None:
                    self._retired.append(client)
                del self._addresses[node_id]
                if node_id not in fresh:
                    self.stats.pop(node_id, None)
        for node_id, address in fresh.items():
            if node_id not in self._addresses:
                self._addresses[node_id] = address
                self.stats.setdefault(node_id, NodeStats(node_id))

    @property
    def node_ids(self) -> list[str]:
        return list(self._addresses)

    def __len__(self) -> int:
        return len(self._addresses)

    def client(self, node_id: str) -> NodeClient:
        client = self._clients.get(node_id)
        if client is None:
            address = self._addresses[node_id]
            client = NodeClient(
                node_id,
                address.address,
                self.client_key,
                max_connections=self.max_connections,
                timeouts=self.timeouts,
            )
            self._clients[node_id] = client
        return client

    async def refresh(self, info_timeout: float = INFO_TIMEOUT) -> None:
        """Ask every node for its info (free space) concurrently; marks who is online."""

        async def ask(node_id: str) -> None:
            stats = self.stats[node_id]
            started = time.monotonic()
            with trio.move_on_after(info_timeout) as scope:
                try:
                    info = await self.client(node_id).info()
                except NodeError as error:
                    stats.online = False
                    stats.record_failure(str(error))
                    self._observe(node_id, False, None)
                    logger.info("node %s is unavailable: %s", node_id, error)
                    return
            if scope.cancelled_caught:
                stats.online = False
                stats.record_failure("info timed out")
                self._observe(node_id, False, None)
                logger.info("node %s did not answer within %.1f s", node_id, info_timeout)
                return
            stats.free = info.free
            stats.record_success(time.monotonic() - started)
            self._observe(node_id, True, (time.monotonic() - started) * 1000)

        async with trio.open_nursery() as nursery:
            for node_id in self.node_ids:
                nursery.start_soon(ask, node_id)
        self.last_refresh = time.monotonic()

    async def ensure_fresh(self, max_age: float = 30.0) -> None:
        if time.monotonic() - self.last_refresh > max_age:
            await self.refresh()

    def online(self) -> list[str]:
        return [n for n, s in self.stats.items() if s.online]

    def candidates(self) -> list[Candidate]:
        """Online nodes weighted by free space times reputation; disqualified nodes left out."""
        found = []
        for node_id, stats in self.stats.items():
            reputation = self.reputation_weight.get(node_id, 1.0)
            if stats.online and stats.free > 0 and reputation > 0:
                weight = weight_for(stats.free, reputation)
                found.append(Candidate(node_id, weight, vetted=node_id in self.vetted))
        return found

    def _observe(self, node_id: str, reachable: bool, latency_ms: float | None) -> None:
        if self.observer is not None:
            self.observer(node_id, reachable, latency_ms)

    def latency(self) -> dict[str, float]:
        return {node_id: stats.latency for node_id, stats in self.stats.items()}

    def record_success(self, node_id: str, seconds: float) -> None:
        stats = self.stats.get(node_id)
        if stats is not None:
            stats.record_success(seconds)

    def record_failure(self, node_id: str, error: BaseException | str) -> None:
        """Slows the node down in the ranking; unreachable nodes count as offline until the
        next refresh, so new uploads skip them."""
        stats = self.stats.get(node_id)
        if stats is not None:
            stats.record_failure(str(error))
            if isinstance(error, NodeUnavailable):
                stats.online = False
                self._observe(node_id, False, None)

    async def aclose(self) -> None:
        clients = [*self._clients.values(), *self._retired]
        self._clients.clear()
        self._retired.clear()
        for client in clients:
            await client.aclose()

    async def __aenter__(self) -> NodePool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
