"""Two devices syncing real folders through real daemons and real nodes on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_nodes import NodeFactory
from sync_testkit import SyncPair, digest, start_pair, wait_in_sync


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
    wait_in_sync(pair, "basic")
    assert not (pair.b_dir / "basic" / "photo.bin").exists()
    # A rename travels as a rename: the namespace has a move, not a delete plus a new upload.
    moved = pair.a.call("ls", {"path": "/Sync/basic/docs/photo-renamed.bin"})[0]
    assert moved["size"] == 300_000

    (root / "docs" / "report.txt").unlink()
    (root / "docs" / "empty").rmdir()
    wait_in_sync(pair, "basic")
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
    state = wait_in_sync(pair, "reverse")
    assert state["renamed-sub/notes.md"][1] == digest(b"edited by bob")
    assert "sub" not in state

    (root / "renamed-sub" / "notes.md").unlink()
    (root / "abs-link").unlink()
    state = wait_in_sync(pair, "reverse")
    assert state == {"renamed-sub": ("dir",)}
