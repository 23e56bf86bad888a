"""Nudges: a change on one device reaches the other long before its next replication poll.

Two real daemons and real nodes; the poll interval is set to 10 minutes, so the other device
can only learn of the change in time through the nudge its node receives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import helpers_daemon
import pytest
from helpers_daemon import DeviceFactory
from helpers_nodes import NodeFactory, write_nodes_toml


@pytest.fixture
def slow_polling(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    plain = helpers_daemon.cli_env

    def env(home: Path) -> dict[str, str]:
        values = plain(home)
        values["PERMACLOUD_REPLICATION_INTERVAL"] = "600"
        return values

    monkeypatch.setattr(helpers_daemon, "cli_env", env)
    yield


def test_a_put_reaches_the_other_device_by_nudge_not_by_polling(
    tmp_path: Path, node_factory: NodeFactory, slow_polling: None
) -> None:
    nodes_file = write_nodes_toml(tmp_path / "nodes.toml", node_factory.start_many(6))
    devices = DeviceFactory(tmp_path / "devices")
    alice = devices.init("alice", nodes_file).start()
    bob = devices.join("bob", alice.cli_json("invite")["code"]).start()
    try:
        for i in range(4):
            source = tmp_path / f"note-{i}.txt"
            source.write_bytes(f"note {i}".encode())
            alice.cli("put", str(source), f"/note-{i}.txt")
            # The first one may also ride on Bob's start-up rounds; the others cannot.
            bob.wait_until(
                lambda i=i: f"note-{i}.txt" in {r["name"] for r in bob.call("ls", {"path": "/"})},
                60 if i == 0 else 20,
                f"note-{i}.txt on bob",
            )
    finally:
        for device in (alice, bob):
            device.stop()
