"""Two real devices (daemons with their own PERMACLOUD_HOME) and real nodes on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_daemon import Device, DeviceFactory, run_cli
from helpers_nodes import NodeFactory, NodeProcess, write_nodes_toml

from desktop.core.errors import PermaCloudError
from desktop.core.namespace import decode_entry
from desktop.daemon.account import RecordCipher
from desktop.daemon.ipc_client import DaemonError


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[DeviceFactory]:
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()


@pytest.fixture
def nodes(node_factory: NodeFactory) -> list[NodeProcess]:
    return node_factory.start_many(8, quota="2G")


@pytest.fixture
def nodes_file(tmp_path: Path, nodes: list[NodeProcess]) -> Path:
    return write_nodes_toml(tmp_path / "nodes.toml", nodes)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _names(device: Device, folder: str) -> set[str]:
    return {row["name"] for row in device.call("ls", {"path": folder})}


def _pair(devices: DeviceFactory, nodes_file: Path) -> tuple[Device, Device]:
    alice = devices.init("alice", nodes_file).start()
    code = alice.cli_json("invite")["code"]
    bob = devices.join("bob", code).start()
    return alice, bob


def test_two_devices_share_one_namespace(
    devices: DeviceFactory, nodes_file: Path, tmp_path: Path
) -> None:
    alice, bob = _pair(devices, nodes_file)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    local = _write(tmp_path / "report.pdf", payload)
    alice.cli("mkdir", "/docs")
    alice.cli("put", str(local), "/docs/report.pdf")

    bob.wait_until(lambda: "report.pdf" in _names(bob, "/docs"), what="report.pdf on bob")
    out = tmp_path / "from-bob.pdf"
    bob.cli("get", "/docs/report.pdf", str(out))
    assert out.read_bytes() == payload

    listing = bob.cli_json("ls", "/docs")
    assert listing[0]["size"] == len(payload)

    # A share link reads the file with nothing but the link and the network.
    link = alice.cli("share", "/docs/report.pdf").stdout.strip()
    assert link.startswith("permacloud:pc1r:")
    via_link = tmp_path / "via-link.pdf"
    bob.cli("get", link, str(via_link))
    assert via_link.read_bytes() == payload

    # Edit on bob, history on alice, restore the first version.
    _write(local, b"second version")
    bob.cli("put", str(local), "/docs/report.pdf")
    alice.wait_until(
        lambda: len(alice.call("versions", {"path": "/docs/report.pdf"})) == 2, what="2 versions"
    )
    alice.cli("restore", "/docs/report.pdf", "--version", "1")
    back = tmp_path / "restored.pdf"
    bob.wait_until(
        lambda: len(bob.call("versions", {"path": "/docs/report.pdf"})) == 3, what="restore"
    )
    bob.cli("get", "/docs/report.pdf", str(back))
    assert back.read_bytes() == payload

    # rm on alice disappears on bob, and stays in history.
    alice.cli("rm", "/docs/report.pdf")
    bob.wait_until(lambda: "report.pdf" not in _names(bob, "/docs"), what="rm on bob")
    assert bob.call("versions", {"path": "/docs/report.pdf"})[-1]["deleted"] is True

    status = bob.cli_json("status")
    assert status["nodes"]["online"] >= 8
    assert status["device"]["account"] == alice.cli_json("status")["device"]["account"]


def test_concurrent_edits_keep_both_as_a_conflict_copy(
    devices: DeviceFactory, nodes_file: Path, tmp_path: Path
) -> None:
    alice, bob = _pair(devices, nodes_file)
    for device in (alice, bob):
        device.cli("mkdir", "/notes") if device is alice else None
    bob.wait_until(lambda: "notes" in _names(bob, "/"), what="folder on bob")
    alice.call("sync.pause")
    bob.call("sync.pause")
    alice.cli("put", str(_write(tmp_path / "a.txt", b"alice's words")), "/notes/todo.txt")
    bob.cli("put", str(_write(tmp_path / "b.txt", b"bob's words")), "/notes/todo.txt")
    # Equal edits on both sides: no conflict copy for that file.
    same = _write(tmp_path / "same.txt", b"identical")
    alice.cli("put", str(same), "/notes/same.txt")
    bob.cli("put", str(same), "/notes/same.txt")
    alice.call("sync.resume")
    bob.call("sync.resume")

    def settled(device: Device) -> set[str] | None:
        names = _names(device, "/notes")
        return names if len(names) == 3 else None

    names_a = alice.wait_until(lambda: settled(alice), what="conflict copy on alice")
    names_b = bob.wait_until(lambda: settled(bob), what="conflict copy on bob")
    assert names_a == names_b
    copies = [n for n in names_a if ".sync-conflict-" in n]
    assert len(copies) == 1 and copies[0].startswith("todo.sync-conflict-")
    contents = set()
    for name in ("todo.txt", copies[0]):
        out = tmp_path / f"check-{name}"
        alice.cli("get", f"/notes/{name}", str(out))
        contents.add(out.read_bytes())
    assert contents == {b"alice's words", b"bob's words"}
    assert alice.cli_json("status")["sync"]["conflicts"] == 1


def _put_in_thread(device: Device, local: Path, path: str) -> dict[str, Any]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = device.call("put", {"local": str(local), "path": path})
        except Exception as error:  # the daemon dies under it: any error is the expected end
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    outcome["thread"] = thread
    return outcome


def test_kill_9_during_put_keeps_the_namespace_consistent(
    devices: DeviceFactory, nodes_file: Path, tmp_path: Path
) -> None:
    alice = devices.init("alice", nodes_file).start()
    small = _write(tmp_path / "small.txt", b"acknowledged before the crash")
    alice.cli("put", str(small), "/kept.txt")  # acknowledged, then the daemon dies at once
    big = _write(tmp_path / "big.bin", os.urandom(64 * 1024 * 1024))
    pending = _put_in_thread(alice, big, "/big.bin")
    time.sleep(0.4)
    alice.kill()
    pending["thread"].join(30)
    assert "result" not in pending or pending["result"]["size"] == 64 * 1024 * 1024

    alice.start()
    names = _names(alice, "/")
    assert "kept.txt" in names
    out = tmp_path / "kept.out"
    alice.cli("get", "/kept.txt", str(out))
    assert out.read_bytes() == small.read_bytes()
    if "big.bin" in names:  # acknowledged just before the kill: then it must be whole
        whole = tmp_path / "big.out"
        alice.cli("get", "/big.bin", str(whole))
        assert whole.read_bytes() == big.read_bytes()
    # The acknowledged entry reaches a device that joins after the crash.
    code = alice.cli_json("invite")["code"]
    bob = devices.join("bob", code).start()
    bob.wait_until(lambda: "kept.txt" in _names(bob, "/"), what="kept.txt on bob")


def test_invites_wrong_expired_reused(
    devices: DeviceFactory, nodes_file: Path, tmp_path: Path
) -> None:
    alice = devices.init("alice", nodes_file).start()
    code = alice.cli_json("invite")["code"]
    typo = code[:-3] + ("x" if code[-3] != "x" else "y") + code[-2:]
    bad = run_cli(tmp_path / "typo", "join", typo, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and "invite" in bad.stderr.lower()

    run_cli(tmp_path / "first", "join", code)
    reused = run_cli(tmp_path / "second", "join", code, check=False)
    assert reused.returncode != 0 and "already used" in reused.stderr
    assert "Traceback" not in reused.stderr

    short = alice.cli_json("invite", "--ttl", "1")["code"]
    time.sleep(1.5)
    expired = run_cli(tmp_path / "late", "join", short, check=False)
    assert expired.returncode != 0 and "expired" in expired.stderr
    assert not (tmp_path / "late" / "config" / "config.toml").exists()


def test_bad_requests_and_a_second_daemon_are_clear_errors(
    devices: DeviceFactory, nodes_file: Path
) -> None:
    alice = devices.init("alice", nodes_file).start()
    with pytest.raises(DaemonError, match="unknown method"):
        alice.call("format-disk")
    with pytest.raises(DaemonError, match="parameter 'path' must be str"):
        alice.call("ls", {"path": 42})
    with pytest.raises(DaemonError, match="no such file or folder"):
        alice.call("ls", {"path": "/nope"})
    bad_path = alice.cli("ls", "/a/../b", check=False)
    assert bad_path.returncode != 0 and "Traceback" not in bad_path.stderr
    second = run_cli(alice.home, "daemon", check=False, timeout=60)
    assert second.returncode != 0
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    assert alice.call("status")["device"]["name"] == "alice"


def _record_frames(blob: bytes) -> list[tuple[int, int, bytes]]:
    """(frame offset, seq, data) of a node's record log (desktop/agent/records.py layout)."""
    out, offset = [], 0
    while offset + 16 <= len(blob):
        seq = int.from_bytes(blob[offset : offset + 8], "big")
        length = int.from_bytes(blob[offset + 8 : offset + 12], "big")
        out.append((offset, seq, blob[offset + 16 : offset + 16 + length]))
        offset += 16 + length
    return out


def _rewrite_frame(log: Path, offset: int, seq: int, data: bytes) -> None:
    """A forger with disk access: same-length data in place, with a matching CRC."""
    head = seq.to_bytes(8, "big") + len(data).to_bytes(4, "big")
    crc = zlib.crc32(data, zlib.crc32(head)).to_bytes(4, "big")
    with open(log, "r+b") as handle:
        handle.seek(offset)
        handle.write(head + crc + data)


def test_tampered_log_entry_from_a_node_is_rejected(
    devices: DeviceFactory, nodes_file: Path, nodes: list[NodeProcess], tmp_path: Path
) -> None:
    """A node operator who even holds the account's record key cannot forge a device's entry:
    entries are signed by the device key and chained."""
    alice, bob = _pair(devices, nodes_file)
    alice.cli("put", str(_write(tmp_path / "a.txt", b"genuine")), "/a.txt")
    bob.wait_until(lambda: "a.txt" in _names(bob, "/"), what="a.txt on bob")
    bob.call("sync.pause")
    alice.cli("put", str(_write(tmp_path / "b.txt", b"second")), "/b.txt")
    time.sleep(2)  # alice publishes entry 2

    # Every node's copy of alice's entry 2 is replaced by a forgery under the real record key.
    secrets = (alice.home / "data" / "secrets.json").read_text()
    account_secret = base64.b64decode(json.loads(secrets)["account-secret"])
    cipher = RecordCipher(account_secret)
    forged_any = False
    for node in nodes:
        for log in (node.data_dir / "records").glob("*.log"):
            writer = log.stem
            for offset, seq, data in _record_frames(log.read_bytes()):
                if seq != 2:
                    continue
                try:
                    entry_bytes = cipher.open(writer, 2, data)
                except Exception:
                    continue
                entry = decode_entry(entry_bytes)
                forged = entry_bytes.replace(b"/b.txt", b"/x.txt")
                assert decode_entry(forged).seq == entry.seq
                _rewrite_frame(log, offset, seq, cipher.seal(writer, 2, forged))
                forged_any = True
    assert forged_any
    bob.call("sync.resume")
    time.sleep(3)
    names = _names(bob, "/")
    assert "x.txt" not in names and "a.txt" in names
    assert "rejected" in bob.log().lower() or "tampered" in bob.log().lower()


def test_deleted_index_is_rebuilt_from_the_network(
    devices: DeviceFactory, nodes_file: Path, tmp_path: Path
) -> None:
    alice, bob = _pair(devices, nodes_file)
    alice.cli("mkdir", "/photos")
    alice.cli("put", str(_write(tmp_path / "p.jpg", b"jpeg bytes")), "/photos/p.jpg")
    bob.cli("put", str(_write(tmp_path / "b.txt", b"from bob")), "/b.txt")
    alice.wait_until(lambda: "b.txt" in _names(alice, "/"), what="bob's file on alice")
    time.sleep(1.5)  # alice's entries are published
    alice.stop()
    for leftover in (alice.home / "data").glob("index.sqlite3*"):
        leftover.unlink()
    alice.start()
    assert "p.jpg" in _names(alice, "/photos")
    assert "b.txt" in _names(alice, "/")
    # Alice goes on writing after her own entries: no fork, bob sees the new one.
    alice.cli("put", str(_write(tmp_path / "new.txt", b"after rebuild")), "/new.txt")
    bob.wait_until(lambda: "new.txt" in _names(bob, "/"), what="post-rebuild put on bob")
    assert "Traceback" not in bob.log() and "tampered" not in bob.log().lower()


def test_a_late_device_starts_from_a_snapshot(
    devices: DeviceFactory, nodes_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With compaction every 5 entries, alice's early entries are pruned from the nodes; a
    device joining later still gets the whole namespace, from her signed snapshot."""
    monkeypatch.setenv("PERMACLOUD_SNAPSHOT_EVERY", "5")
    alice = devices.init("alice", nodes_file).start()
    for i in range(7):
        alice.cli("mkdir", f"/folder{i}")
    alice.wait_until(
        lambda: "log compacted" in json.dumps(alice.call("activity", {"limit": 50})),
        what="a snapshot",
    )
    code = alice.cli_json("invite")["code"]
    bob = devices.join("bob", code).start()
    bob.wait_until(lambda: len(_names(bob, "/")) == 7, what="all folders on bob")
    assert "from its snapshot" in bob.log()
    alice.cli("mkdir", "/after")
    bob.wait_until(lambda: "after" in _names(bob, "/"), what="entry after the snapshot")


def test_overlapping_replication_rounds_do_not_hurt_the_daemon(
    devices: DeviceFactory, nodes_file: Path, tmp_path: Path
) -> None:
    """`replicate` from IPC while the background loop runs, and records published twice
    (sealing is deterministic, so a second copy is a no-op on the nodes)."""
    alice = devices.init("alice", nodes_file).start()
    errors: list[BaseException] = []

    def hammer() -> None:
        for _ in range(5):
            try:
                alice.call("replicate")
            except Exception as error:
                errors.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for i in range(5):
        alice.cli("mkdir", f"/d{i}")
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert alice.process is not None and alice.process.poll() is None
    assert alice.call("replicate")["pending"] == 0
    assert len(_names(alice, "/")) == 5


def test_record_sealing_is_deterministic_and_bound_to_its_place() -> None:
    cipher = RecordCipher(b"\x01" * 32)
    sealed = cipher.seal("w" * 32, 7, b"entry")
    assert sealed == cipher.seal("w" * 32, 7, b"entry")
    assert sealed != cipher.seal("w" * 32, 7, b"other")
    assert cipher.open("w" * 32, 7, sealed) == b"entry"
    with pytest.raises(PermaCloudError, match="fails authentication"):
        cipher.open("w" * 32, 8, sealed)


def test_a_node_invite_lends_another_devices_node_to_the_household(
    devices: DeviceFactory, nodes_file: Path, tmp_path: Path
) -> None:
    alice = devices.init("alice", nodes_file).start()
    carol = devices.init("carol", nodes_file)  # her own account; not started yet
    code = alice.cli_json("invite", "--kind", "node")["code"]
    carol.cli("join", code, "--name", "carol")
    carol.start()
    carol_node = carol.call("status")["node"]["id"]
    assert carol.call("status")["device"]["account"] != alice.call("status")["device"]["account"]
    alice_nodes = {n["id"]: n for n in alice.call("nodes")}
    assert carol_node in alice_nodes
    assert any(n["source"] == "household" for n in carol.call("nodes"))
    # A device invite is not a node invite: joining an already set-up device with it fails.
    device_code = alice.cli_json("invite")["code"]
    refused = carol.cli("join", device_code, check=False)
    assert refused.returncode != 0 and "already set up" in refused.stderr
