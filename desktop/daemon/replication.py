"""Moving the namespace through the network: device logs and the account log as node records.

Each device's log entries go, encrypted with the account's record key, to the record log of the
device key on several nodes (rendezvous order of the writer ID, so every device looks in the same
places). The account log (written with the account root key) carries device certificates and the
household's nodes. Readers union what a few nodes return; entries are self-authenticating
(signatures, hash chain), so a node can withhold but not forge.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from desktop.client.pool import NodePool
from desktop.core.errors import PermaCloudError
from desktop.core.namespace import Entry, decode_entry
from desktop.core.placement import Candidate, rendezvous_order
from desktop.daemon.account import AccountKeys
from desktop.net.errors import NodeError
from desktop.net.identity import DeviceKey
from desktop.net.records_wire import Record

logger = logging.getLogger(__name__)

REPLICAS = 7
READ_FROM = 3


@dataclass(frozen=True)
class AccountRecord:
    kind: str  # "cert" or "node"
    body: dict[str, Any]


def encode_account_record(kind: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"kind": kind, **body}, sort_keys=True).encode()


def decode_account_record(data: bytes) -> AccountRecord:
    obj = json.loads(data)
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        raise PermaCloudError("malformed account record")
    kind = obj.pop("kind")
    return AccountRecord(kind, obj)


def cert_record(cert_bytes: bytes) -> bytes:
    return encode_account_record("cert", {"data": base64.b64encode(cert_bytes).decode()})


def node_record(node_id: str, address: str, name: str) -> bytes:
    return encode_account_record("node", {"id": node_id, "address": address, "name": name})


def record_nodes(pool: NodePool, writer: str, count: int) -> list[str]:
    """Where a writer's records live: the first `count` online nodes in rendezvous order."""
    online = set(pool.online()) or set(pool.node_ids)
    order = rendezvous_order(writer.encode(), (Candidate(n) for n in online))
    return [c.node_id for c in order[:count]]


class RecordConflict(PermaCloudError):
    """Nodes hold different data under this record number."""


BATCH_BYTES = 512 * 1024  # a batch request's records (the node allows 4 MiB)
BATCH_ITEMS = 1024


@dataclass
class Published:
    """Per record number: on how many nodes it is now (new or already there), and the numbers
    some node refused because it holds other data under them."""

    stored: dict[int, int]
    conflicts: set[int]


def _batches(records: list[Record]) -> list[list[Record]]:
    out: list[list[Record]] = []
    size = 0
    for record in records:
        cost = len(record.data) + 12
        if not out or len(out[-1]) >= BATCH_ITEMS or size + cost > BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(record)
        size += cost
    return out


async def publish_records(
    pool: NodePool, keys: AccountKeys, signer: DeviceKey, items: Sequence[tuple[int, bytes]]
) -> Published:
    """Store records on the writer's nodes: batches of many records per request (one fsync on
    the node each), all nodes in parallel. Sealing is deterministic, so republishing a record
    that is already there is a no-op on every node."""
    cipher = keys.record_cipher()
    sealed = [Record(seq, cipher.seal(signer.node_id, seq, plain)) for seq, plain in items]
    batches = _batches(sealed)
    stored = dict.fromkeys((r.seq for r in sealed), 0)
    conflicts: set[int] = set()

    async def put(node_id: str) -> None:
        client = pool.client(node_id)
        for batch in batches:
            try:
                results = await client.put_records(signer, batch)
            except NodeError as error:
                logger.info(
                    "records of %s not stored on %s: %s", signer.node_id[:8], node_id, error
                )
                return
            for record, (status, reason) in zip(batch, results, strict=True):
                if status in (200, 201):
                    stored[record.seq] += 1
                else:
                    if status == 409:
                        conflicts.add(record.seq)
                    logger.info(
                        "record %s/%d refused by %s: %d %s",
                        signer.node_id[:8],
                        record.seq,
                        node_id,
                        status,
                        reason,
                    )

    async with trio.open_nursery() as nursery:
        for node_id in record_nodes(pool, signer.node_id, REPLICAS):
            nursery.start_soon(put, node_id)
    return Published(stored, conflicts)


async def publish_record(
    pool: NodePool, keys: AccountKeys, signer: DeviceKey, seq: int, plaintext: bytes
) -> int:
    """Store one record on the writer's nodes; returns on how many it landed (or already was).

    RecordConflict when no node took it because the number is taken by other data.
    """
    result = await publish_records(pool, keys, signer, [(seq, plaintext)])
    stored = result.stored[seq]
    if not stored and seq in result.conflicts:
        raise RecordConflict(f"record {seq} of {signer.node_id[:8]} holds other data")
    return stored


async def publish_account_record(pool: NodePool, keys: AccountKeys, plaintext: bytes) -> int:
    """Append to the account log; sequence numbers are microsecond times, retried on a clash."""
    for _ in range(5):
        seq = time.time_ns() // 1000
        try:
            return await publish_record(pool, keys, keys.account_signer, seq, plaintext)
        except RecordConflict:
            continue
    raise PermaCloudError("could not append to the account log (sequence clashes)")


async def fetch_records(
    pool: NodePool, keys: AccountKeys, writer: str, after: int
) -> list[tuple[int, bytes]]:
    """Decrypted records of `writer` after `after`, the union of what a few nodes hold."""
    found: dict[int, bytes] = {}
    cipher = keys.record_cipher()

    async def read(node_id: str) -> None:
        cursor = after
        while True:
            try:
                page: list[Record] = await pool.client(node_id).list_records(writer, cursor)
            except (NodeError, PermaCloudError) as error:
                logger.debug("records of %s from %s: %s", writer[:8], node_id, error)
                return
            if not page:
                return
            for record in page:
                if record.seq in found:
                    continue
                try:
                    found[record.seq] = cipher.open(writer, record.seq, record.data)
                except PermaCloudError as error:
                    logger.warning("node %s returned a bad record: %s", node_id, error)
            cursor = page[-1].seq

    async with trio.open_nursery() as nursery:
        for node_id in record_nodes(pool, writer, READ_FROM):
            nursery.start_soon(read, node_id)
    return sorted(found.items())


def decode_entries(records: Iterable[tuple[int, bytes]]) -> list[Entry]:
    entries: list[Entry] = []
    for seq, data in records:
        try:
            entry = decode_entry(data)
        except PermaCloudError as error:
            logger.warning("undecodable log entry %d: %s", seq, error)
            continue
        if entry.seq != seq:
            logger.warning("log entry stored under seq %d claims seq %d", seq, entry.seq)
            continue
        entries.append(entry)
    return entries
