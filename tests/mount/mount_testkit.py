"""A real device (daemon process + real nodes) with its FUSE mount, for the mount tests."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from helpers_daemon import Device, DeviceFactory, env
from helpers_nodes import NodeFactory, write_nodes_toml

MOUNT_ENV = {
    "PERMACLOUD_FUSE_UPLOAD_DELAY": "0.3",
    "PERMACLOUD_FUSE_READ_TIMEOUT": "6",
    "PERMACLOUD_FUSE_FLUSH_TIMEOUT": "60",
    "PERMACLOUD_FUSE_UPLOAD_TIMEOUT": "20",
}


def is_mounted(path: Path) -> bool:
    target = os.path.abspath(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def force_unmount(path: Path) -> None:
    if is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)


def start_device(
    factory: DeviceFactory, nodes: NodeFactory, base: Path, name: str = "alice", count: int = 8
) -> Device:
    started = nodes.start_many(count, quota="4G")
    nodes_file = write_nodes_toml(base / f"nodes-{name}.toml", started)
    with env(MOUNT_ENV):
        return factory.init(name, nodes_file).start()


def mount(device: Device, path: Path) -> Path:
    with env(MOUNT_ENV):
        device.cli("mount", str(path))
    assert is_mounted(path)
    return path


def wait_uploaded(device: Device, timeout: float = 90.0) -> None:
    def done() -> bool:
        status = device.call("mount.status")
        return bool(status["pending_files"] == 0)

    try:
        device.wait_until(done, timeout=timeout, what="uploads to finish")
    except AssertionError as error:
        raise AssertionError(f"{error}: {device.call('mount.status')}") from None


def wait_for(predicate: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
