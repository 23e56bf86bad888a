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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import trio

from desktop.client.pool import NodePool
from desktop.core.errors import PermaCloudError
from desktop.core.namespace import Entry, decode_entry
from desktop.core.placement import Candidate, rendezvous_order
from desktop.daemon.account import AccountKeys
from desktop.net.errors import NodeError, NodeRefused
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


async def publish_record(
    pool: NodePool, keys: AccountKeys, signer: DeviceKey, seq: int, plaintext: bytes
) -> int:
    """Store one record on the writer's nodes; returns on how many it landed (or already was).

    RecordConflict when no node took it because the number is taken by other data.
    """
    sealed = keys.record_cipher().seal(signer.node_id, seq, plaintext)
    targets = record_nodes(pool, signer.node_id, REPLICAS)
    stored = 0
    conflicts = 0

    async def put(node_id: str) -> None:
        nonlocal stored, conflicts
        try:
            await pool.client(node_id).put_record(signer, seq, sealed)
        except NodeRefused as error:
            if error.status == 409:
                conflicts += 1
            logger.info("record %s/%d refused by %s: %s", signer.node_id[:8], seq, node_id, error)
            return
        except NodeError as error:
            logger.info(
                "record %s/%d not stored on %s: %s", signer.node_id[:8], seq, node_id, error
            )
            return
        stored += 1

    async with trio.open_nursery() as nursery:
        for node_id in targets:
            nursery.start_soon(put, node_id)
    if not stored and conflicts:
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
