"""Two devices syncing real folders through real daemons and real nodes on 127.0.0.1."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_nodes import NodeFactory
from sync_testkit import (
    SyncPair,
    digest,
    folder_status,
    start_pair,
    wait_for,
    wait_in_sync,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncPair]:
    base = tmp_path_factory.mktemp("sync")
    nodes = NodeFactory(base / "nodes")
    try:
        started = start_pair(base, nodes)
        yield started
        for device in (started.a, started.b):
            device.stop()
    finally:
        nodes.stop_all()


def test_create_modify_rename_delete_from_a_to_b(pair: SyncPair) -> None:
    root = pair.a_dir / "basic"
    (root / "docs" / "empty").mkdir(parents=True)
    (root / "docs" / "report.txt").write_bytes(b"first version")
    os.chmod(root / "docs" / "report.txt", 0o600)
    (root / "photo.bin").write_bytes(os.urandom(300_000))
    os.symlink("docs/report.txt", root / "link-to-report")
    state = wait_in_sync(pair, "basic")
    assert state["docs/empty"] == ("dir",)
    assert state["link-to-report"] == ("link", "docs/report.txt")
    assert state["docs/report.txt"] == ("file", digest(b"first version"), 0o600)
    mtime = (root / "photo.bin").stat().st_mtime_ns
    assert (pair.b_dir / "basic" / "photo.bin").stat().st_mtime_ns == mtime

    (root / "docs" / "report.txt").write_bytes(b"second version")
    os.rename(root / "photo.bin", root / "docs" / "photo-renamed.bin")
    wait_in_sync(
        pair,
        "basic",
        until=lambda s: (
            s["docs/report.txt"][1] == digest(b"second version") and "photo.bin" not in s
        ),
    )
    assert not (pair.b_dir / "basic" / "photo.bin").exists()
    # A rename travels as a rename: the namespace has a move, not a delete plus a new upload.
    moved = pair.a.call("ls", {"path": "/Sync/basic/docs/photo-renamed.bin"})[0]
    assert moved["size"] == 300_000

    (root / "docs" / "report.txt").unlink()
    (root / "docs" / "empty").rmdir()
    wait_in_sync(
        pair, "basic", until=lambda s: "docs/report.txt" not in s and "docs/empty" not in s
    )
    assert not (pair.b_dir / "basic" / "docs" / "report.txt").exists()
    versions = pair.b.call("versions", {"path": "/Sync/basic/docs/report.txt"})
    assert versions[-1]["deleted"] is True
    assert [v["size"] for v in versions if not v["deleted"]] == [13, 14]


def test_changes_on_b_reach_a(pair: SyncPair) -> None:
    root = pair.b_dir / "reverse"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "notes.md").write_text("from bob")
    os.symlink("/etc/hostname", root / "abs-link")
    state = wait_in_sync(pair, "reverse")
    assert state["sub/notes.md"][1] == digest(b"from bob")
    assert (pair.a_dir / "reverse" / "abs-link").readlink() == Path("/etc/hostname")

    os.rename(root / "sub", root / "renamed-sub")
    (root / "renamed-sub" / "notes.md").write_text("edited by bob")
    edited = digest(b"edited by bob")
    state = wait_in_sync(pair, "reverse", until=lambda s: s["renamed-sub/notes.md"][1] == edited)
    assert state["renamed-sub/notes.md"][1] == digest(b"edited by bob")
    assert "sub" not in state

    (root / "renamed-sub" / "notes.md").unlink()
    (root / "abs-link").unlink()
    state = wait_in_sync(pair, "reverse", until=lambda s: len(s) == 1)
    assert state == {"renamed-sub": ("dir",)}


def _conflict_copies(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if ".sync-conflict-" in p.name)


def _edit_while_cut_off(pair: SyncPair, name: str, a_text: str, b_text: str) -> None:
    root_a, root_b = pair.a_dir / name, pair.b_dir / name
    root_a.mkdir()
    (root_a / "todo.txt").write_text("base version")
    wait_in_sync(pair, name)
    for device in (pair.a, pair.b):
        device.call("sync.pause")
    try:
        assert folder_status(pair.a)["state"] == "paused"
        (root_a / "todo.txt").write_text(a_text)
        (root_b / "todo.txt").write_text(b_text)
    finally:
        for device in (pair.a, pair.b):
            device.call("sync.resume")


def test_concurrent_edits_keep_both_as_one_conflict_copy(pair: SyncPair) -> None:
    _edit_while_cut_off(pair, "conflict", "alice's edit", "bob's longer edit")
    state = wait_in_sync(pair, "conflict", until=lambda s: len(s) == 2)
    root = pair.a_dir / "conflict"
    copies = _conflict_copies(root)
    assert len(copies) == 1, state
    assert copies[0].name.startswith("todo.sync-conflict-") and copies[0].suffix == ".txt"
    contents = {(root / "todo.txt").read_text(), copies[0].read_text()}
    assert contents == {"alice's edit", "bob's longer edit"}
    assert folder_status(pair.a)["conflicts"] == 1
    assert pair.a.call("status")["sync"]["folders"][0]["conflicts"] == 1


def test_equal_edits_make_no_conflict_copy(pair: SyncPair) -> None:
    _edit_while_cut_off(pair, "equal", "the same words", "the same words")
    same = digest(b"the same words")
    state = wait_in_sync(pair, "equal", until=lambda s: s["todo.txt"][1] == same)
    assert state == {"todo.txt": ("file", digest(b"the same words"), 0o644)}


def test_ignored_files_never_leave_the_device(pair: SyncPair) -> None:
    root = pair.a_dir / "ignored"
    (root / "secret").mkdir(parents=True)
    (pair.a_dir / ".permacloudignore").write_text("secret/\n*.log\n")
    junk = [".DS_Store", "~$report.docx", ".~lock.sheet.ods#", "notes.txt.swp", "draft~"]
    for name in [*junk, "debug.log"]:
        (root / name).write_text("local only")
    (root / "secret" / "keys.txt").write_text("local only")
    (root / "kept.txt").write_text("goes everywhere")
    wait_for(lambda: (pair.b_dir / "ignored" / "kept.txt").exists(), what="kept.txt on bob")
    wait_for(lambda: folder_status(pair.a)["state"] == "in sync", what="alice in sync")
    names = {row["name"] for row in pair.a.call("ls", {"path": "/Sync/ignored"})}
    assert names == {"kept.txt"}
    assert sorted(p.name for p in (pair.b_dir / "ignored").iterdir()) == ["kept.txt"]
    (pair.a_dir / ".permacloudignore").unlink()
    (root / "debug.log").unlink()
    (root / "secret" / "keys.txt").unlink()


def test_a_file_being_written_is_never_uploaded_half_written(pair: SyncPair) -> None:
    root = pair.a_dir / "slow"
    root.mkdir()
    chunk = os.urandom(64 * 1024)
    with open(root / "recording.bin", "wb") as handle:
        for _ in range(14):  # ~4 s of appending, longer than the settle time
            handle.write(chunk)
            handle.flush()
            time.sleep(0.3)
    final = 14 * len(chunk)
    wait_for(
        lambda: (pair.b_dir / "slow" / "recording.bin").stat().st_size == final,
        what="the whole recording on bob",
    )
    versions = pair.a.call("versions", {"path": "/Sync/slow/recording.bin"})
    assert [v["size"] for v in versions] == [final]


def test_bad_input_is_one_clear_line(pair: SyncPair, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    other = tmp_path / "other"
    other.mkdir()
    cases = [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(a_file)], "is not a folder"),
        ([str(pair.a_dir / "basic")], "overlaps the sync folder"),
        ([str(pair.a_dir.parent)], "overlaps the sync folder"),
        ([str(other), "--as", "/Sync/"], "not canonical"),
        ([str(other), "--as", "Elsewhere"], "not absolute"),
        ([str(other), "--as", "/Sync/inner"], "overlaps /Sync"),
    ]
    for args, message in cases:
        result = pair.a.cli("sync", "add", *args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    removed = pair.a.cli("sync", "remove", str(other), check=False)
    assert removed.returncode != 0 and "is not a sync folder" in removed.stderr


def test_a_put_through_the_cli_reaches_the_same_devices_folder(
    pair: SyncPair, tmp_path: Path
) -> None:
    """The CLI (like the mount) writes /Sync through the daemon, not through the folder: the
    folder on the SAME device must still receive it, and so must the other device's."""
    source = tmp_path / "from-cli.txt"
    source.write_bytes(b"put with the CLI")
    pair.a.cli("mkdir", "-p", "/Sync/cli")
    pair.a.cli("put", str(source), "/Sync/cli/from-cli.txt")
    # Well inside the 20 s rescan period of these tests: the change event brings it, not a rescan.
    state = wait_in_sync(pair, "cli", timeout=10, until=lambda s: "from-cli.txt" in s)
    assert state["from-cli.txt"][1] == digest(b"put with the CLI")
    assert (pair.a_dir / "cli" / "from-cli.txt").read_bytes() == b"put with the CLI"
