"""One device's replica of an account namespace: membership + per-device chains + merged view.

Everything is verified before anything is changed, so a rejected entry (bad signature, broken
chain, unknown device) leaves the view exactly as it was. `apply` wants each device's entries in
order (the daemon reads logs front to back); `receive` accepts any arrival order and holds early
entries until the gap before them is filled (`missing()` tells which entries are still needed).
"""

import logging

from desktop.core.namespace.entries import Entry
from desktop.core.namespace.errors import TamperedLog, UnauthorizedDevice
from desktop.core.namespace.log import ChainHead, check_successor
from desktop.core.namespace.membership import DeviceCertificate, Membership
from desktop.core.namespace.snapshot import Snapshot
from desktop.core.namespace.vclock import VersionVector
from desktop.core.namespace.view import NamespaceView

logger = logging.getLogger(__name__)

MAX_PENDING_PER_DEVICE = 100_000


class Replica:
    def __init__(self, account_public_key: bytes) -> None:
        self.membership = Membership(account_public_key)
        self.account_id = self.membership.account_id
        self.view = NamespaceView()
        self._heads: dict[str, ChainHead] = {}
        self._hashes: dict[tuple[str, int], bytes] = {}
        self._pending: dict[str, dict[int, Entry]] = {}
        self._knowledge = VersionVector()

    # --- membership -------------------------------------------------------------------------

    def add_certificate(self, cert: DeviceCertificate) -> list[str]:
        return self.membership.add(cert)

    # --- state ------------------------------------------------------------------------------

    def head(self, device_id: str) -> ChainHead:
        return self._heads.get(device_id, ChainHead())

    def knowledge(self) -> VersionVector:
        """What this replica has merged: the vector a new local entry must carry."""
        return self._knowledge

    def missing(self) -> dict[str, int]:
        """Devices with held-back entries -> the first seq still needed to continue them."""
        return {dev: self.head(dev).seq + 1 for dev, held in self._pending.items() if held}

    # --- ingesting --------------------------------------------------------------------------

    def verify(self, entry: Entry) -> None:
        """Raise unless `entry` is authentic and is the next one of its device's log."""
        self._verify_authentic(entry)
        check_successor(self.head(entry.device_id), entry)

    def apply(self, entry: Entry) -> set[str]:
        """Verify and merge the next entry of a device; return the paths that may have changed."""
        self.verify(entry)
        return self._merge(entry)

    def receive(self, entry: Entry) -> set[str]:
        """Like apply, but in any order: early entries wait for the ones before them."""
        dev, seq = entry.device_id, entry.seq
        head = self.head(dev)
        if seq <= head.seq and self._hashes.get((dev, seq)) == entry.hash:
            return set()  # a copy of an entry already verified and merged
        self._verify_authentic(entry)
        if seq <= head.seq:
            if (dev, seq) in self._hashes:
                raise TamperedLog(dev, seq, "two different entries with the same seq (fork)")
            return set()  # older than a loaded snapshot: already summarized by it
        if seq > head.seq + 1:
            held = self._pending.setdefault(dev, {})
            other = held.get(seq)
            if other is not None and other.hash != entry.hash:
                raise TamperedLog(dev, seq, "two different entries with the same seq (fork)")
            if other is None and len(held) >= MAX_PENDING_PER_DEVICE:
                raise TamperedLog(dev, seq, "too many entries waiting for a gap to be filled")
            held[seq] = entry
            return set()
        check_successor(head, entry)
        changed = self._merge(entry)
        return changed | self._drain(dev)

    def load_snapshot(self, snapshot: Snapshot) -> set[str]:
        """Start (or jump ahead) a device's log from its signed snapshot."""
        dev = snapshot.device_id
        if snapshot.account_id != self.account_id:
            raise UnauthorizedDevice(dev, snapshot.seq, "snapshot belongs to another account")
        snapshot.verify_signature(self.membership.public_key(dev, snapshot.seq))
        snapshot.check_consistent()
        head = self.head(dev)
        if snapshot.seq <= head.seq:
            known = self._hashes.get((dev, snapshot.seq))
            if known is not None and known != snapshot.head_hash:
                raise TamperedLog(dev, snapshot.seq, "snapshot disagrees with the log (fork)")
            return set()
        if not head.vv.leq(snapshot.vv):
            raise TamperedLog(dev, snapshot.seq, "snapshot vector is behind the log")
        changed = self.view.apply(op for op in snapshot.ops if op.seq > head.seq)
        self._set_head(dev, snapshot.head)
        logger.debug("loaded snapshot of %s up to seq %d", dev, snapshot.seq)
        return changed | self._drain(dev)

    # --- internals --------------------------------------------------------------------------

    def _verify_authentic(self, entry: Entry) -> None:
        if entry.account_id != self.account_id:
            raise UnauthorizedDevice(entry.device_id, entry.seq, "entry of another account")
        entry.verify_signature(self.membership.public_key(entry.device_id, entry.seq))

    def _merge(self, entry: Entry) -> set[str]:
        changed = self.view.apply(entry.path_ops())
        self._set_head(entry.device_id, ChainHead(entry.seq, entry.hash, entry.vv))
        return changed

    def _set_head(self, dev: str, head: ChainHead) -> None:
        self._heads[dev] = head
        self._hashes[(dev, head.seq)] = head.hash
        self._knowledge = self._knowledge.join(head.vv)

    def _drain(self, dev: str) -> set[str]:
        changed: set[str] = set()
        held = self._pending.get(dev)
        while held:
            head = self.head(dev)
            for stale in [s for s in held if s <= head.seq]:
                del held[stale]
            entry = held.pop(head.seq + 1, None)
            if entry is None:
                break
            check_successor(head, entry)
            changed |= self._merge(entry)
        if held is not None and not held:
            del self._pending[dev]
        return changed
