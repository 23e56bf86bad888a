"""Signed snapshots of one device's log, and the retention policy that compacts history.

A snapshot of device D up to seq S carries, for every path D ever touched, D's last operation on
that path (it may still win or dominate other devices' writes, so it must never be dropped, even
when it is a deletion) plus the earlier ones the retention policy keeps. Each operation keeps its
original seq, timestamp and version vector, so a device that starts from snapshots computes the
same tree as one that replayed every entry: a dropped operation was dominated by D's later one on
the same path and could never be in a frontier. The snapshot also carries D's chain head, so
entries S+1... chain onto it.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from desktop.core.namespace import canonical
from desktop.core.namespace.entries import vv_from_wire
from desktop.core.namespace.errors import InvalidPath, TamperedLog
from desktop.core.namespace.keys import PrivateKeyLike, key_id, private_key, public_bytes
from desktop.core.namespace.log import ChainHead
from desktop.core.namespace.ops import PathOp, node_from_wire, node_to_wire
from desktop.core.namespace.paths import normalize_path
from desktop.core.namespace.vclock import VersionVector

SNAPSHOT_DOMAIN = b"permacloud-namespace-snapshot-v1\x00"
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Which superseded versions to keep. A version is kept if ANY set rule keeps it; none = all."""

    keep_last: int | None = None  # the N newest superseded versions of each path
    keep_days: int | None = None  # superseded versions younger than this

    def keeps_all(self) -> bool:
        return self.keep_last is None and self.keep_days is None


def kept_positions(
    timestamps_ms: Sequence[int], removed: bool, policy: RetentionPolicy, now_ms: int
) -> list[int]:
    """Pure: which of one path's versions by one device (oldest first) to keep; the last always.

    Once the path's last operation removed it (`removed`), only `keep_days` keeps its older
    versions: the count rule exists so a live file's recent edits stay restorable, but applied
    to a deleted file it would keep (and renew the leases of) that file's content forever, like
    a trash that is never emptied."""
    if not timestamps_ms:
        return []
    last = len(timestamps_ms) - 1
    if policy.keeps_all():
        return list(range(len(timestamps_ms)))
    kept: list[int] = []
    for i, timestamp_ms in enumerate(timestamps_ms[:last]):
        newer_count = last - i  # 1 for the newest superseded one
        by_count = not removed and policy.keep_last is not None and newer_count <= policy.keep_last
        by_age = policy.keep_days is not None and now_ms - timestamp_ms < (
            policy.keep_days * DAY_MS
        )
        if by_count or by_age:
            kept.append(i)
    kept.append(last)
    return kept


def retain(ops: list[PathOp], policy: RetentionPolicy, now_ms: int) -> list[PathOp]:
    """Pure: of one path's operations by one device (seq order), those to keep."""
    if not ops:
        return []
    positions = kept_positions(
        [op.timestamp_ms for op in ops], ops[-1].node is None, policy, now_ms
    )
    return [ops[i] for i in positions]


@dataclass(frozen=True, slots=True)
class Snapshot:
    account_id: str
    device_id: str
    seq: int
    head_hash: bytes
    vv: VersionVector
    timestamp_ms: int
    ops: tuple[PathOp, ...]
    signature: bytes

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.seq, self.head_hash, self.vv)

    def unsigned_wire(self) -> dict[str, Any]:
        return {
            "v": 1,
            "kind": "snapshot",
            "acct": self.account_id,
            "dev": self.device_id,
            "seq": self.seq,
            "head": canonical.b64(self.head_hash),
            "vv": self.vv.as_dict(),
            "ts": self.timestamp_ms,
            "ops": [
                [op.seq, op.sub, op.timestamp_ms, op.vv.as_dict(), op.path, node_to_wire(op.node)]
                for op in self.ops
            ],
        }

    def to_bytes(self) -> bytes:
        wire = self.unsigned_wire()
        wire["sig"] = canonical.b64(self.signature)
        return canonical.encode(wire)

    def verify_signature(self, public_key: bytes) -> None:
        message = SNAPSHOT_DOMAIN + canonical.encode(self.unsigned_wire())
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(self.signature, message)
        except (InvalidSignature, ValueError):
            raise TamperedLog(self.device_id, self.seq, "snapshot has a bad signature") from None

    def check_consistent(self) -> None:
        """Raise TamperedLog unless every operation is this device's and within the snapshot."""
        if self.vv.get(self.device_id) != self.seq:
            raise TamperedLog(self.device_id, self.seq, "snapshot vector lacks its own seq")
        for op in self.ops:
            ok = (
                op.device == self.device_id
                and 1 <= op.seq <= self.seq
                and op.vv.get(self.device_id) == op.seq
                and op.vv.leq(self.vv)
            )
            if not ok:
                raise TamperedLog(self.device_id, op.seq, "snapshot operation out of range")
            try:
                if normalize_path(op.path) != op.path:
                    raise InvalidPath(f"non-canonical path {op.path!r}")
            except InvalidPath as exc:
                raise TamperedLog(self.device_id, op.seq, f"snapshot: {exc}") from None


def decode_snapshot(data: bytes) -> Snapshot:
    try:
        obj = canonical.decode(data)
        keys = {"v", "kind", "acct", "dev", "seq", "head", "vv", "ts", "ops", "sig"}
        if not isinstance(obj, dict) or set(obj) != keys or obj["v"] != 1:
            raise ValueError("unexpected fields or version")
        if obj["kind"] != "snapshot" or not isinstance(obj["ops"], list):
            raise ValueError("not a snapshot")
        device = obj["dev"]
        if not isinstance(device, str):
            raise ValueError("bad device")
        ops = []
        for raw in obj["ops"]:
            if not isinstance(raw, list) or len(raw) != 6:
                raise ValueError("bad snapshot operation")
            seq, sub, ts, vv, path, node = raw
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (seq, sub, ts)):
                raise ValueError("bad snapshot operation numbers")
            if not isinstance(path, str):
                raise ValueError("bad snapshot path")
            ops.append(PathOp(device, seq, sub, ts, vv_from_wire(vv), path, node_from_wire(node)))
        if not isinstance(obj["seq"], int) or not isinstance(obj["ts"], int):
            raise ValueError("bad snapshot numbers")
        return Snapshot(
            obj["acct"],
            device,
            obj["seq"],
            canonical.unb64(obj["head"]),
            vv_from_wire(obj["vv"]),
            obj["ts"],
            tuple(ops),
            canonical.unb64(obj["sig"]),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise TamperedLog("?", None, f"malformed snapshot: {exc}") from None


def make_snapshot(
    device_key: PrivateKeyLike,
    account_id: str,
    own_ops: Iterable[PathOp],
    head: ChainHead,
    policy: RetentionPolicy,
    now_ms: int,
) -> Snapshot:
    """Sign a snapshot of this device's log up to `head` from its own recorded operations.

    `own_ops` is typically `view.ops(device_id, head.seq)`.
    """
    key = private_key(device_key)
    device = key_id(public_bytes(key))
    by_path: dict[str, list[PathOp]] = {}
    for op in sorted(own_ops, key=lambda o: o.key):
        if op.device != device or op.seq > head.seq:
            raise ValueError("make_snapshot takes only this device's operations up to its head")
        by_path.setdefault(op.path, []).append(op)
    kept = [op for ops in by_path.values() for op in retain(ops, policy, now_ms)]
    kept.sort(key=lambda o: o.key)
    unsigned = Snapshot(account_id, device, head.seq, head.hash, head.vv, now_ms, tuple(kept), b"")
    sig = key.sign(SNAPSHOT_DOMAIN + canonical.encode(unsigned.unsigned_wire()))
    return Snapshot(account_id, device, head.seq, head.hash, head.vv, now_ms, tuple(kept), sig)
