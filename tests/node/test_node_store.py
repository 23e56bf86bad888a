"""The disk store on real files: crash leftovers, journal recovery, quota, leases (fake clock)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from desktop.agent.store import ShareStore, StoreError

OWNER, OTHER = b"o" * 32, b"x" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _write(store: ShareStore, si: bytes, shnum: int, offset: int, data: bytes) -> None:
    writer = store.begin_write(si, shnum, offset, len(data), OWNER)
    try:
        writer.feed(data)
        writer.commit()
    finally:
        writer.close()


def test_partial_share_survives_restart_and_torn_journal(tmp_path: Path) -> None:
    store = ShareStore(tmp_path, 10_000)
    si = os.urandom(16)
    store.create(si, 0, 300, 60, OWNER)
    _write(store, si, 0, 0, b"a" * 100)
    _write(store, si, 0, 200, b"c" * 100)
    journal = store.get(si, 0).path / "journal"
    with open(journal, "ab") as torn:  # a record cut short by kill -9
        torn.write(b"\x01\x02\x03")
    reopened = ShareStore(tmp_path, 10_000)
    state = reopened.get(si, 0)
    assert state.ranges == [(0, 100), (200, 300)] and not state.sealed
    assert journal.stat().st_size % 20 == 0
    assert reopened.used == 300
    with pytest.raises(StoreError, match="100 bytes of the share are not written"):
        reopened.seal(si, 0, OWNER)
    _write(reopened, si, 0, 100, b"b" * 100)
    reopened.seal(si, 0, OWNER)
    assert (state.path / "data").read_bytes() == b"a" * 100 + b"b" * 100 + b"c" * 100
    assert not journal.exists()
    assert ShareStore(tmp_path, 10_000).get(si, 0).sealed


def test_sealed_share_never_changes(tmp_path: Path) -> None:
    store = ShareStore(tmp_path, 10_000)
    si = os.urandom(16)
    store.create(si, 1, 10, 60, OWNER)
    _write(store, si, 1, 0, b"0123456789")
    store.seal(si, 1, OWNER)
    _write(store, si, 1, 2, b"23")  # same bytes: idempotent, accepted
    writer = store.begin_write(si, 1, 2, 2, OWNER)
    with pytest.raises(StoreError) as differs:
        writer.feed(b"XX")
    writer.close()
    assert differs.value.status == 409
    assert (store.get(si, 1).data_path).read_bytes() == b"0123456789"
    with pytest.raises(StoreError) as other:
        store.begin_write(si, 1, 0, 1, OTHER)
    assert other.value.status == 403


def test_quota_reserved_at_create_and_released_on_delete(tmp_path: Path) -> None:
    store = ShareStore(tmp_path, 1000)
    first, second = os.urandom(16), os.urandom(16)
    store.create(first, 0, 700, 60, OWNER)
    with pytest.raises(StoreError) as full:
        store.create(second, 0, 301, 60, OWNER)
    assert full.value.status == 507
    store.create(second, 0, 300, 60, OWNER)
    assert store.free == 0
    store.delete(first, 0, OWNER)
    assert store.used == 300 and store.list_shares(first) == []
    assert not list((tmp_path / "tmp").iterdir())


def test_leases_expire_with_the_clock(tmp_path: Path) -> None:
    clock = Clock()
    store = ShareStore(tmp_path, 1000, clock=clock)
    si = os.urandom(16)
    store.create(si, 0, 10, 100, OWNER)
    store.create(si, 1, 10, 100, OWNER)
    store.renew_lease(si, 1, OWNER, 500)
    clock.now += 200
    assert store.sweep() == 1
    assert [s.shnum for s in store.list_shares(si)] == [1]
    clock.now += 301
    assert store.sweep() == 1 and store.used == 0
    assert not list((tmp_path / "shares").rglob("meta.json"))


def test_recovery_cleans_junk_and_drops_corrupt_shares(tmp_path: Path) -> None:
    store = ShareStore(tmp_path, 10_000)
    good, bad = os.urandom(16), os.urandom(16)
    store.create(good, 0, 4, 60, OWNER)
    _write(store, good, 0, 0, b"good")
    store.seal(good, 0, OWNER)
    store.create(bad, 0, 4, 60, OWNER)
    (store.get(bad, 0).path / "meta.json").write_text("{not json")
    staging = tmp_path / "tmp" / "new-123"
    staging.mkdir()
    (staging / "data").write_bytes(b"half")
    (store.get(good, 0).path / "meta.json.tmp").write_text("{}")
    reopened = ShareStore(tmp_path, 10_000)
    assert reopened.list_shares(bad) == []
    assert reopened.get(good, 0).sealed and reopened.used == 4
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not list((tmp_path / "shares").rglob("*.tmp"))
    meta = json.loads((reopened.get(good, 0).path / "meta.json").read_text())
    assert meta["sealed"] is True and meta["owner"] == OWNER.hex()


def test_writer_rejects_overlong_and_short_bodies(tmp_path: Path) -> None:
    store = ShareStore(tmp_path, 1000, fsync=False)
    si = os.urandom(16)
    store.create(si, 0, 100, 60, OWNER)
    writer = store.begin_write(si, 0, 0, 10, OWNER)
    with pytest.raises(StoreError):
        writer.feed(b"x" * 11)
    with pytest.raises(StoreError, match="shorter"):
        writer.commit()
    writer.close()
    assert store.get(si, 0).ranges == []
    with pytest.raises(StoreError) as beyond:
        store.begin_write(si, 0, 95, 10, OWNER)
    assert beyond.value.status == 416
