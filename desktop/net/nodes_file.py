"""The nodes file: a TOML list of known nodes, each pinned by its ID.

[[node]]
id = "xioox377562dlisfweivygppgmuxlnx4"
address = "127.0.0.1:8443"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from desktop.core.errors import PermaCloudError
from desktop.net.identity import is_valid_node_id


class NodesFileError(PermaCloudError):
    """The nodes file is missing, not TOML, or has a bad entry."""


@dataclass(frozen=True)
class NodeAddress:
    node_id: str
    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __str__(self) -> str:
        return f"{self.node_id}@{self.host}:{self.port}"


class AddressError(NodesFileError, ValueError):
    """Not a HOST:PORT address."""


def parse_address(text: str, *, allow_any_port: bool = False) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`); port 0 ("any free port") only if `allow_any_port`."""
    host, sep, port = text.rpartition(":")
    low = 0 if allow_any_port else 1
    if not sep or not host or not port.isdigit() or not low <= int(port) <= 65535:
        raise AddressError(f"address {text!r} is not HOST:PORT")
    return host.removeprefix("[").removesuffix("]"), int(port)


def parse_nodes_toml(text: str, source: str = "nodes file") -> list[NodeAddress]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise NodesFileError(f"{source}: not valid TOML: {error}") from None
    entries = document.get("node", [])
    if not isinstance(entries, list):
        raise NodesFileError(f"{source}: 'node' must be an array of tables ([[node]])")
    nodes: list[NodeAddress] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"{source}: node #{number}"
        if not isinstance(entry, dict):
            raise NodesFileError(f"{where}: must be a table")
        node_id, address = entry.get("id"), entry.get("address")
        if not isinstance(node_id, str) or not is_valid_node_id(node_id):
            raise NodesFileError(f"{where}: 'id' must be a 32-character node ID")
        if not isinstance(address, str):
            raise NodesFileError(f"{where}: 'address' must be a string HOST:PORT")
        try:
            host, port = parse_address(address)
        except ValueError as error:
            raise NodesFileError(f"{where}: {error}") from None
        if node_id in seen:
            raise NodesFileError(f"{where}: node {node_id} is listed twice")
        seen.add(node_id)
        nodes.append(NodeAddress(node_id, host, port))
    return nodes


def load_nodes_file(path: Path) -> list[NodeAddress]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NodesFileError(f"nodes file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise NodesFileError(f"cannot read nodes file {path}: {error}") from None
    return parse_nodes_toml(text, str(path))


def dump_nodes_toml(nodes: list[NodeAddress]) -> str:
    blocks = [
        "[[node]]\n" + tomli_w.dumps({"id": n.node_id, "address": _format_address(n.host, n.port)})
        for n in nodes
    ]
    return "\n".join(blocks)


def write_nodes_file(path: Path, nodes: list[NodeAddress]) -> None:
    path.write_text(dump_nodes_toml(nodes), encoding="utf-8")


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
