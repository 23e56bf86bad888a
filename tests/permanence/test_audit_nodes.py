"""Audits end to end: a real daemon audits 11 real node processes; a node that deleted half its
shares and one whose shares turned into random bytes (both done on disk, in their data dirs)
fail their audits, fall below the disqualification threshold, get no new shares, their shares
count as lost so the checker repairs the files onto other nodes, and they stay disqualified
across a daemon restart. Honest nodes are vetted and never fail.

11 nodes (plus the device's own) so that 10 honest nodes remain for a full 3-of-10 repair."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_daemon import Device, DeviceFactory
from helpers_nodes import NodeFactory, NodeProcess, write_nodes_toml


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[DeviceFactory]:
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()


def share_files(node: NodeProcess) -> list[Path]:
    return sorted((node.data_dir / "store" / "shares").glob("*/*/*/data"))


def share_dirs(node: NodeProcess) -> list[Path]:
    """Storage index dirs holding at least one share file."""
    return sorted({p.parent.parent for p in share_files(node)})


def by_id(device: Device) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in device.call("nodes")}


def put_files(device: Device, tmp_path: Path, prefix: str, count: int) -> dict[str, bytes]:
    files = {}
    for index in range(count):
        data = os.urandom(150_000 + index)
        local = tmp_path / f"{prefix}-{index}.bin"
        local.write_bytes(data)
        device.cli("put", str(local), f"/{prefix}-{index}.bin")
        files[f"/{prefix}-{index}.bin"] = data
    return files


def test_lying_nodes_fail_audits_and_get_no_new_shares(
    node_factory: NodeFactory,
    devices: DeviceFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERMACLOUD_AUDIT_INTERVAL", "0.3")
    monkeypatch.setenv("PERMACLOUD_AUDIT_NODES", "0")  # every node every round
    monkeypatch.setenv("PERMACLOUD_REPAIR_THRESHOLD", "10")  # repair any file below 10 nodes
    nodes = node_factory.start_many(11)
    alice = devices.init("alice", write_nodes_toml(tmp_path / "nodes.toml", nodes)).start()
    files = put_files(alice, tmp_path, "first", 8)

    # The auditor's own loop vets every node that holds shares (3 passed audits each).
    holders = [node for node in nodes if share_files(node)]
    assert len(holders) >= 8
    alice.wait_until(
        lambda: all(by_id(alice)[n.node_id]["vetted"] for n in holders),
        timeout=60,
        what="every holder vetted",
    )

    # One node drops half its shares, another keeps its files but their bytes turn random.
    holders.sort(key=lambda n: -len(share_files(n)))
    dropper, scrambler = holders[0], holders[1]
    dropped = share_files(dropper)
    assert len(dropped) >= 4
    for path in dropped[::2]:
        path.unlink()
    for path in share_files(scrambler):
        path.write_bytes(os.urandom(path.stat().st_size))

    liars = {dropper.node_id, scrambler.node_id}

    def liars_bad() -> bool:
        alice.call("audit")
        table = by_id(alice)
        return all(table[n]["bad"] for n in liars)

    alice.wait_until(liars_bad, timeout=60, what="both liars disqualified")
    table = by_id(alice)
    for node_id, row in table.items():
        if node_id in liars:
            assert row["audits_failed"] >= 1 and row["audit_score"] < 0.6
            assert row["last_failure"]
        else:
            assert row["bad"] is False and row["audits_failed"] == 0, row

    # The CLI shows the scores.
    listing = alice.cli_json("nodes")
    assert {row["id"] for row in listing if row["bad"]} == liars
    text = alice.cli("nodes").stdout
    assert "bad" in text and "audit" in text

    # New uploads avoid the liars entirely.
    before = {n.node_id: len(share_files(n)) for n in (dropper, scrambler)}
    put_files(alice, tmp_path, "second", 4)
    assert {n.node_id: len(share_files(n)) for n in (dropper, scrambler)} == before

    # The checker counts the liars' shares as lost and repairs every file they held shares of
    # onto honest nodes: 10 distinct healthy nodes again, none of them a liar.
    liar_held = {si_dir.name for node in (dropper, scrambler) for si_dir in share_dirs(node)}
    assert liar_held
    repaired = {row["path"]: row for row in alice.call("health.repair")["files"]}
    assert all(row["healthy"] == 10 for row in repaired.values()), repaired
    assert sum(row["added"] for row in repaired.values()) >= len(liar_held)
    honest = [n for n in nodes if n.node_id not in liars]
    for si in liar_held:
        holders_now = [n for n in honest if any(d.name == si for d in share_dirs(n))]
        own = [d for d in (alice.home).rglob(f"shares/*/{si}")]
        assert len(holders_now) + (1 if own else 0) >= 10, si

    # Every file still reads back (downloads skip the bad shares).
    for name, data in list(files.items())[:3]:
        out = tmp_path / "out.bin"
        alice.cli("get", name, str(out))
        assert out.read_bytes() == data

    # Scores survive a restart of the daemon.
    alice.stop()
    alice.start()
    assert {n for n, row in by_id(alice).items() if row["bad"]} == liars
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not alice.call("audit")["results"]:
        time.sleep(0.2)
    assert {n for n, row in by_id(alice).items() if row["bad"]} == liars
