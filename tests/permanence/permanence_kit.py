"""Helpers of the permanence tests: where a file's shares are on the nodes' disks."""

from __future__ import annotations

import json
from pathlib import Path

from helpers_daemon import Device

from desktop.core.caps import parse_read_cap, storage_index_to_str


def storage_index(device: Device, path: str) -> str:
    link = device.cli("share", path).stdout.strip()
    cap = parse_read_cap(link.removeprefix("permacloud:").split("#", 1)[0].split("?", 1)[0])
    return storage_index_to_str(cap.storage_index)


def shares_on_disk(data_dirs: dict[str, Path], si: str) -> dict[str, list[int]]:
    """node id -> sealed share numbers of `si` found in that node's store."""
    found: dict[str, list[int]] = {}
    for node_id, data_dir in data_dirs.items():
        folder = data_dir / "store" / "shares" / si[:2] / si
        if not folder.is_dir():
            continue
        for share in sorted(folder.iterdir()):
            meta = share / "meta.json"
            if meta.exists() and json.loads(meta.read_text()).get("sealed"):
                found.setdefault(node_id, []).append(int(share.name))
    return found
