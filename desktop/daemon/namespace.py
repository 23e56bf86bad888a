"""This device's replica of the account namespace, kept in step with the SQLite index.

The pure `Replica` verifies and merges; this class persists what it accepted (entries, their
effect on the materialized view, and what is still to publish) in one transaction, so a crash
between "the user was told" and "the network has it" loses nothing: the outbox is replayed.
Synchronous: the daemon calls it from one worker thread at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from desktop.core.errors import PermaCloudError
from desktop.core.namespace import (
    DeviceCertificate,
    DirInfo,
    Entry,
    FileInfo,
    LinkInfo,
    LogWriter,
    NamespaceError,
    Op,
    Replica,
    RetentionPolicy,
    Snapshot,
    Version,
    ViewNode,
    decode_entry,
    decode_snapshot,
    make_snapshot,
    normalize_path,
)
from desktop.core.namespace.keys import PrivateKeyLike
from desktop.core.namespace.paths import basename, parent
from desktop.daemon.index import Index, ViewRow

logger = logging.getLogger(__name__)


class NamespaceRestoring(PermaCloudError):
    """Local writes wait until this device's own log is back from the network."""


@dataclass(frozen=True)
class AppendJob:
    """One writer's ops for `Namespace.append_many`, with the share placements of the files
    they name (recorded in the same transaction)."""

    ops: Sequence[Op]
    placements: Sequence[tuple[str, dict[int, str]]] = ()


@dataclass(frozen=True)
class ReceiveResult:
    merged: int
    changed: set[str]
    rejected: list[str]


def view_row(node: ViewNode) -> ViewRow:
    path = node.path
    folder = parent(path) if path != "/" else ""
    name = basename(path) if path != "/" else ""
    info = node.node
    if isinstance(info, FileInfo):
        return ViewRow(
            path,
            folder,
            name,
            "file",
            cap=info.cap,
            size=info.size,
            mtime_ns=info.mtime_ns,
            mode=info.mode,
            content_hash=info.content_hash,
            conflict_of=node.conflict_of,
        )
    if isinstance(info, LinkInfo):
        return ViewRow(path, folder, name, "link", target=info.target, mtime_ns=info.mtime_ns)
    assert isinstance(info, DirInfo)
    return ViewRow(path, folder, name, "dir", mode=info.mode, mtime_ns=info.mtime_ns)


class Namespace:
    def __init__(
        self, index: Index, account_public_key: bytes, device_private_key: PrivateKeyLike
    ) -> None:
        self.index = index
        self.replica = Replica(account_public_key)
        self.account_id = self.replica.account_id
        self._writer = LogWriter(self.account_id, device_private_key)
        self._writer_key = device_private_key
        self.device_id = self._writer.device_id
        self.restoring = False  # True while this device's own log must first come back
        # Paths this device changed (CLI, mount, sync folder) not yet announced on the bus:
        # the daemon takes them after each database call (see `take_local_changes`).
        self._local_changed: set[str] = set()
        self._local_lock = threading.Lock()

    # --- start-up ---------------------------------------------------------------------------

    def load(self) -> None:
        """Rebuild the in-memory replica from the index (certificates, then every log)."""
        for data in self.index.certificates():
            self.replica.add_certificate(DeviceCertificate.from_bytes(data))
        for device, seq, data in self.index.snapshots():
            try:
                self.replica.load_snapshot(decode_snapshot(data))
            except PermaCloudError as error:
                logger.error("stored snapshot %s/%d rejected: %s", device, seq, error)
        for device, seq, data in self.index.entries():
            try:
                self.replica.receive(decode_entry(data))
            except PermaCloudError as error:
                logger.error("stored entry %s/%d rejected: %s", device, seq, error)
        self._writer.head = self.replica.head(self.device_id)
        rows = [view_row(n) for n in self.replica.view.tree().values()]
        self.index.replace_view(rows)

    # --- membership -------------------------------------------------------------------------

    def add_certificate(self, data: bytes, *, publish: bool) -> list[str]:
        cert = DeviceCertificate.from_bytes(data)
        cert.verify_signature()
        added = self.replica.add_certificate(cert)
        self.index.add_certificate(cert.device_id, data, publish=publish)
        return added

    def devices(self) -> list[DeviceCertificate]:
        return self.replica.membership.devices()

    # --- local changes ----------------------------------------------------------------------

    def append(self, op: Op) -> Entry:
        """Sign, merge and durably store one local operation (then it is safe to acknowledge)."""
        self._check_writable()
        entry, changed = self._sign_and_merge(op)
        self._persist([entry], changed, publish=True)
        return entry

    def append_many(self, jobs: Sequence[AppendJob]) -> list[PermaCloudError | None]:
        """Group commit: the ops of several independent writers, signed and merged in turn and
        stored in ONE transaction (one fsync instead of one per op). Durable when it returns.
        A job whose op is refused stops there (its earlier ops stay); other jobs go on; the
        result says, per job, what refused it (None: all its ops are stored)."""
        self._check_writable()
        entries: list[Entry] = []
        changed: set[str] = set()
        placements: list[tuple[str, dict[int, str]]] = []
        errors: list[PermaCloudError | None] = []
        for job in jobs:
            error: PermaCloudError | None = None
            for op in job.ops:
                try:
                    entry, paths = self._sign_and_merge(op)
                except PermaCloudError as exc:
                    error = exc
                    break
                entries.append(entry)
                changed |= paths
            if error is None:
                placements.extend(job.placements)
            errors.append(error)
        if entries or placements:
            self._persist(entries, changed, publish=True, placements=placements)
        return errors

    def _check_writable(self) -> None:
        if self.restoring:
            raise NamespaceRestoring(
                "the local index is being rebuilt from the network; try again when nodes are "
                "reachable (writing now could fork this device's log)"
            )

    def _sign_and_merge(self, op: Op) -> tuple[Entry, set[str]]:
        self._writer.head = self.replica.head(self.device_id)
        entry = self._writer.append(op, self.replica.knowledge(), int(time.time() * 1000))
        return entry, self.replica.apply(entry)

    # --- remote changes ---------------------------------------------------------------------

    def receive(self, entries: Iterable[Entry]) -> ReceiveResult:
        accepted: list[Entry] = []
        changed: set[str] = set()
        rejected: list[str] = []
        for entry in entries:
            if (
                entry.device_id == self.device_id
                and entry.seq <= self.replica.head(self.device_id).seq
            ):
                continue
            try:
                changed |= self.replica.receive(entry)
            except NamespaceError as error:
                rejected.append(str(error))
                logger.warning("rejected log entry: %s", error)
                continue
            accepted.append(entry)
        if accepted:
            self._persist(accepted, changed, publish=False)
        return ReceiveResult(len(accepted), changed, rejected)

    def _persist(
        self,
        entries: list[Entry],
        changed: set[str],
        *,
        publish: bool,
        placements: Sequence[tuple[str, dict[int, str]]] = (),
    ) -> None:
        if publish and changed:
            with self._local_lock:
                self._local_changed |= changed
        rows: list[ViewRow] = []
        removed: list[str] = []
        for path in changed:
            node = self.replica.view.node(path)
            if node is None:
                removed.append(path)
            else:
                rows.append(view_row(node))
        self.index.add_entries(
            ((e.device_id, e.seq, e.to_bytes()) for e in entries),
            rows,
            removed,
            publish=publish,
            placements=placements,
        )

    def take_local_changes(self) -> list[str]:
        """The paths local writes changed since the last call (sorted), for the bus."""
        with self._local_lock:
            changed, self._local_changed = self._local_changed, set()
        return sorted(changed)

    # --- snapshots --------------------------------------------------------------------------

    def make_own_snapshot(self, policy: RetentionPolicy) -> Snapshot:
        head = self.replica.head(self.device_id)
        ops = self.replica.view.ops(self.device_id, head.seq)
        return make_snapshot(
            self._writer_key, self.account_id, ops, head, policy, int(time.time() * 1000)
        )

    def load_snapshot(self, data: bytes) -> set[str]:
        """Adopt a device's signed snapshot (a device joining late starts from it)."""
        snapshot = decode_snapshot(data)
        changed = self.replica.load_snapshot(snapshot)
        self._persist([], changed, publish=False)
        self.index.save_snapshot(snapshot.device_id, snapshot.seq, data)
        return changed

    def store_own_snapshot(self, snapshot: Snapshot) -> None:
        self.index.save_snapshot(snapshot.device_id, snapshot.seq, snapshot.to_bytes())

    # --- reading ----------------------------------------------------------------------------

    def head_seq(self, device_id: str) -> int:
        return self.replica.head(device_id).seq

    def node(self, path: str) -> ViewNode | None:
        return self.replica.view.node(normalize_path(path))

    def versions(self, path: str) -> list[Version]:
        return self.replica.view.versions(normalize_path(path))
