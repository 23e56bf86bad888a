"""Coalescing small sealed puts to one node into batch requests.

Many small files uploaded at once each send one tiny share to each of ~10 nodes; per-request
costs (TLS record, syscalls, signature, HTTP parsing on both sides) then dominate. Here the
first put to a node becomes the sender: it sends what is queued for that node as one batch,
and whatever queued up meanwhile goes in the next batch (like Nagle, with no timer). A lone
put therefore waits for nothing. Nodes without the batch endpoint get single puts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from desktop.net.errors import NodeError, NodeRefused, NodeUnavailable
from desktop.net.node_client import NodeClient
from desktop.net.protocol import MAX_BATCH_ITEMS, MAX_WRITE_BODY

logger = logging.getLogger(__name__)

_ITEM_OVERHEAD = 22
_BATCH_BYTES = 4 * 1024 * 1024


@dataclass
class _Put:
    si: bytes
    shnum: int
    data: bytes | memoryview
    lease: int
    done: bool = False
    error: NodeError | None = None


@dataclass
class _NodeQueue:
    pending: list[_Put] = field(default_factory=list)
    busy: bool = False
    changed: trio.Event = field(default_factory=trio.Event)
    batch_supported: bool = True


class SmallPutBatcher:
    """Shared by all uploads of one pool; safe for any number of concurrent puts."""

    def __init__(self) -> None:
        self._queues: dict[str, _NodeQueue] = {}

    async def put(
        self, client: NodeClient, si: bytes, shnum: int, data: bytes | memoryview, lease: int
    ) -> None:
        """Store one whole sealed share on `client`'s node; raises its NodeError if refused."""
        if len(data) + _ITEM_OVERHEAD > _BATCH_BYTES:
            await client.put_sealed(si, shnum, data, lease)
            return
        queue = self._queues.setdefault(client.node_id, _NodeQueue())
        item = _Put(si, shnum, data, lease)
        queue.pending.append(item)
        try:
            while not item.done:
                if not queue.busy:
                    await self._send(client, queue, item)
                else:
                    await queue.changed.wait()
        finally:
            if not item.done and item in queue.pending:
                queue.pending.remove(item)  # cancelled before it was sent
        if item.error is not None:
            raise item.error

    async def _send(self, client: NodeClient, queue: _NodeQueue, mine: _Put) -> None:
        """Send batches until our own share is stored, then hand over to a waiting put."""
        queue.busy = True
        try:
            while queue.pending and not mine.done:
                batch = self._take(queue)
                try:
                    await self._send_batch(client, queue, batch)
                except NodeError as error:
                    for item in batch:
                        item.error = error
                except BaseException:
                    for item in batch:
                        item.error = NodeUnavailable(f"node {client.node_id}: batch cancelled")
                    raise
                finally:
                    for item in batch:
                        item.done = True
                    self._wake(queue)
        finally:
            queue.busy = False
            self._wake(queue)

    @staticmethod
    def _wake(queue: _NodeQueue) -> None:
        event, queue.changed = queue.changed, trio.Event()
        event.set()

    @staticmethod
    def _take(queue: _NodeQueue) -> list[_Put]:
        batch: list[_Put] = []
        size = 0
        lease = queue.pending[0].lease
        for item in list(queue.pending):
            cost = len(item.data) + _ITEM_OVERHEAD
            if batch and (
                size + cost > min(_BATCH_BYTES, MAX_WRITE_BODY) or len(batch) >= MAX_BATCH_ITEMS
            ):
                break
            if item.lease != lease:
                continue
            batch.append(item)
            size += cost
        for item in batch:
            queue.pending.remove(item)
        return batch

    async def _send_batch(self, client: NodeClient, queue: _NodeQueue, batch: list[_Put]) -> None:
        if queue.batch_supported and len(batch) > 1:
            try:
                results = await client.put_sealed_many(
                    [(item.si, item.shnum, item.data) for item in batch], batch[0].lease
                )
            except NodeRefused as error:
                if error.status != 405 and not (error.status == 404 and "endpoint" in error.reason):
                    raise
                logger.info("node %s has no batch endpoint; sending shares one by one", client)
                queue.batch_supported = False
            else:
                for item, result in zip(batch, results, strict=True):
                    item.error = result
                return
        for item in batch:
            try:
                await client.put_sealed(item.si, item.shnum, item.data, item.lease)
            except NodeError as error:
                item.error = error
