"""Shared helpers for namespace tests: an account with devices that write and sync."""

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from desktop.core.namespace import (
    DeleteOp,
    DeviceCertificate,
    Entry,
    FileInfo,
    LogWriter,
    MkdirOp,
    Op,
    PutOp,
    Replica,
    RmdirOp,
    issue_certificate,
    public_bytes,
    rename_op,
)
from desktop.core.namespace.ops import Node

BASE_MS = 1_700_000_000_000


def seeded_key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def file_info(content: str, size: int = 10) -> FileInfo:
    digest = hashlib.sha256(content.encode()).hexdigest()
    return FileInfo(cap=f"pc:r:{digest[:16]}", size=size, mtime_ns=1, content_hash=digest)


def put(path: str, content: str) -> PutOp:
    return PutOp(path, file_info(content))


@dataclass
class Device:
    name: str
    key: Ed25519PrivateKey
    cert: DeviceCertificate
    replica: Replica
    writer: LogWriter
    log: list[Entry] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.writer.device_id

    def write(self, op: Op, ts_ms: int) -> Entry:
        entry = self.writer.append(op, self.replica.knowledge(), ts_ms)
        self.replica.apply(entry)
        self.log.append(entry)
        return entry


class Account:
    """An account root key plus devices; certificates are issued by the root."""

    def __init__(self, label: str = "acct") -> None:
        self.root = seeded_key(label + "-root")
        self.root_public = public_bytes(self.root)
        self.devices: list[Device] = []

    def new_replica(self) -> Replica:
        replica = Replica(self.root_public)
        for d in self.devices:
            replica.add_certificate(d.cert)
        return replica

    def add_device(self, name: str) -> Device:
        key = seeded_key(f"{self.root_public.hex()}-{name}")
        cert = issue_certificate(self.root, self.root_public, public_bytes(key), name, BASE_MS)
        replica = Replica(self.root_public)
        device = Device(name, key, cert, replica, LogWriter(replica.account_id, key))
        self.devices.append(device)
        for d in self.devices:
            for other in self.devices:
                d.replica.add_certificate(other.cert)
        return device

    def all_entries(self) -> list[Entry]:
        return [e for d in self.devices for e in d.log]


def sync(target: Device, source: Device) -> None:
    """Target merges everything source has written (in log order)."""
    for entry in source.log:
        target.replica.receive(entry)


PATHS = ["/a.txt", "/b", "/d", "/d/x.txt", "/d/y", "/e"]
CONTENTS = ["alpha", "beta", "gamma"]


def rename_items(replica: Replica, src: str) -> list[tuple[str, Node]] | None:
    """The nodes a rename of `src` moves, as the writer's view shows them."""
    tree = replica.view.tree()
    if src not in tree:
        return None
    return [(p, n.node) for p, n in tree.items() if p == src or p.startswith(src + "/")]


def play(account: Account, actions: list[tuple[int, ...]]) -> None:
    """Run a scripted scenario: (0, dev, kind, path, content, ts) writes, (1, a, b, ...) syncs.

    Writes that make no sense in the writer's current view (rename of a missing path) are skipped.
    """
    devices = account.devices
    for action in actions:
        if action[0] == 1:
            a, b = devices[action[1] % len(devices)], devices[action[2] % len(devices)]
            if a is not b:
                sync(a, b)
            continue
        _, d, kind, p, c, ts = action[:6]
        dev = devices[d % len(devices)]
        path = PATHS[p % len(PATHS)]
        when = BASE_MS + ts * 1000
        op: Op
        if kind == 0:
            op = put(path, CONTENTS[c % len(CONTENTS)])
        elif kind == 1:
            op = DeleteOp(path)
        elif kind == 2:
            op = MkdirOp(path)
        elif kind == 3:
            op = RmdirOp(path)
        else:
            dst = PATHS[c % len(PATHS)]
            items = rename_items(dev.replica, path)
            if (
                items is None
                or dst == path
                or dst.startswith(path + "/")
                or path.startswith(dst + "/")
                or dev.replica.view.node(dst) is not None
            ):
                continue
            op = rename_op(path, dst, items)
        dev.write(op, when)


def view_state(replica: Replica) -> tuple[object, ...]:
    """Everything observable about a view, for equality checks."""
    view = replica.view
    return (view.tree(), {p: view.versions(p) for p in view.paths()})
