"""Two devices of one account repair the same file at the same moment (real daemons, real
nodes): both pick the same node for each share number and writes are idempotent under the
account's storage key, so the file ends on 10 distinct nodes with no extra share."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_daemon import DeviceFactory
from helpers_nodes import NodeFactory, write_nodes_toml
from permanence_kit import shares_on_disk, storage_index


@pytest.fixture
def devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeviceFactory]:
    monkeypatch.setenv("PERMACLOUD_CHECK_INTERVAL", "3600")  # only the explicit repairs run
    monkeypatch.setenv("PERMACLOUD_REPAIR_GRACE", "0")  # killed nodes count as lost at once
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()


def test_concurrent_repairs_converge(
    node_factory: NodeFactory, devices: DeviceFactory, tmp_path: Path
) -> None:
    nodes = node_factory.start_many(14, quota="1G")
    alice = devices.init("alice", write_nodes_toml(tmp_path / "nodes.toml", nodes)).start()
    bob = devices.join("bob", alice.cli_json("invite")["code"]).start()
    payload = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "f.bin").write_bytes(payload)
    alice.cli("put", str(tmp_path / "f.bin"), "/f.bin")
    bob.wait_until(lambda: bob.call("ls", {"path": "/"}), what="f.bin on bob")

    # Convergence needs one view of the network: each device must know the other's own node
    # (learnt through the account log), or each ranks its own node first for some share number.
    def same_nodes() -> bool:
        known = [{n["id"] for n in d.call("nodes")} for d in (alice, bob)]
        return known[0] == known[1] and len(known[0]) == 16

    bob.wait_until(same_nodes, what="both devices to know the same 16 nodes")

    dirs = {node.node_id: node.data_dir for node in nodes}
    dirs["alice"] = alice.home / "data" / "node"
    dirs["bob"] = bob.home / "data" / "node"
    si = storage_index(alice, "/f.bin")
    by_id = {node.node_id: node for node in nodes}
    # Usually 4 of 10; one more if a spare share was sealed before it could be cancelled
    # (11 holders), so that 6 are left: below the repair threshold of 7.
    holders = [n for n in shares_on_disk(dirs, si) if n in by_id]
    victims = holders[: len(shares_on_disk(dirs, si)) - 6]
    for node_id in victims:
        by_id[node_id].kill()
        del dirs[node_id]

    # ... and one view of who is online: a device that still counts a killed node as online
    # ranks it, fails to write there, and falls back to a node the other device did not pick.
    def victims_offline(device: Any) -> bool:
        online = {n["id"] for n in device.call("nodes") if n["online"]}
        return not online & set(victims)

    for device in (alice, bob):
        device.wait_until(lambda d=device: victims_offline(d), 60, "the killed nodes offline")

    results: dict[str, Any] = {}

    def repair(name: str) -> None:
        device = alice if name == "alice" else bob
        results[name] = device.call("health.repair", {"path": "/f.bin"})

    threads = [threading.Thread(target=repair, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(results) == {"alice", "bob"}

    found = shares_on_disk(dirs, si)
    assert len(found) == 10, found
    assert sum(len(shnums) for shnums in found.values()) == 10, found
    assert len({s for shnums in found.values() for s in shnums}) == 10
    out = tmp_path / "back.bin"
    bob.cli("get", "/f.bin", str(out))
    assert out.read_bytes() == payload
