"""Wire form of record listings, shared by the node (which writes it) and clients (which read).

For each record: 8-byte big-endian seq, 4-byte length, data.
"""

from __future__ import annotations

from dataclasses import dataclass

from desktop.core.errors import PermaCloudError

MAX_RECORD_SIZE = 1 << 20


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
