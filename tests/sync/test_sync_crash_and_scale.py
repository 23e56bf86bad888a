"""A daemon killed in the middle of a sync, and a 10,000-file tree: real daemons and nodes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_nodes import NodeFactory
from sync_testkit import SyncPair, start_pair, wait_for, wait_in_sync


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SyncPair]:
    nodes = NodeFactory(tmp_path / "nodes")
    try:
        started = start_pair(tmp_path, nodes)
        yield started
        for device in (started.a, started.b):
            device.stop()
    finally:
        nodes.stop_all()


def test_kill_9_mid_sync_loses_and_duplicates_nothing(pair: SyncPair) -> None:
    root = pair.a_dir / "batch"
    root.mkdir()
    expected = {}
    for i in range(150):
        data = os.urandom(2000 + i)
        (root / f"file-{i:03d}.bin").write_bytes(data)
        expected[f"file-{i:03d}.bin"] = data

    def some_synced() -> bool:
        stored = len(pair.a.call("ls", {"path": "/Sync/batch"}))
        return 5 <= stored < 140

    wait_for(some_synced, timeout=60, what="alice part-way through")
    pair.a.kill()
    pair.restart(pair.a)
    wait_in_sync(pair, "batch", timeout=180, until=lambda s: len(s) == 150)
    for name, data in expected.items():
        assert (pair.b_dir / "batch" / name).read_bytes() == data
    for name in expected:
        versions = pair.b.call("versions", {"path": f"/Sync/batch/{name}"})
        assert len(versions) == 1, (name, versions)
    assert sorted(os.listdir(pair.a_dir / "batch")) == sorted(expected)


@pytest.mark.slow
def test_ten_thousand_small_files_arrive_whole(pair: SyncPair) -> None:
    """Heavy (minutes): run under `flock /tmp/team/cpu.lock`."""
    root = pair.a_dir / "many"
    for d in range(100):
        folder = root / f"d{d:02d}"
        folder.mkdir(parents=True)
        for f in range(100):
            (folder / f"f{f:02d}.txt").write_bytes(f"{d}/{f}\n".encode() * 8)
    state = wait_in_sync(pair, "many", timeout=1500, until=lambda s: len(s) == 10_100)
    assert sum(1 for v in state.values() if v[0] == "file") == 10_000
    assert (pair.b_dir / "many" / "d42" / "f07.txt").read_bytes() == b"42/7\n" * 8
