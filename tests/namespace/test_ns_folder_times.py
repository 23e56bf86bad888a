"""Folder modes and mtimes travel in mkdir operations and survive the wire form; entries written
before folders had an mtime still parse (as mtime 0: never set)."""

from __future__ import annotations

import pytest

from desktop.core.namespace import DirInfo, MkdirOp
from desktop.core.namespace.ops import (
    expand,
    node_from_wire,
    node_to_wire,
    op_from_wire,
    op_to_wire,
)


def test_mkdir_carries_mode_and_mtime_through_the_wire() -> None:
    op = MkdirOp("/photos", 0o750, 1_600_000_000_123_456_789)
    assert op_from_wire(op_to_wire(op)) == op
    assert expand(op) == [("/photos", DirInfo(0o750, 1_600_000_000_123_456_789))]
    node = DirInfo(0o700, 42)
    assert node_from_wire(node_to_wire(node)) == node


def test_entries_without_a_folder_mtime_still_parse() -> None:
    assert op_from_wire({"t": "mkdir", "path": "/a", "mode": 0o755}) == MkdirOp("/a", 0o755, 0)
    assert node_from_wire({"t": "dir", "mode": 0o755}) == DirInfo(0o755, 0)


def test_unknown_or_mistyped_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly the fields"):
        op_from_wire({"t": "mkdir", "path": "/a", "mode": 0o755, "owner": "x"})
    with pytest.raises(ValueError, match="must be int"):
        op_from_wire({"t": "mkdir", "path": "/a", "mode": 0o755, "mtime": "yesterday"})
