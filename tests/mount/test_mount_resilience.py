"""kill -9 with dirty data, nodes down, and two devices, on real mounts and real daemons."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_daemon import DeviceFactory, env
from helpers_nodes import NodeFactory
from mount_testkit import (
    force_unmount,
    is_mounted,
    mount,
    start_device,
    wait_for,
    wait_uploaded,
)


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[DeviceFactory]:
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()
    for name in ("mnt", "mnt-a", "mnt-b"):
        force_unmount(tmp_path / name)


def test_kill_9_keeps_written_data_and_resumes(
    devices: DeviceFactory, node_factory: NodeFactory, tmp_path: Path
) -> None:
    with env({"PERMACLOUD_FUSE_UPLOAD_DELAY": "600"}):  # nothing uploads before the kill
        device = start_device(devices, node_factory, tmp_path)
        mnt = mount(device, tmp_path / "mnt")
    payload = os.urandom(3 * 1024 * 1024 + 1)
    (mnt / "precious.bin").write_bytes(payload)
    assert device.call("mount.status")["pending_files"] == 1
    device.kill()
    with env({"PERMACLOUD_FUSE_UPLOAD_DELAY": "0.3"}):
        device.start()
    # The stale mount was cleared and the folder mounted again; the journal was replayed.
    wait_for(lambda: is_mounted(mnt) and (mnt / "precious.bin").exists(), what="remount")
    assert (mnt / "precious.bin").read_bytes() == payload
    wait_uploaded(device)
    rows = device.call("ls", {"path": "/"})
    assert [r["size"] for r in rows if r["name"] == "precious.bin"] == [len(payload)]


def test_nodes_down_cached_reads_work_uncached_fail_with_eio(
    devices: DeviceFactory, node_factory: NodeFactory, tmp_path: Path
) -> None:
    with env({"PERMACLOUD_FUSE_READ_TIMEOUT": "5"}):
        device = start_device(devices, node_factory, tmp_path)
        mnt = mount(device, tmp_path / "mnt")
    cached = os.urandom(1024 * 1024)
    (mnt / "cached.bin").write_bytes(cached)
    wait_uploaded(device)
    # A file stored by `put` (never read here) is not in the mount's cache.
    source = tmp_path / "uncached.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024))
    device.call("put", {"local": str(source), "path": "/uncached.bin"})
    for node in node_factory.started:
        node.kill()
    assert (mnt / "cached.bin").read_bytes() == cached
    started = time.monotonic()
    with pytest.raises(OSError) as info:
        (mnt / "uncached.bin").read_bytes()
    assert info.value.errno == errno.EIO
    assert time.monotonic() - started < 30
    (mnt / "offline.txt").write_text("written while offline")
    assert (mnt / "offline.txt").read_text() == "written while offline"
    assert device.call("mount.status")["pending_files"] >= 1


def test_two_devices_see_each_others_files(
    devices: DeviceFactory, node_factory: NodeFactory, tmp_path: Path
) -> None:
    alice = start_device(devices, node_factory, tmp_path, name="alice")
    code = alice.cli_json("invite")["code"]
    with env({"PERMACLOUD_FUSE_UPLOAD_DELAY": "0.3"}):
        bob = devices.join("bob", code).start()
    mnt_a = mount(alice, tmp_path / "mnt-a")
    mnt_b = mount(bob, tmp_path / "mnt-b")
    payload = os.urandom(2 * 1024 * 1024 + 7)
    (mnt_a / "shared.bin").write_bytes(payload)
    wait_uploaded(alice)
    wait_for(lambda: (mnt_b / "shared.bin").exists(), timeout=60, what="file on bob")
    assert (mnt_b / "shared.bin").read_bytes() == payload
    link = os.getxattr(mnt_b / "shared.bin", "user.permacloud.link").decode()
    assert link.startswith("permacloud:pc1r:")
