"""Real mounts over a real daemon and real nodes: basic file operations and persistence."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_daemon import Device, DeviceFactory
from helpers_nodes import NodeFactory
from mount_testkit import force_unmount, mount, start_device, wait_uploaded


@pytest.fixture
def device(tmp_path: Path, node_factory: NodeFactory) -> Iterator[Device]:
    factory = DeviceFactory(tmp_path / "devices")
    dev = start_device(factory, node_factory, tmp_path)
    yield dev
    factory.stop_all()
    force_unmount(tmp_path / "mnt")


def test_write_read_list_and_upload(device: Device, tmp_path: Path) -> None:
    mnt = mount(device, tmp_path / "mnt")
    data = os.urandom(5 * 1024 * 1024 + 123)
    (mnt / "docs").mkdir()
    (mnt / "docs" / "a.bin").write_bytes(data)
    assert (mnt / "docs" / "a.bin").read_bytes() == data
    assert sorted(os.listdir(mnt / "docs")) == ["a.bin"]
    wait_uploaded(device)
    rows = device.call("ls", {"path": "/docs"})
    assert rows[0]["name"] == "a.bin" and rows[0]["size"] == len(data)
    assert (mnt / "docs" / "a.bin").read_bytes() == data
    status = os.getxattr(mnt / "docs" / "a.bin", "user.permacloud.status").decode()
    assert status.startswith("stored")
