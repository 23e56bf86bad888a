"""Helpers shared by the client tests: share files on a node's disk, generated data."""

from __future__ import annotations

import os
from pathlib import Path

from helpers_nodes import NodeProcess

from desktop.core.caps import storage_index_to_str


def share_file(node: NodeProcess, storage_index: bytes, shnum: int) -> Path:
    si = storage_index_to_str(storage_index)
    return node.data_dir / "store" / "shares" / si[:2] / si / str(shnum) / "data"


def shares_on_disk(node: NodeProcess) -> list[Path]:
    return sorted((node.data_dir / "store" / "shares").glob("*/*/*"))


def by_id(nodes: list[NodeProcess]) -> dict[str, NodeProcess]:
    return {node.node_id: node for node in nodes}


def random_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def partial_files(directory: Path) -> list[str]:
    """Temp files a download left behind (there must be none)."""
    return [p.name for p in directory.iterdir() if p.suffix == ".part"]
