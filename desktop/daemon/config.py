"""The device's configuration: one TOML file, validated on load with one-line errors.

Secrets never live here (see `secrets.py`); this file says who the device is, which account it
belongs to, how its node serves, and which nodes it knows.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from desktop.core.errors import PermaCloudError
from desktop.net.identity import is_valid_node_id
from desktop.net.nodes_file import parse_address


class ConfigError(PermaCloudError):
    """The config file is missing, unreadable or has a bad value."""


@dataclass
class KnownNode:
    id: str
    address: str


@dataclass
class NodeSettings:
    listen: str = "127.0.0.1:0"
    quota: str = "10G"
    enabled: bool = True


@dataclass
class StorageSettings:
    k: int = 3
    n: int = 10
    happy: int = 7


@dataclass
class DeviceConfig:
    home_id: str
    device_name: str
    device_id: str
    account_id: str
    secret_store: str  # "keyring" or "file"
    node: NodeSettings = field(default_factory=NodeSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    known_nodes: list[KnownNode] = field(default_factory=list)
    discovery: bool = True  # find the household's nodes on the LAN (zeroconf)
    introducers: list[str] = field(default_factory=list)  # "NODEID@HOST:PORT"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_toml(self) -> str:
        body = asdict(self)
        extra = body.pop("extra")
        body.update(extra)
        return tomli_w.dumps(body)


def _section(data: dict[str, Any], name: str, kind: type[Any]) -> Any:
    raw = data.pop(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"config: [{name}] must be a table")
    try:
        return kind(**raw)
    except TypeError as error:
        raise ConfigError(f"config: bad [{name}] section: {error}") from None


def parse_config(text: str, source: str = "config") -> DeviceConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: not valid TOML: {error}") from None
    required = ("home_id", "device_name", "device_id", "account_id", "secret_store")
    for key in required:
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{source}: missing or empty '{key}'")
    if data["secret_store"] not in ("keyring", "file"):
        raise ConfigError(f"{source}: secret_store must be 'keyring' or 'file'")
    nodes_raw = data.pop("known_nodes", [])
    if not isinstance(nodes_raw, list):
        raise ConfigError(f"{source}: known_nodes must be a list of tables")
    try:
        known = [KnownNode(**entry) for entry in nodes_raw]
    except TypeError as error:
        raise ConfigError(f"{source}: bad known_nodes entry: {error}") from None
    discovery = data.pop("discovery", True)
    if not isinstance(discovery, bool):
        raise ConfigError(f"{source}: discovery must be true or false")
    introducers = data.pop("introducers", [])
    if not isinstance(introducers, list) or not all(isinstance(i, str) for i in introducers):
        raise ConfigError(f'{source}: introducers must be a list of "NODEID@HOST:PORT" strings')
    for entry in introducers:
        parse_introducer(entry, source)
    node = _section(data, "node", NodeSettings)
    storage = _section(data, "storage", StorageSettings)
    if not 1 <= storage.k <= storage.happy <= storage.n <= 256:
        raise ConfigError(f"{source}: storage needs 1 <= k <= happy <= n <= 256")
    fields = {key: data.pop(key) for key in required}
    return DeviceConfig(
        **fields,
        node=node,
        storage=storage,
        known_nodes=known,
        discovery=discovery,
        introducers=introducers,
        extra=data,
    )


def parse_introducer(text: str, source: str = "config") -> KnownNode:
    """`NODEID@HOST:PORT`: the ID is the TLS pin, so an introducer cannot be impersonated."""
    node_id, sep, address = text.partition("@")
    if not sep or not is_valid_node_id(node_id):
        raise ConfigError(f"{source}: introducer {text!r} is not NODEID@HOST:PORT")
    try:
        parse_address(address)
    except PermaCloudError:
        raise ConfigError(f"{source}: introducer {text!r} is not NODEID@HOST:PORT") from None
    return KnownNode(node_id, address)


def load_config(path: Path) -> DeviceConfig:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"this device is not set up yet ({path} is missing): run 'permacloud init'"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    return parse_config(text, str(path))


def save_config(path: Path, config: DeviceConfig) -> None:
    """Atomic replace, so a crash never leaves half a config."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(config.to_toml())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
