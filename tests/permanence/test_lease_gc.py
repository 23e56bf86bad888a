"""Leases with real nodes and a real daemon: the checker renews what the account keeps; a
deleted file (not kept by the retention policy) is no longer renewed and the nodes' lease sweep
collects its shares. Leases of 6 s and 1 s check rounds stand in for a year and an hour."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_daemon import DeviceFactory
from helpers_nodes import NodeFactory, write_nodes_toml
from permanence_kit import shares_on_disk, storage_index

LEASE = 6


@pytest.fixture
def devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeviceFactory]:
    monkeypatch.setenv("PERMACLOUD_CHECK_INTERVAL", "1")
    monkeypatch.setenv("PERMACLOUD_LEASE_SECONDS", str(LEASE))
    # The default version count (100) stays: it must not keep a deleted file's content alive.
    # Only the age rule is cut to 0 days, so the deleted file is not in its restore window.
    monkeypatch.delenv("PERMACLOUD_KEEP_VERSIONS", raising=False)
    monkeypatch.setenv("PERMACLOUD_KEEP_DAYS", "0")
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()


def test_deleted_file_expires_kept_file_does_not(
    node_factory: NodeFactory, devices: DeviceFactory, tmp_path: Path
) -> None:
    nodes = [node_factory.start(f"node-{i:02d}", sweep_interval=0.5) for i in range(10)]
    alice = devices.init("alice", write_nodes_toml(tmp_path / "nodes.toml", nodes)).start()
    for name in ("keep.bin", "gone.bin"):
        (tmp_path / name).write_bytes(os.urandom(50_000))
        alice.cli("put", str(tmp_path / name), f"/{name}")
    dirs = {node.node_id: node.data_dir for node in nodes}
    keep_si, gone_si = storage_index(alice, "/keep.bin"), storage_index(alice, "/gone.bin")
    kept_before = shares_on_disk(dirs, keep_si)
    assert len(shares_on_disk(dirs, gone_si)) >= 9 and len(kept_before) >= 9
    alice.cli("rm", "/gone.bin")

    alice.wait_until(
        lambda: not shares_on_disk(dirs, gone_si), timeout=4 * LEASE, what="gone.bin collected"
    )
    time.sleep(LEASE)  # well past the upload's lease: only renewals keep keep.bin alive
    assert shares_on_disk(dirs, keep_si) == kept_before
    out = tmp_path / "back.bin"
    alice.cli("get", "/keep.bin", str(out))
    assert out.read_bytes() == (tmp_path / "keep.bin").read_bytes()
