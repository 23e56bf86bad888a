"""Table tests for conflict handling, renames, directories and version history."""

import pytest
from ns_testkit import BASE_MS, Account, Device, put, sync

from desktop.core.namespace import (
    DeleteOp,
    DirInfo,
    FileInfo,
    InvalidPath,
    MkdirOp,
    PutOp,
    Replica,
    RmdirOp,
    VersionNotFound,
    conflict_name,
    is_conflict_copy,
    materialize_conflicts,
    plan_remove,
    plan_rename,
    rename_op,
    restore_op,
)
from desktop.core.namespace.keys import short_id

T0 = BASE_MS  # 2023-11-14 22:13:20 UTC


def pair() -> tuple[Account, Device, Device]:
    account = Account("conflicts")
    return account, account.add_device("laptop"), account.add_device("phone")


def merged(account: Account) -> Replica:
    replica = account.new_replica()
    for entry in account.all_entries():
        replica.receive(entry)
    return replica


def content(replica: Replica, path: str) -> str | None:
    node = replica.view.node(path)
    if node is None:
        return None
    assert isinstance(node.node, FileInfo)
    return node.node.content_hash


def hash_of(text: str) -> str:
    info = put("/x", text).info
    return info.content_hash


def test_concurrent_edits_keep_one_conflict_copy_named_after_the_loser() -> None:
    account, laptop, phone = pair()
    laptop.write(put("/notes/report.txt", "v1"), T0)
    sync(phone, laptop)
    laptop.write(put("/notes/report.txt", "laptop edit"), T0 + 5_000)
    phone.write(put("/notes/report.txt", "phone edit"), T0 + 9_000)
    view = merged(account).view
    copies = view.conflicts()
    assert len(copies) == 1
    expected = f"/notes/report.sync-conflict-20231114-221325-{short_id(laptop.id)}.txt"
    assert copies[0].path == expected
    assert copies[0].conflict_of == "/notes/report.txt"
    assert isinstance(copies[0].node, FileInfo)
    assert copies[0].node.content_hash == hash_of("laptop edit")
    assert content(merged(account), "/notes/report.txt") == hash_of("phone edit")
    assert view.listdir("/notes") == sorted(["report.txt", expected.rsplit("/", 1)[1]])


def test_concurrent_puts_with_equal_content_make_no_conflict() -> None:
    account, laptop, phone = pair()
    laptop.write(put("/a.txt", "same"), T0)
    phone.write(put("/a.txt", "same"), T0 + 1)
    view = merged(account).view
    assert view.conflicts() == []
    assert len(view.versions("/a.txt")) == 2


def test_conflict_between_edits_of_a_conflict_copy_makes_no_copy_of_a_copy() -> None:
    account, laptop, phone = pair()
    copy = conflict_name("/doc.txt", T0, laptop.id)
    assert is_conflict_copy(copy)
    laptop.write(put(copy, "base"), T0)
    sync(phone, laptop)
    laptop.write(put(copy, "edit on laptop"), T0 + 1_000)
    phone.write(put(copy, "edit on phone"), T0 + 2_000)
    replica = merged(account)
    assert replica.view.conflicts() == []
    assert content(replica, copy) == hash_of("edit on phone")
    # The losing edit is not lost: it is in the history.
    assert hash_of("edit on laptop") in {
        v.file.content_hash for v in replica.view.versions(copy) if v.file
    }


def test_delete_versus_concurrent_modify_keeps_the_modification() -> None:
    account, laptop, phone = pair()
    laptop.write(put("/a.txt", "v1"), T0)
    sync(phone, laptop)
    laptop.write(DeleteOp("/a.txt"), T0 + 9_000)  # later timestamp must not matter
    phone.write(put("/a.txt", "v2"), T0 + 1_000)
    replica = merged(account)
    assert content(replica, "/a.txt") == hash_of("v2")
    assert replica.view.conflicts() == []


def test_delete_after_seeing_the_edit_wins() -> None:
    account, laptop, phone = pair()
    laptop.write(put("/a.txt", "v1"), T0)
    sync(phone, laptop)
    phone.write(put("/a.txt", "v2"), T0 + 1_000)
    sync(laptop, phone)
    laptop.write(DeleteOp("/a.txt"), T0 + 2_000)
    view = merged(account).view
    assert view.node("/a.txt") is None
    versions = view.versions("/a.txt")
    assert [v.deleted for v in versions] == [False, False, True]


def test_rename_file_versus_concurrent_edit_keeps_both() -> None:
    account, laptop, phone = pair()
    laptop.write(put("/a.txt", "v1"), T0)
    sync(phone, laptop)
    laptop.write(rename_op("/a.txt", "/b.txt", [("/a.txt", put("/a.txt", "v1").info)]), T0 + 1)
    phone.write(put("/a.txt", "v2"), T0 + 2)
    replica = merged(account)
    assert content(replica, "/b.txt") == hash_of("v1")
    assert content(replica, "/a.txt") == hash_of("v2")


def test_directory_rename_moves_the_subtree_and_keeps_concurrent_new_file() -> None:
    account, laptop, phone = pair()
    laptop.write(MkdirOp("/photos"), T0)
    laptop.write(put("/photos/1.jpg", "one"), T0 + 1)
    laptop.write(put("/photos/2.jpg", "two"), T0 + 2)
    sync(phone, laptop)
    items = [(p, n.node) for p, n in laptop.replica.view.tree().items() if p.startswith("/photos")]
    laptop.write(rename_op("/photos", "/pics", items), T0 + 3)
    phone.write(put("/photos/3.jpg", "three"), T0 + 4)
    view = merged(account).view
    assert view.listdir("/pics") == ["1.jpg", "2.jpg"]
    assert view.listdir("/photos") == ["3.jpg"]
    assert isinstance(view.node("/photos").node, DirInfo)  # type: ignore[union-attr]


def test_rmdir_versus_concurrent_file_inside_keeps_the_file() -> None:
    account, laptop, phone = pair()
    laptop.write(MkdirOp("/d"), T0)
    sync(phone, laptop)
    laptop.write(RmdirOp("/d"), T0 + 1)
    phone.write(put("/d/new.txt", "new"), T0 + 2)
    view = merged(account).view
    assert view.listdir("/d") == ["new.txt"]


def test_file_versus_directory_at_one_name_keeps_both() -> None:
    account, laptop, phone = pair()
    laptop.write(put("/thing", "a file"), T0)
    phone.write(put("/thing/inside.txt", "a file in a dir"), T0 + 1)
    view = merged(account).view
    assert isinstance(view.node("/thing").node, DirInfo)  # type: ignore[union-attr]
    copies = view.conflicts()
    assert [c.conflict_of for c in copies] == ["/thing"]
    assert copies[0].path.startswith("/thing.sync-conflict-")


def test_three_way_conflict_gives_two_copies() -> None:
    account = Account("three")
    devices = [account.add_device(n) for n in ("a", "b", "c")]
    for i, d in enumerate(devices):
        d.write(put("/x.md", f"edit {i}"), T0 + i * 1000)
    view = merged(account).view
    assert len(view.conflicts()) == 2
    assert content(merged(account), "/x.md") == hash_of("edit 2")


def test_restore_brings_back_an_old_version() -> None:
    _account, laptop, _ = pair()
    laptop.write(put("/a.txt", "v1"), T0)
    laptop.write(put("/a.txt", "v2"), T0 + 1)
    laptop.write(DeleteOp("/a.txt"), T0 + 2)
    view = laptop.replica.view
    assert [v.number for v in view.versions("/a.txt")] == [1, 2, 3]
    op = restore_op(view, "/a.txt", 1)
    assert isinstance(op, PutOp)
    laptop.write(op, T0 + 3)
    assert content(laptop.replica, "/a.txt") == hash_of("v1")
    with pytest.raises(VersionNotFound, match="not a file"):
        restore_op(view, "/a.txt", 3)
    with pytest.raises(VersionNotFound, match="no version 99"):
        restore_op(view, "/a.txt", 99)


def test_materializing_a_conflict_copy_makes_it_a_regular_file() -> None:
    _account, laptop, phone = pair()
    laptop.write(put("/a.txt", "base"), T0)
    sync(phone, laptop)
    laptop.write(put("/a.txt", "L"), T0 + 1_000)
    phone.write(put("/a.txt", "P"), T0 + 2_000)
    sync(laptop, phone)
    (copy,) = laptop.replica.view.conflicts()
    assert isinstance(copy.node, FileInfo)
    laptop.write(PutOp(copy.path, copy.node), T0 + 3_000)
    laptop.write(put("/a.txt", "resolved"), T0 + 4_000)
    view = laptop.replica.view
    assert content(laptop.replica, copy.path) == hash_of("L")
    assert view.node(copy.path).conflict_of is None  # type: ignore[union-attr]
    assert content(laptop.replica, "/a.txt") == hash_of("resolved")


def test_deleting_a_conflict_copy_hides_it_everywhere() -> None:
    account, laptop, phone = pair()
    laptop.write(put("/a.txt", "base"), T0)
    sync(phone, laptop)
    laptop.write(put("/a.txt", "L"), T0 + 1_000)
    phone.write(put("/a.txt", "P"), T0 + 2_000)
    sync(laptop, phone)
    (copy,) = laptop.replica.view.conflicts()
    for op in plan_remove(laptop.replica.view, copy.path):
        laptop.write(op, T0 + 3_000)
    assert laptop.replica.view.conflicts() == []
    view = merged(account).view
    assert view.conflicts() == []
    assert content(merged(account), "/a.txt") == hash_of("P")
    assert hash_of("L") in {v.file.content_hash for v in view.versions("/a.txt") if v.file}


def test_materialize_conflicts_gives_puts_for_derived_copies() -> None:
    account, laptop, phone = pair()
    laptop.write(put("/a.txt", "L"), T0)
    phone.write(put("/a.txt", "P"), T0 + 1)
    sync(laptop, phone)
    (op,) = materialize_conflicts(laptop.replica.view)
    laptop.write(op, T0 + 2)
    phone.write(put("/a.txt", "P2"), T0 + 3)  # phone never saw the copy: it stays
    sync(phone, laptop)
    assert is_conflict_copy(op.path)
    assert content(phone.replica, op.path) == hash_of("L")
    assert materialize_conflicts(merged(account).view) == []


def test_plan_rename_and_plan_remove_cover_the_subtree() -> None:
    _account, laptop, _ = pair()
    laptop.write(MkdirOp("/src"), T0)
    laptop.write(MkdirOp("/src/sub"), T0 + 1)
    laptop.write(put("/src/sub/f.txt", "f"), T0 + 2)
    laptop.write(put("/src/g.txt", "g"), T0 + 3)
    view = laptop.replica.view
    with pytest.raises(InvalidPath, match="destination exists"):
        plan_rename(view, "/src/g.txt", "/src/sub/f.txt")
    with pytest.raises(VersionNotFound, match="no such file"):
        plan_rename(view, "/nope", "/x")
    laptop.write(plan_rename(view, "/src", "/dst"), T0 + 4)
    assert [n.path for n in view.walk("/dst")] == [
        "/dst",
        "/dst/g.txt",
        "/dst/sub",
        "/dst/sub/f.txt",
    ]
    assert view.node("/src") is None
    ops = plan_remove(view, "/dst")
    assert isinstance(ops[-1], RmdirOp) and ops[-1].path == "/dst"
    for op in ops:
        laptop.write(op, T0 + 5)
    assert view.listdir("/") == []
