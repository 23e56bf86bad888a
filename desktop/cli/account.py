"""`permacloud init`, `invite` and `join`: setting up a device and bringing in others."""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from desktop.cli.common import call, console, print_json
from desktop.core.errors import PermaCloudError
from desktop.core.invite import parse_invite_code
from desktop.core.namespace import DeviceCertificate, issue_certificate
from desktop.daemon.account import AccountKeys, load_keys, save_keys
from desktop.daemon.config import (
    ConfigError,
    DeviceConfig,
    KnownNode,
    NodeSettings,
    load_config,
    save_config,
)
from desktop.daemon.index import Index
from desktop.daemon.join import join_with_code
from desktop.daemon.paths import AppPaths, app_paths
from desktop.daemon.secrets import FileStore, KeyringStore, open_secret_store
from desktop.net.identity import DeviceKey
from desktop.net.nodes_file import load_nodes_file, parse_address


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _listen_address(text: str) -> str:
    """A fixed address for this device's node: other devices pin it, so port 0 is resolved now."""
    host, port = parse_address(text, allow_any_port=True)
    return f"{host}:{port or _free_port(host)}"


def _require_fresh(paths: AppPaths) -> None:
    if paths.config_file.exists():
        raise ConfigError(
            f"this device is already set up ({paths.config_file}); "
            "use another PERMACLOUD_HOME for a second device"
        )


def _store_for(paths: AppPaths, home_id: str, choice: str) -> KeyringStore | FileStore:
    store = open_secret_store(home_id, paths.data_dir / "secrets.json", prefer=choice)
    assert isinstance(store, (KeyringStore, FileStore))
    return store


def _write_device(
    paths: AppPaths,
    keys: AccountKeys,
    name: str,
    listen: str,
    quota: str,
    secret_choice: str,
    known: list[KnownNode],
) -> tuple[DeviceConfig, str]:
    home_id = DeviceKey.generate().node_id[:16]
    store = _store_for(paths, home_id, secret_choice)
    save_keys(store, keys)
    config = DeviceConfig(
        home_id=home_id,
        device_name=name,
        device_id=keys.device_id,
        account_id=keys.account_id,
        secret_store="file" if isinstance(store, FileStore) else "keyring",
        node=NodeSettings(listen=listen, quota=quota),
        known_nodes=known,
    )
    save_config(paths.config_file, config)
    return config, store.description


def cmd_init(args: argparse.Namespace) -> int:
    paths = app_paths().ensure()
    _require_fresh(paths)
    known = []
    if args.nodes is not None:
        known = [KnownNode(n.node_id, f"{n.host}:{n.port}") for n in load_nodes_file(args.nodes)]
    keys = AccountKeys.create()
    listen = _listen_address(args.listen)
    config, where = _write_device(
        paths, keys, args.name, listen, args.quota, args.secret_store, known
    )
    cert = issue_certificate(
        keys.account_root,
        keys.account_public,
        keys.device_key.public_bytes,
        args.name,
        int(time.time() * 1000),
    )
    index = Index(paths.data_dir / "index.sqlite3")
    try:
        index.add_certificate(cert.device_id, cert.to_bytes(), publish=True)
        index.enqueue("node", keys.device_key.node_id, 0)
        for node in known:
            index.enqueue("node", node.id, 0)
    finally:
        index.close()
    if config.secret_store == "file":
        console.print(
            f"[yellow]No system keyring is available: keys are kept in {where} "
            "(readable only by you).[/]"
        )
    console.print(f"Device [bold]{args.name}[/] set up in a new account {keys.account_id}.")
    console.print(f"Its node will listen on {listen}. Start it with: permacloud daemon")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    result = call("invite", {"kind": args.kind, "ttl": args.ttl})
    if args.json:
        print_json(result)
        return 0
    minutes = max(1, round((result["expires"] - time.time()) / 60))
    console.print(f"Invite code ({args.kind}, single use, valid for {minutes} min):")
    print(result["code"])
    console.print(f"On the other device run: permacloud join {result['code']}")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    paths = app_paths().ensure()
    if parse_invite_code(args.code).kind == "node":
        return _join_as_node(paths, args)
    _require_fresh(paths)
    device_key = DeviceKey.generate()
    listen = _listen_address(args.listen)
    grant = trio.run(join_with_code, args.code, device_key, args.name, listen)
    if grant.kind != "device" or grant.account_root is None or grant.account_secret is None:
        raise PermaCloudError("this is a node invite: it adds a node, not a device (see README)")
    keys = AccountKeys(
        Ed25519PrivateKey.from_private_bytes(grant.account_root), grant.account_secret, device_key
    )
    known = [KnownNode(node_id, address) for node_id, address in grant.nodes]
    _write_device(paths, keys, args.name, listen, args.quota, args.secret_store, known)
    index = Index(paths.data_dir / "index.sqlite3")
    try:
        for cert in grant.certificates:
            parsed = DeviceCertificate.from_bytes(cert)
            index.add_certificate(parsed.device_id, cert, publish=False)
        for node_id, address in grant.nodes:
            index.upsert_node(node_id, address, "account")
    finally:
        index.close()
    console.print(f"Joined account {keys.account_id} as [bold]{args.name}[/].")
    console.print("Start this device with: permacloud daemon")
    return 0


def _join_as_node(paths: AppPaths, args: argparse.Namespace) -> int:
    """A node invite: this (already set up) device lends its node to another household."""
    config = load_config(paths.config_file)
    store = open_secret_store(
        config.home_id, paths.data_dir / "secrets.json", prefer=config.secret_store
    )
    keys = load_keys(store)
    grant = trio.run(join_with_code, args.code, keys.device_key, args.name, config.node.listen)
    index = Index(paths.data_dir / "index.sqlite3")
    try:
        for node_id, address in grant.nodes:
            index.upsert_node(node_id, address, "household")
    finally:
        index.close()
    console.print(
        f"This device's node now serves the inviting household ({len(grant.nodes)} nodes known)."
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = subparsers.add_parser("init", help="set up this device in a new account")
    init.add_argument("--name", default=socket.gethostname(), help="this device's name")
    init.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT for this device's node")
    init.add_argument("--quota", default="10G", help="disk space this device donates")
    init.add_argument("--nodes", type=Path, help="a nodes file of storage nodes to use")
    init.add_argument("--secret-store", choices=("auto", "keyring", "file"), default="auto")
    init.set_defaults(func=cmd_init)

    invite = subparsers.add_parser("invite", help="print a one-time code for another device")
    invite.add_argument("--kind", choices=("device", "node"), default="device")
    invite.add_argument("--ttl", type=int, default=3600, help="seconds the code is valid")
    invite.add_argument("--json", action="store_true")
    invite.set_defaults(func=cmd_invite)

    join = subparsers.add_parser("join", help="join an account with an invite code")
    join.add_argument("code")
    join.add_argument("--name", default=socket.gethostname(), help="this device's name")
    join.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT for this device's node")
    join.add_argument("--quota", default="10G", help="disk space this device donates")
    join.add_argument("--secret-store", choices=("auto", "keyring", "file"), default="auto")
    join.set_defaults(func=cmd_join)
