"""Writing one device's log and checking the chain of another's.

The chain head (last seq, its hash, its version vector) is all a reader keeps per device: the next
entry must have seq+1, point at that hash, and carry a vector that does not go backwards.
"""

from dataclasses import dataclass, field

from desktop.core.namespace.entries import Entry, sign_entry
from desktop.core.namespace.errors import InvalidPath, TamperedLog
from desktop.core.namespace.keys import PrivateKeyLike, key_id, private_key, public_bytes
from desktop.core.namespace.ops import Op, validate_op
from desktop.core.namespace.vclock import VersionVector


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int = 0
    hash: bytes = b""
    vv: VersionVector = field(default_factory=VersionVector)


def check_successor(head: ChainHead, entry: Entry) -> None:
    """Raise TamperedLog unless `entry` is the valid next link after `head` (no signature check)."""
    dev, seq = entry.device_id, entry.seq
    if seq <= head.seq:
        raise TamperedLog(dev, seq, f"out of order: already have entries up to seq {head.seq}")
    if seq != head.seq + 1:
        raise TamperedLog(dev, seq, f"gap in the log: entry {head.seq + 1} is missing")
    if entry.prev_hash != head.hash:
        raise TamperedLog(dev, seq, f"hash chain broken: prev does not match entry {head.seq}")
    if entry.vv.get(dev) != seq:
        raise TamperedLog(dev, seq, "version vector does not hold the entry's own seq")
    if not head.vv.leq(entry.vv):
        raise TamperedLog(dev, seq, "version vector went backwards")
    try:
        validate_op(entry.op)
    except InvalidPath as exc:
        raise TamperedLog(dev, seq, f"invalid operation: {exc}") from None


class LogWriter:
    """Appends signed entries to this device's log; keep one per device, resumed from its head."""

    def __init__(
        self, account_id: str, device_key: PrivateKeyLike, head: ChainHead | None = None
    ) -> None:
        self.account_id = account_id
        self._key = private_key(device_key)
        self.device_id = key_id(public_bytes(self._key))
        self.head = head or ChainHead()

    def append(self, op: Op, knowledge: VersionVector, timestamp_ms: int) -> Entry:
        """Sign `op` as the next entry; `knowledge`: what this device merged (Replica.knowledge)"""
        validate_op(op)
        seq = self.head.seq + 1
        vv = knowledge.join(self.head.vv).with_seq(self.device_id, seq)
        entry = sign_entry(
            self._key, self.account_id, self.device_id, seq, self.head.hash, timestamp_ms, vv, op
        )
        self.head = ChainHead(seq, entry.hash, vv)
        return entry
