"""Wire form of record listings and record batches, shared by the node and its clients.

For each record: 8-byte big-endian seq, 4-byte length, data. A listing (GET) and the body of a
batch put (POST /v1/records/<writer>) have the same form.
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop.core.errors import PermaCloudError

MAX_RECORD_SIZE = 1 << 20
MAX_RECORD_BATCH_BODY = 4 << 20  # a batch put's body (a record alone may be up to 1 MiB)
MAX_RECORD_BATCH_ITEMS = 4096


class RecordWireError(PermaCloudError):
    """A record listing that does not parse (a broken or lying node)."""


@dataclass(frozen=True)
class Record:
    seq: int
    data: bytes


def encode_records(records: list[Record]) -> bytes:
    """Wire form of a listing: for each record, 8-byte seq, 4-byte length, data."""
    parts: list[bytes] = []
    for record in records:
        parts.append(record.seq.to_bytes(8, "big") + len(record.data).to_bytes(4, "big"))
        parts.append(record.data)
    return b"".join(parts)


def decode_records(body: bytes) -> list[Record]:
    records: list[Record] = []
    offset = 0
    while offset < len(body):
        if offset + 12 > len(body):
            raise RecordWireError("truncated record listing")
        seq = int.from_bytes(body[offset : offset + 8], "big")
        length = int.from_bytes(body[offset + 8 : offset + 12], "big")
        offset += 12
        if length > MAX_RECORD_SIZE or offset + length > len(body):
            raise RecordWireError("truncated record listing")
        records.append(Record(seq, body[offset : offset + length]))
        offset += length
    return records


def batch_results(obj: object, count: int) -> list[tuple[int, str]]:
    """A batch put's answer, `{"results": [{"status", "error"}]}`, as (status, error) pairs."""
    items = obj.get("results") if isinstance(obj, dict) else None
    if not isinstance(items, list) or len(items) != count:
        raise RecordWireError("node answered a record batch with the wrong number of results")
    out: list[tuple[int, str]] = []
    for item in items:
        status = item.get("status") if isinstance(item, dict) else None
        if not isinstance(status, int) or isinstance(status, bool):
            raise RecordWireError("node answered a record batch with a malformed result")
        out.append((status, str(item.get("error", ""))))
    return out
