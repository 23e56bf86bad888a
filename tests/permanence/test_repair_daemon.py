"""Repair with real nodes and a real daemon: 4 of a 3-of-10 file's 10 nodes die, the checker
notices and regenerates the lost shares on other nodes; the file reads back.

Fourteen nodes (plus the device's own): with one share per node, 10 distinct live nodes after
4 of them die need at least 14 nodes in all (with only 10, repair tops out at the 6-7 left)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_daemon import Device, DeviceFactory
from helpers_nodes import NodeFactory, NodeProcess, write_nodes_toml
from permanence_kit import shares_on_disk, storage_index


@pytest.fixture
def devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeviceFactory]:
    monkeypatch.setenv("PERMACLOUD_CHECK_INTERVAL", "1")
    monkeypatch.setenv("PERMACLOUD_VERIFY_EVERY", "1")
    monkeypatch.setenv("PERMACLOUD_REPAIR_GRACE", "0")  # killed nodes count as lost at once
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()


def _data_dirs(nodes: list[NodeProcess], device: Device) -> dict[str, Path]:
    dirs = {node.node_id: node.data_dir for node in nodes}
    dirs["self"] = device.home / "data" / "node"
    return dirs


def _distinct(found: dict[str, list[int]], alive: set[str]) -> int:
    return len({n for n in found if n in alive})


def test_checker_repairs_after_four_nodes_die(
    node_factory: NodeFactory, devices: DeviceFactory, tmp_path: Path
) -> None:
    nodes = node_factory.start_many(14, quota="1G")
    alice = devices.init("alice", write_nodes_toml(tmp_path / "nodes.toml", nodes)).start()
    payload = os.urandom(5 * 1024 * 1024 + 333)  # 3 segments: shares > 1 MiB (streamed repair)
    small = os.urandom(40_000)  # whole-share repair path
    (tmp_path / "big.bin").write_bytes(payload)
    (tmp_path / "small.bin").write_bytes(small)
    alice.cli("put", str(tmp_path / "big.bin"), "/big.bin")
    alice.cli("put", str(tmp_path / "small.bin"), "/small.bin")

    dirs = _data_dirs(nodes, alice)
    by_id = {node.node_id: node for node in nodes}
    big_si, small_si = storage_index(alice, "/big.bin"), storage_index(alice, "/small.bin")
    before = shares_on_disk(dirs, big_si)
    assert len(before) >= 10, before
    # Usually 4 of 10; one more if a spare share was sealed before it could be cancelled
    # (11 holders), so that 6 are left: below the repair threshold of 7.
    holders = [n for n in before if n in by_id]
    victims = holders[: len(before) - 6]
    for node_id in victims:
        by_id[node_id].kill()
    alive = {n for n in dirs if n not in victims}

    def healed() -> bool:
        return _distinct(shares_on_disk(dirs, big_si), alive) >= 10

    alice.wait_until(healed, timeout=60, what="big.bin back on 10 live nodes")
    # The small file lost fewer nodes (maybe none below the threshold): a forced repair tops
    # it up to 10 through the whole-share path.
    forced = alice.cli_json("repair", "/small.bin", "--force")["files"]
    assert forced[0]["healthy"] == 10
    assert _distinct(shares_on_disk(dirs, small_si), alive) >= 10
    status = alice.call("health.status")
    rows = {row["path"]: row for row in status["files"]}
    assert rows["/big.bin"]["healthy"] == 10 and rows["/big.bin"]["status"] == "healthy"
    assert rows["/big.bin"]["repaired"] is not None
    assert alice.call("status")["health"]["rounds"] >= 1

    # New shares went to other nodes, one per node, and nothing was written twice.
    after = shares_on_disk(dirs, big_si)
    assert not set(after) & set(victims) - set(before)
    assert all(len(shnums) == 1 for shnums in after.values())

    out = tmp_path / "back.bin"
    alice.cli("get", "/big.bin", str(out))
    assert out.read_bytes() == payload
    alice.cli("get", "/small.bin", str(tmp_path / "small-back.bin"))
    assert (tmp_path / "small-back.bin").read_bytes() == small

    checked = alice.cli_json("check", "/big.bin")["files"]
    assert [(r["path"], r["healthy"], r["status"]) for r in checked] == [
        ("/big.bin", 10, "healthy")
    ]
