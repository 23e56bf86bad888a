"""Real daemons of one account finding each other over zeroconf bound to 127.0.0.1, forged
announcements ignored, and an introducer bringing the household's nodes through the account log.

Everything is real: `permacloud` daemon processes, node processes, and python-zeroconf multicast
on the loopback interface only (PERMACLOUD_ZEROCONF_INTERFACES=127.0.0.1, set by cli_env)."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_daemon import Device, DeviceFactory
from helpers_nodes import NodeFactory, NodeProcess, write_nodes_toml
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from desktop.daemon.config import DeviceConfig, load_config, save_config
from desktop.daemon.discovery import SERVICE_TYPE
from desktop.daemon.paths import AppPaths, app_paths
from desktop.net.announce import Announcement, household_tag, tag_key, to_properties
from desktop.net.identity import DeviceKey
from desktop.net.nodes_file import load_nodes_file

BOGUS = "127.0.0.1:9"  # discard port: nothing of ours serves there


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[DeviceFactory]:
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()


@pytest.fixture
def nodes_file(tmp_path: Path, node_factory: NodeFactory) -> Path:
    nodes: list[NodeProcess] = node_factory.start_many(3, quota="1G")
    return write_nodes_toml(tmp_path / "nodes.toml", nodes)


@pytest.fixture
def loopback_zeroconf() -> Iterator[Zeroconf]:
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    yield zc
    zc.close()


def _paths(device: Device) -> AppPaths:
    return app_paths({"PERMACLOUD_HOME": str(device.home)})


def _nodes(device: Device) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in device.call("nodes")}


def _self_node(device: Device) -> dict[str, Any]:
    return next(row for row in device.call("nodes") if row["source"] == "self")


def _forget_nodes(device: Device, node_ids: set[str] | None, skip_account_log: bool) -> None:
    """Edit a stopped device's index (and config) so it does not know these nodes (None: all)."""
    paths = _paths(device)
    config: DeviceConfig = load_config(paths.config_file)
    config.known_nodes = [
        k for k in config.known_nodes if node_ids is not None and k.id not in node_ids
    ]
    save_config(paths.config_file, config)
    db = sqlite3.connect(paths.data_dir / "index.sqlite3")
    with db:
        if node_ids is None:
            db.execute("DELETE FROM nodes")
        else:
            db.executemany("DELETE FROM nodes WHERE id = ?", [(n,) for n in node_ids])
        db.execute("DELETE FROM meta WHERE key = 'account_log_seq'")
        if skip_account_log:
            # Past every record: the account log cannot tell this device about the node.
            db.execute("INSERT INTO meta VALUES ('account_log_seq', ?)", (str(2**62),))
    db.close()


def _account_tag_key(device: Device) -> tuple[str, bytes]:
    paths = _paths(device)
    secrets = json.loads((paths.data_dir / "secrets.json").read_text())
    account_id = load_config(paths.config_file).account_id
    return account_id, tag_key(base64.b64decode(secrets["account-secret"]))


def _register(zc: Zeroconf, instance: str, announcement: Announcement) -> None:
    zc.register_service(
        ServiceInfo(
            SERVICE_TYPE,
            f"{instance}.{SERVICE_TYPE}",
            port=9,
            properties=to_properties(announcement),
            server=f"{instance}.local.",
            addresses=[bytes([127, 0, 0, 1])],
        )
    )


def _signed(
    signer: DeviceKey, node_id: str, public_key: bytes, key: bytes, account_id: str
) -> Announcement:
    """An announcement claiming `node_id`/`public_key`, signed by whoever `signer` is."""
    now = int(time.time())
    tag = household_tag(key, account_id, node_id, now)
    unsigned = Announcement(node_id, public_key, (BOGUS,), now, tag, b"")
    return Announcement(
        node_id, public_key, (BOGUS,), now, tag, signer.sign(unsigned.signed_bytes())
    )


def test_two_devices_find_each_other_on_the_lan_and_ignore_forgeries(
    devices: DeviceFactory, nodes_file: Path, loopback_zeroconf: Zeroconf
) -> None:
    alice = devices.init("alice", nodes_file).start()
    code = alice.cli_json("invite")["code"]
    bob = devices.join("bob", code)
    alice_node = _self_node(alice)
    _forget_nodes(bob, {alice_node["id"]}, skip_account_log=True)

    # Forgeries on the LAN before bob starts: both carry the right household tag.
    account_id, key = _account_tag_key(bob)
    stranger = DeviceKey.generate()
    _register(
        loopback_zeroconf,
        "stranger",
        _signed(stranger, stranger.node_id, stranger.public_bytes, key, account_id),
    )
    alice_public = base64.b64decode(
        json.loads((_paths(alice).data_dir / "secrets.json").read_text())["device-key"]
    )
    alice_key = DeviceKey.from_seed(alice_public).public_bytes
    _register(
        loopback_zeroconf,
        "impostor",
        _signed(stranger, alice_node["id"], alice_key, key, account_id),
    )

    bob.start()
    seen = bob.wait_until(
        lambda: _nodes(bob).get(alice_node["id"], {}).get("source") == "lan" and _nodes(bob),
        timeout=30,
        what="alice's node found on the LAN",
    )
    assert seen[alice_node["id"]]["address"] == alice_node["address"]
    bob_id = _self_node(bob)["id"]
    alice.wait_until(
        lambda: _nodes(alice).get(bob_id, {}).get("source") == "lan",
        timeout=30,
        what="bob's node found on the LAN",
    )
    bob.wait_until(
        lambda: _nodes(bob)[alice_node["id"]]["online"], what="alice's node online for bob"
    )

    def rejections() -> list[str]:
        return [line for line in bob.log().splitlines() if "ignoring LAN announcement" in line]

    bob.wait_until(lambda: len(rejections()) >= 2, timeout=30, what="forgeries rejected")
    lines = rejections()
    assert [line for line in lines if stranger.node_id in line and "unknown key" in line]
    assert [line for line in lines if "impostor" in line and "bad signature" in line]
    assert len([line for line in lines if stranger.node_id in line]) == 1  # logged once
    final = _nodes(bob)
    assert stranger.node_id not in final
    assert final[alice_node["id"]]["address"] == alice_node["address"] != BOGUS


def test_an_introducer_brings_the_households_nodes(
    devices: DeviceFactory, nodes_file: Path
) -> None:
    """A device elsewhere (no LAN discovery) knowing nothing but one household node."""
    alice = devices.init("alice", nodes_file).start()
    storage = {node.node_id for node in load_nodes_file(nodes_file)}
    code = alice.cli_json("invite")["code"]
    bob = devices.join("bob", code)
    alice_node = _self_node(alice)
    _forget_nodes(bob, None, skip_account_log=False)
    paths = _paths(bob)
    config = load_config(paths.config_file)
    assert config.known_nodes == []
    config.discovery = False
    config.introducers = [f"{alice_node['id']}@{alice_node['address']}"]
    save_config(paths.config_file, config)

    bob.start()
    found = bob.wait_until(
        lambda: storage <= set(_nodes(bob)) and _nodes(bob),
        timeout=30,
        what="the household's storage nodes via the introducer",
    )
    assert {found[n]["source"] for n in storage} == {"account"}
    # The introducer entered as "introducer"; the account log may since have restated it.
    assert found[alice_node["id"]]["source"] in ("introducer", "account")
    assert "added 1 introducer node(s)" in bob.log()
    assert "on the LAN" not in bob.log()  # discovery = false: no zeroconf at all
