"""Path validation, retention policy and snapshot encoding/verification."""

import dataclasses

import pytest
from ns_testkit import BASE_MS, Account, put

from desktop.core.namespace import (
    InvalidPath,
    PathOp,
    PutOp,
    RetentionPolicy,
    TamperedLog,
    VersionVector,
    decode_snapshot,
    make_snapshot,
    normalize_path,
    rename_op,
    retain,
)
from desktop.core.namespace.snapshot import DAY_MS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b"),
        ("/cafe\u0301.txt", "/caf\u00e9.txt"),  # NFD -> NFC
    ],
)
def test_paths_normalize(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("a/b", "not absolute"),
        ("", "not absolute"),
        ("/a//b", "empty component"),
        ("/a/../b", "'..' component"),
        ("/a/./b", "'.' component"),
        ("/a\x00b", "NUL"),
        ("/" + "x" * 256, "longer than 255 bytes"),
        ("/" + "/".join(["y" * 200] * 25), "longer than 4096 bytes"),
    ],
)
def test_bad_paths_are_rejected_clearly(raw: str, message: str) -> None:
    with pytest.raises(InvalidPath, match=message):
        normalize_path(raw)


def test_ops_refuse_non_canonical_paths() -> None:
    account = Account("paths")
    laptop = account.add_device("laptop")
    with pytest.raises(InvalidPath, match=r"'\.\.' component"):
        laptop.write(put("/a/../b", "x"), BASE_MS)
    with pytest.raises(InvalidPath, match="not in canonical form"):
        laptop.write(put("/a/b/", "x"), BASE_MS)
    with pytest.raises(InvalidPath, match="contains the other"):
        rename_op("/a", "/a/b", [("/a", put("/a", "x").info)])
    assert laptop.log == []


def op_at(seq: int, ts: int) -> PathOp:
    info = put("/p", str(seq)).info
    return PathOp("dev", seq, 0, ts, VersionVector.from_mapping({"dev": seq}), "/p", info)


def test_retention_keeps_last_n_and_recent_and_always_the_current() -> None:
    now = BASE_MS + 100 * DAY_MS
    ops = [op_at(i, BASE_MS + i * 10 * DAY_MS) for i in range(1, 11)]  # 10 versions

    def seqs(kept: list[PathOp]) -> list[int]:
        return [o.seq for o in kept]

    assert seqs(retain(ops, RetentionPolicy(), now)) == list(range(1, 11))
    assert seqs(retain(ops, RetentionPolicy(keep_last=0), now)) == [10]
    assert seqs(retain(ops, RetentionPolicy(keep_last=2), now)) == [8, 9, 10]
    assert seqs(retain(ops, RetentionPolicy(keep_days=25), now)) == [8, 9, 10]
    assert seqs(retain(ops, RetentionPolicy(keep_last=1, keep_days=35), now)) == [7, 8, 9, 10]
    assert retain([], RetentionPolicy(keep_last=3), now) == []


def test_retention_of_a_deleted_path_is_by_age_only() -> None:
    """A deleted file's content must become collectable: the count rule keeps nothing once
    the last operation removed the path; the age rule still makes it restorable for a while."""
    now = BASE_MS + 100 * DAY_MS
    ops = [op_at(i, BASE_MS + i * 10 * DAY_MS) for i in range(1, 10)]
    delete = PathOp(
        "dev", 10, 0, BASE_MS + 95 * DAY_MS, VersionVector.from_mapping({"dev": 10}), "/p", None
    )
    kept = retain([*ops, delete], RetentionPolicy(keep_last=100), now)
    assert [o.seq for o in kept] == [10]
    kept = retain([*ops, delete], RetentionPolicy(keep_last=100, keep_days=25), now)
    assert [o.seq for o in kept] == [8, 9, 10]


def snapshot_account() -> tuple[Account, bytes]:
    account = Account("snap")
    laptop = account.add_device("laptop")
    for i in range(5):
        laptop.write(put("/a.txt", f"v{i}"), BASE_MS + i)
    laptop.write(put("/b.txt", "b"), BASE_MS + 10)
    snap = make_snapshot(
        laptop.key,
        laptop.replica.account_id,
        laptop.replica.view.ops(laptop.id),
        laptop.writer.head,
        RetentionPolicy(keep_last=1),
        BASE_MS + 20,
    )
    return account, snap.to_bytes()


def test_snapshot_round_trips_and_applies_retention() -> None:
    account, raw = snapshot_account()
    snap = decode_snapshot(raw)
    assert snap.to_bytes() == raw
    assert [(o.path, o.seq) for o in snap.ops] == [("/a.txt", 4), ("/a.txt", 5), ("/b.txt", 6)]
    fresh = account.new_replica()
    fresh.load_snapshot(snap)
    assert fresh.view.tree() == account.devices[0].replica.view.tree()
    assert len(fresh.view.versions("/a.txt")) == 2
    laptop = account.devices[0]
    laptop.write(PutOp("/c.txt", put("/c", "c").info), BASE_MS + 30)
    fresh.apply(laptop.log[-1])  # the log continues from the snapshot's head
    assert fresh.view.node("/c.txt") is not None


def test_tampered_snapshot_is_rejected() -> None:
    account, raw = snapshot_account()
    snap = decode_snapshot(raw)
    fresh = account.new_replica()
    dropped = dataclasses.replace(snap, ops=snap.ops[1:])
    with pytest.raises(TamperedLog, match="snapshot has a bad signature"):
        fresh.load_snapshot(dropped)
    with pytest.raises(TamperedLog, match="malformed snapshot"):
        decode_snapshot(raw.replace(b'"kind":"snapshot"', b'"kind":"other"'))
    assert fresh.view.tree().keys() == {"/"}
