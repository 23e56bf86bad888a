"""Two real devices (daemon processes, real nodes on 127.0.0.1), each syncing a real folder with
`/Sync`, shared by the tests of a module (starting them is the slow part)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers_daemon import Device, DeviceFactory, env
from helpers_nodes import NodeFactory, write_nodes_toml

SYNC_ENV = {
    "PERMACLOUD_SYNC_SETTLE": "1.0",
    "PERMACLOUD_SYNC_DEBOUNCE": "0.05",
    "PERMACLOUD_SYNC_RESCAN": "20",
    "PERMACLOUD_REPLICATION_INTERVAL": "0.3",
}


@dataclass
class SyncPair:
    a: Device
    b: Device
    a_dir: Path
    b_dir: Path

    def restart(self, device: Device) -> None:
        with env(SYNC_ENV):
            device.start()


def start_pair(base: Path, nodes: NodeFactory) -> SyncPair:
    started = nodes.start_many(6, quota="4G")
    nodes_file = write_nodes_toml(base / "nodes.toml", started)
    factory = DeviceFactory(base / "devices")
    with env(SYNC_ENV):
        a = factory.init("alice", nodes_file).start()
        code = a.cli_json("invite")["code"]
        b = factory.join("bob", code).start()
    a_dir, b_dir = base / "alice-sync", base / "bob-sync"
    a_dir.mkdir()
    b_dir.mkdir()
    a.cli("sync", "add", str(a_dir))
    b.cli("sync", "add", str(b_dir))
    return SyncPair(a, b, a_dir, b_dir)


def snapshot(root: Path) -> dict[str, Any]:
    """rel -> ("file", sha256 prefix, mode) / ("link", target) / ("dir",), all below root."""
    out: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                out[rel] = ("file", digest, path.stat().st_mode & 0o777)
    return out


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.1,
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, AssertionError, KeyError):
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def file_count(root: Path) -> int:
    """Regular files below root: a cheap progress check (no reading, no hashing)."""
    return sum(len(files) for _, _, files in os.walk(root))


def folder_status(device: Device) -> dict[str, Any]:
    folders = device.call("syncfolder.status")
    assert len(folders) == 1
    return dict(folders[0])


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def wait_in_sync(
    pair: SyncPair,
    sub: str = "",
    timeout: float = 60.0,
    until: Callable[[dict[str, Any]], bool] = lambda state: True,
) -> dict[str, Any]:
    """Both folders (or `sub` of them) equal, `until(snapshot)` true and both engines idle;
    returns the snapshot."""

    def same() -> dict[str, Any] | None:
        left, right = snapshot(pair.a_dir / sub), snapshot(pair.b_dir / sub)
        if left != right or not until(left):
            return None
        if folder_status(pair.a)["state"] != "in sync":
            return None
        if folder_status(pair.b)["state"] != "in sync":
            return None
        return left or {"": "empty"}

    try:
        return dict(wait_for(same, timeout, "the folders to agree"))
    except AssertionError:
        left, right = snapshot(pair.a_dir / sub), snapshot(pair.b_dir / sub)
        keys = sorted(set(left) | set(right))
        diff = {k: (left.get(k), right.get(k)) for k in keys if left.get(k) != right.get(k)}
        raise AssertionError(
            f"folders differ: {list(diff.items())[:10]}; "
            f"a={folder_status(pair.a)} b={folder_status(pair.b)}"
        ) from None
