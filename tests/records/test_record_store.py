"""The node's record store: append-only, atomic, idempotent, and strict about names."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.agent.records import RecordError, RecordStore
from desktop.net.records_wire import (
    MAX_RECORD_SIZE,
    Record,
    RecordWireError,
    decode_records,
    encode_records,
)

WRITER = "a" * 32


def test_put_list_prune(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    assert store.put(WRITER, 1, b"one")
    assert store.put(WRITER, 3, b"three")
    assert not store.put(WRITER, 1, b"one")
    with pytest.raises(RecordError, match="different data") as info:
        store.put(WRITER, 1, b"changed")
    assert info.value.status == 409
    assert store.list(WRITER) == [Record(1, b"one"), Record(3, b"three")]
    assert store.list(WRITER, after=1) == [Record(3, b"three")]
    assert store.prune(WRITER, 2) == 1
    assert store.list(WRITER) == [Record(3, b"three")]
    assert store.list("b" * 32) == []


def test_listing_is_capped_by_bytes(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    for seq in range(1, 11):
        store.put(WRITER, seq, b"x" * 100)
    assert [r.seq for r in store.list(WRITER, limit_bytes=250)] == [1, 2, 3]


@pytest.mark.parametrize("writer", ["../etc", "A" * 32, "a" * 31, "a/" + "a" * 30, ""])
def test_bad_writer_ids_are_refused(tmp_path: Path, writer: str) -> None:
    with pytest.raises(RecordError, match="malformed writer"):
        RecordStore(tmp_path).put(writer, 1, b"x")


def test_bad_sequence_and_size(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    with pytest.raises(RecordError, match="sequence number"):
        store.put(WRITER, 0, b"x")
    with pytest.raises(RecordError, match="larger than") as info:
        store.put(WRITER, 1, b"x" * (MAX_RECORD_SIZE + 1))
    assert info.value.status == 413


def test_temp_files_of_a_crash_are_removed_on_start(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.put(WRITER, 1, b"kept")
    junk = tmp_path / WRITER / f"{2:019d}.rec.tmp"
    junk.write_bytes(b"half")
    RecordStore(tmp_path)
    assert not junk.exists()
    assert RecordStore(tmp_path).list(WRITER) == [Record(1, b"kept")]


def test_wire_form_round_trips_and_rejects_truncation() -> None:
    records = [Record(1, b""), Record(2**40, b"abc")]
    body = encode_records(records)
    assert decode_records(body) == records
    with pytest.raises(RecordWireError, match="truncated"):
        decode_records(body[:-1])
