"""The node's record store: append-only, atomic, idempotent, and strict about names."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.agent import records as records_module
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


def test_a_torn_tail_and_temp_files_of_a_crash_are_removed_on_start(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.put(WRITER, 1, b"kept")
    store.put(WRITER, 2, b"also kept")
    log = tmp_path / f"{WRITER}.log"
    whole = log.read_bytes()
    junk = tmp_path / f"{WRITER}.log.tmp"
    junk.write_bytes(b"half")
    with open(log, "ab") as handle:  # a batch cut short by kill -9: a frame head, half its data
        handle.write((3).to_bytes(8, "big") + (100).to_bytes(4, "big") + b"\0\0\0\0" + b"x" * 10)
    reopened = RecordStore(tmp_path)
    assert not junk.exists()
    assert reopened.list(WRITER) == [Record(1, b"kept"), Record(2, b"also kept")]
    assert log.read_bytes() == whole
    assert reopened.put(WRITER, 3, b"after the crash")
    assert RecordStore(tmp_path).list(WRITER, after=2) == [Record(3, b"after the crash")]


def test_a_corrupt_frame_ends_the_log(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.put_many(WRITER, [(1, b"one"), (2, b"two"), (3, b"three")])
    log = tmp_path / f"{WRITER}.log"
    data = bytearray(log.read_bytes())
    data[16 + 3 + 16 + 1] ^= 0xFF  # a byte of record 2's data
    log.write_bytes(bytes(data))
    assert RecordStore(tmp_path).list(WRITER) == [Record(1, b"one")]


def test_put_many_answers_per_record_and_stores_once(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    assert store.put(WRITER, 5, b"five")
    results = store.put_many(
        WRITER,
        [
            (6, b"six"),
            (5, b"five"),
            (5, b"FIVE"),
            (0, b"zero"),
            (6, b"six"),
            (7, b"x" * (MAX_RECORD_SIZE + 1)),
        ],
    )
    assert [status for status, _ in results] == [201, 200, 409, 400, 200, 413]
    assert store.list(WRITER) == [Record(5, b"five"), Record(6, b"six")]
    assert RecordStore(tmp_path).list(WRITER) == [Record(5, b"five"), Record(6, b"six")]


def test_out_of_order_numbers_list_in_order_and_prune_keeps_the_rest(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    store.put_many(WRITER, [(9, b"nine"), (2, b"two"), (1 << 62, b"big")])
    store.put(WRITER, 4, b"four")
    assert [r.seq for r in store.list(WRITER)] == [2, 4, 9, 1 << 62]
    assert store.prune(WRITER, 4) == 2
    assert [r.seq for r in store.list(WRITER)] == [9, 1 << 62]
    assert store.put(WRITER, 10, b"ten")
    assert [r.seq for r in RecordStore(tmp_path).list(WRITER)] == [9, 10, 1 << 62]


def test_many_writers_beyond_the_index_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_module, "MAX_OPEN_LOGS", 3)
    store = RecordStore(tmp_path)
    writers = [chr(ord("a") + i) * 32 for i in range(8)]
    for round_ in range(1, 4):
        for writer in writers:
            assert store.put(writer, round_, f"{writer[0]}{round_}".encode())
    for writer in writers:
        assert [r.data for r in store.list(writer)] == [
            f"{writer[0]}{n}".encode() for n in (1, 2, 3)
        ]


def test_wire_form_round_trips_and_rejects_truncation() -> None:
    records = [Record(1, b""), Record(2**40, b"abc")]
    body = encode_records(records)
    assert decode_records(body) == records
    with pytest.raises(RecordWireError, match="truncated"):
        decode_records(body[:-1])
