"""The TOML nodes file."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop.net.identity import DeviceKey
from desktop.net.nodes_file import (
    NodeAddress,
    NodesFileError,
    load_nodes_file,
    parse_nodes_toml,
    write_nodes_file,
)


def test_round_trip(tmp_path: Path) -> None:
    nodes = [
        NodeAddress(DeviceKey.generate().node_id, "127.0.0.1", 4000),
        NodeAddress(DeviceKey.generate().node_id, "::1", 4001),
    ]
    path = tmp_path / "nodes.toml"
    write_nodes_file(path, nodes)
    assert "[[node]]" in path.read_text()
    assert load_nodes_file(path) == nodes
    assert nodes[0].address == ("127.0.0.1", 4000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[node]\n", "not valid TOML"),
        ("node = 3", "array of tables"),
        ('[[node]]\nid = "abc"\naddress = "127.0.0.1:1"', "32-character node ID"),
        (f'[[node]]\nid = "{"a" * 32}"\naddress = 5', "must be a string"),
        (f'[[node]]\nid = "{"a" * 32}"\naddress = "127.0.0.1"', "not HOST:PORT"),
        (f'[[node]]\nid = "{"a" * 32}"\naddress = "h:70000"', "not HOST:PORT"),
        (f'[[node]]\nid = "{"a" * 32}"\naddress = "h:1"\n' * 2, "listed twice"),
    ],
)
def test_malformed_files(text: str, message: str) -> None:
    with pytest.raises(NodesFileError, match=message):
        parse_nodes_toml(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NodesFileError, match="does not exist"):
        load_nodes_file(tmp_path / "nope.toml")


def test_empty_file_is_no_nodes() -> None:
    assert parse_nodes_toml("") == []
