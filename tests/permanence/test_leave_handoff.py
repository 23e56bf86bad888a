"""`permacloud agent leave` with real processes: carol's daemon runs a node that holds shares of
bob's files (another account) and of her own. While no other node has room, leave fails with a
clear error and keeps serving everything; once there is room, a rerun hands every share over
under its original owner, stops the node and sets sharing to never. Every file still reads back
and is healthy, and bob (the owner) can renew the leases of the handed-over shares."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_daemon import Device, DeviceFactory
from helpers_nodes import NodeFactory, NodeProcess, write_nodes_toml
from permanence_kit import shares_on_disk, storage_index

from desktop.net.nodes_file import NodeAddress, parse_address, write_nodes_file

LEASE = 90


@pytest.fixture
def devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeviceFactory]:
    monkeypatch.setenv("PERMACLOUD_CHECK_INTERVAL", "3600")  # only explicit checks run
    monkeypatch.setenv("PERMACLOUD_LEASE_SECONDS", str(LEASE))
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()


def node_shares(device: Device) -> list[Path]:
    return sorted((device.home / "data" / "node" / "store" / "shares").glob("*/*/*"))


def handed_over(nodes: list[NodeProcess]) -> list[Path]:
    """meta.json of every share a handoff created (they name their writer)."""
    found = []
    for node in nodes:
        for meta in (node.data_dir / "store" / "shares").glob("*/*/*/meta.json"):
            if "writer" in json.loads(meta.read_text()):
                found.append(meta)
    return found


def restart_all(factory: NodeFactory, nodes: list[NodeProcess], quota: str) -> list[NodeProcess]:
    fresh = []
    for node in nodes:
        node.args = ["--quota", quota]
        fresh.append(factory.restart(node))
    return fresh


def test_leave_hands_every_share_over(
    node_factory: NodeFactory, devices: DeviceFactory, tmp_path: Path
) -> None:
    nodes = node_factory.start_many(10, quota="1G")
    carol = devices.init("carol", write_nodes_toml(tmp_path / "carol.toml", nodes)).start()
    carol.cli("agent", "set", "sharing", "always")
    carol_node = carol.call("status")["node"]
    host, port = parse_address(carol_node["address"])
    bob_nodes = [n.node_address for n in nodes] + [NodeAddress(carol_node["id"], host, port)]
    write_nodes_file(tmp_path / "bob.toml", bob_nodes)
    bob = devices.init("bob", tmp_path / "bob.toml").start()

    payloads = {"/small.bin": os.urandom(40_000), "/big.bin": os.urandom(13 * 1024 * 1024 + 7)}
    for index in range(4):
        payloads[f"/f{index}.bin"] = os.urandom(200_000 + index)
    for path, data in payloads.items():
        local = tmp_path / path.strip("/")
        local.write_bytes(data)
        bob.cli("put", str(local), path)
    (tmp_path / "mine.bin").write_bytes(b"carol's own " * 5000)
    carol.cli("put", str(tmp_path / "mine.bin"), "/mine.bin")
    held = node_shares(carol)
    assert len(held) >= 4, held  # carol's node holds shares of bob's files (and her own)

    # No other node has room: leave fails clearly and keeps serving every share.
    nodes = restart_all(node_factory, nodes, "1K")
    refused = carol.cli("agent", "leave", check=False)
    assert refused.returncode != 0
    assert "could not be handed over" in refused.stderr and "room" in refused.stderr
    assert node_shares(carol) == held
    assert carol.call("agent.status")["sharing"] == "never"
    socket.create_connection((host, port), timeout=5).close()  # still serving

    # Room again: a rerun continues and empties the node.
    nodes = restart_all(node_factory, nodes, "1G")
    result = carol.cli_json("agent", "leave")
    assert result["left"] is True and result["failed"] == 0
    assert result["moved"] + result["already"] == result["shares"] == len(held)
    assert node_shares(carol) == []
    assert carol.call("agent.status")["sharing"] == "never"
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=5).close()
    assert (carol.home / "data" / "node" / "left").exists()

    for path, data in payloads.items():
        out = tmp_path / f"back-{path.strip('/')}"
        bob.cli("get", path, str(out))
        assert out.read_bytes() == data
    carol.cli("get", "/mine.bin", str(tmp_path / "mine-back.bin"))
    assert (tmp_path / "mine-back.bin").read_bytes() == (tmp_path / "mine.bin").read_bytes()
    dirs = {n.node_id: n.data_dir for n in nodes}
    dirs["bob"] = bob.home / "data" / "node"
    for path in payloads:  # still on n distinct nodes (a sealed spare may share a node)
        found = shares_on_disk(dirs, storage_index(bob, path))
        assert len(found) >= 10, (path, found)

    def all_healthy() -> bool:
        # (bob's pool notices the restarted nodes within its 10 s refresh)
        checked = bob.call("health.check")["files"]
        assert {row["path"] for row in checked} == set(payloads)
        return all(row["status"] == "healthy" for row in checked)

    bob.wait_until(all_healthy, timeout=40, what="every file healthy")

    # The owner renews handed-over shares like any other (they are under its key).
    metas = handed_over(nodes)
    assert metas
    before = {m: json.loads(m.read_text())["lease_expires"] for m in metas}
    time.sleep(max(0.0, max(before.values()) - LEASE / 2 - time.time() + 1))
    renewed = bob.call("health.check")["files"]
    assert sum(row["renewed"] for row in renewed) > 0
    after = {m: json.loads(m.read_text())["lease_expires"] for m in metas if m.exists()}
    bobs = [m for m in after if after[m] > before[m]]
    assert bobs, (before, after)

    # Restarting the daemon does not bring the node back.
    carol.stop()
    carol.start()
    assert carol.call("status")["node"]["id"] is None
