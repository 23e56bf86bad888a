"""Signed log entries: the unit a device appends to its own namespace log.

Wire form (version 1), canonical JSON (see canonical.py):
    {"v":1, "acct":ACCOUNT_ID, "dev":DEVICE_ID, "seq":N,
     "prev":B64(sha256 of entry N-1; "" for N=1), "ts":UNIX_MS,
     "vv":{DEVICE_ID:SEQ,...}, "op":{...}, "sig":B64(ed25519)}
The signature covers the canonical bytes of everything but "sig", prefixed by a domain tag. The
entry hash (what the next entry's "prev" holds) covers the full signed bytes, so the chain pins
signatures too. "ts" is informational (conflict-copy names, picking the deterministic winner);
causality comes only from "vv", which must contain the entry's own dot (vv[dev] == seq).
"""

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from desktop.core.namespace import canonical
from desktop.core.namespace.errors import InvalidPath, TamperedLog
from desktop.core.namespace.keys import PrivateKeyLike, private_key
from desktop.core.namespace.ops import Op, PathOp, expand, op_from_wire, op_to_wire
from desktop.core.namespace.vclock import VersionVector

FORMAT_VERSION = 1
ENTRY_DOMAIN = b"permacloud-namespace-entry-v1\x00"
MAX_ENTRY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Entry:
    account_id: str
    device_id: str
    seq: int
    prev_hash: bytes
    timestamp_ms: int
    vv: VersionVector
    op: Op
    signature: bytes

    def unsigned_wire(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "acct": self.account_id,
            "dev": self.device_id,
            "seq": self.seq,
            "prev": canonical.b64(self.prev_hash),
            "ts": self.timestamp_ms,
            "vv": self.vv.as_dict(),
            "op": op_to_wire(self.op),
        }

    def signed_message(self) -> bytes:
        return ENTRY_DOMAIN + canonical.encode(self.unsigned_wire())

    def to_bytes(self) -> bytes:
        wire = self.unsigned_wire()
        wire["sig"] = canonical.b64(self.signature)
        return canonical.encode(wire)

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    def path_ops(self) -> list[PathOp]:
        return [
            PathOp(self.device_id, self.seq, i, self.timestamp_ms, self.vv, path, node)
            for i, (path, node) in enumerate(expand(self.op))
        ]

    def verify_signature(self, public_key: bytes) -> None:
        """Raise TamperedLog unless `public_key` signed this entry."""
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(
                self.signature, self.signed_message()
            )
        except (InvalidSignature, ValueError):
            raise TamperedLog(self.device_id, self.seq, "bad signature") from None


def sign_entry(
    key: PrivateKeyLike,
    account_id: str,
    device_id: str,
    seq: int,
    prev_hash: bytes,
    timestamp_ms: int,
    vv: VersionVector,
    op: Op,
) -> Entry:
    unsigned = Entry(account_id, device_id, seq, prev_hash, timestamp_ms, vv, op, b"")
    sig = private_key(key).sign(unsigned.signed_message())
    return Entry(account_id, device_id, seq, prev_hash, timestamp_ms, vv, op, sig)


def decode_entry(data: bytes) -> Entry:
    """Parse wire bytes into an Entry (no signature or chain check: see Replica for those)."""
    if len(data) > MAX_ENTRY_BYTES:
        raise TamperedLog("?", None, f"entry larger than {MAX_ENTRY_BYTES} bytes")
    try:
        obj = canonical.decode(data)
    except ValueError as exc:
        raise TamperedLog("?", None, f"malformed entry: {exc}") from None
    device = obj.get("dev") if isinstance(obj, dict) else None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    dev_s = device if isinstance(device, str) else "?"
    seq_i = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    try:
        return _entry_from_wire(obj)
    except (ValueError, InvalidPath) as exc:
        raise TamperedLog(dev_s, seq_i, f"malformed entry: {exc}") from None


def _entry_from_wire(obj: Any) -> Entry:
    keys = {"v", "acct", "dev", "seq", "prev", "ts", "vv", "op", "sig"}
    if not isinstance(obj, dict) or set(obj) != keys:
        raise ValueError(f"expected exactly the fields {sorted(keys)}")
    if obj["v"] != FORMAT_VERSION:
        raise ValueError(f"unsupported entry version {obj['v']!r}")
    for name in ("acct", "dev", "prev", "sig"):
        if not isinstance(obj[name], str):
            raise ValueError(f"field {name!r} must be a string")
    for name in ("seq", "ts"):
        if not isinstance(obj[name], int) or isinstance(obj[name], bool):
            raise ValueError(f"field {name!r} must be an integer")
    if obj["seq"] < 1:
        raise ValueError("seq must be >= 1")
    vv = vv_from_wire(obj["vv"])
    if vv.get(obj["dev"]) != obj["seq"]:
        raise ValueError("version vector must hold the entry's own seq")
    return Entry(
        account_id=obj["acct"],
        device_id=obj["dev"],
        seq=obj["seq"],
        prev_hash=canonical.unb64(obj["prev"]),
        timestamp_ms=obj["ts"],
        vv=vv,
        op=op_from_wire(obj["op"]),
        signature=canonical.unb64(obj["sig"]),
    )


def vv_from_wire(obj: Any) -> VersionVector:
    if not isinstance(obj, dict):
        raise ValueError("version vector must be an object")
    for dev, seq in obj.items():
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError(f"version vector entry {dev!r} must be a positive integer")
    return VersionVector.from_mapping(obj)
