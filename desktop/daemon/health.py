"""Durability settings, the account's share-owner key, what the account references, and the
local record of each file's health.

Who owns a share (and so may renew, repair into or delete it): nodes let only the key that
created a share renew or delete it. If that were the uploading device's key, a file uploaded by
a laptop that was later sold could never have its leases renewed and would be collected. So
every device of an account signs share requests with one *storage key* derived from the
account secret (which every device holds, and nodes never see): any device renews, a repair
from any device writes under the same owner (idempotent creates), and a node learns nothing
more than before except that these shares belong together. Records still use device keys.

What is referenced: every file cap of every namespace version the retention policy keeps
(current files, conflict copies, old versions). Leases of anything else are not renewed:
deleted and forgotten files expire and the nodes' lease sweep collects them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from desktop.core.namespace import FileInfo, RetentionPolicy
from desktop.core.namespace.snapshot import kept_positions
from desktop.core.namespace.view import Version
from desktop.daemon.index import Index
from desktop.daemon.namespace import Namespace
from desktop.knobs import env_float, env_int, env_optional_int
from desktop.net.identity import DeviceKey

_STORAGE_OWNER = "permacloud 2026 account storage owner key v1"
DAY = 86400


@dataclass(frozen=True)
class DurabilitySettings:
    """Knobs of the checker; environment variables let tests shrink hours to seconds."""

    check_interval: float  # seconds between two check rounds (PERMACLOUD_CHECK_INTERVAL)
    lease_seconds: int  # lease given at upload and renewal (PERMACLOUD_LEASE_SECONDS)
    repair_threshold: int | None  # None: RepairPolicy's default (PERMACLOUD_REPAIR_THRESHOLD)
    verify_per_round: int  # shares fully verified per file per round (PERMACLOUD_VERIFY_SHARES)
    verify_every: int  # verify in one round out of this many (PERMACLOUD_VERIFY_EVERY)
    # A node not online now but seen within this many seconds still counts for its shares
    # (laptops sleep; repairing at once causes repair storms): PERMACLOUD_REPAIR_GRACE.
    repair_grace: float = 72 * 3600.0

    @classmethod
    def from_env(cls) -> DurabilitySettings:
        return cls(
            check_interval=env_float("PERMACLOUD_CHECK_INTERVAL", 3600.0),
            lease_seconds=env_int("PERMACLOUD_LEASE_SECONDS", 365 * DAY) or 365 * DAY,
            repair_threshold=env_optional_int("PERMACLOUD_REPAIR_THRESHOLD"),
            verify_per_round=env_int("PERMACLOUD_VERIFY_SHARES", 1),
            verify_every=max(1, env_int("PERMACLOUD_VERIFY_EVERY", 24)),
            repair_grace=env_float("PERMACLOUD_REPAIR_GRACE", 72 * 3600.0),
        )


def retention_policy() -> RetentionPolicy:
    """Which old versions the account keeps (and so keeps alive on the nodes).

    PERMACLOUD_KEEP_VERSIONS / PERMACLOUD_KEEP_DAYS override the defaults (100 versions or a
    year); snapshots prune history with the same policy.
    """
    return RetentionPolicy(
        keep_last=env_int("PERMACLOUD_KEEP_VERSIONS", 100),
        keep_days=env_int("PERMACLOUD_KEEP_DAYS", 365),
    )


def storage_owner_key(account_secret: bytes) -> DeviceKey:
    """The Ed25519 key every device of the account signs share requests with."""
    seed = blake3.blake3(account_secret, derive_key_context=_STORAGE_OWNER).digest()
    return DeviceKey(Ed25519PrivateKey.from_private_bytes(seed))


def referenced_caps(
    namespace: Namespace, policy: RetentionPolicy, now_ms: int | None = None
) -> dict[str, str]:
    """cap -> one path naming it, for every file version the account keeps."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    view = namespace.replica.view
    found: dict[str, str] = {}
    for node in view.tree().values():
        if isinstance(node.node, FileInfo):
            found.setdefault(node.node.cap, node.path)
    for path in view.paths():
        by_device: dict[str, list[Version]] = {}
        for version in view.versions(path):
            by_device.setdefault(version.device_id, []).append(version)
        for versions in by_device.values():
            for version in _retained(sorted(versions, key=lambda v: v.seq), policy, now_ms):
                if isinstance(version.node, FileInfo):
                    found.setdefault(version.node.cap, path)
    return found


def _retained(versions: list[Version], policy: RetentionPolicy, now_ms: int) -> list[Version]:
    """The snapshot's retention rule (`kept_positions`), applied to one device's versions."""
    if not versions:
        return []
    positions = kept_positions(
        [v.timestamp_ms for v in versions], versions[-1].node is None, policy, now_ms
    )
    return [versions[i] for i in positions]


def placements_of(index: Index, cap: str) -> list[tuple[int, str]]:
    """(share number, node) the index knows for a file: uploads and repairs record them."""
    with index.transaction() as db:
        rows = db.execute("SELECT shnum, node FROM placements WHERE cap = ?", (cap,)).fetchall()
    return [(int(shnum), str(node)) for shnum, node in rows]


HEALTH_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS file_health (
        cap TEXT PRIMARY KEY, path TEXT NOT NULL, k INTEGER NOT NULL, n INTEGER NOT NULL,
        healthy INTEGER NOT NULL, status TEXT NOT NULL, checked REAL NOT NULL,
        repaired REAL, error TEXT
    )""",
)


@dataclass(frozen=True)
class HealthRow:
    cap: str
    path: str
    k: int
    n: int
    healthy: int
    status: str
    checked: float
    repaired: float | None = None
    error: str | None = None

    def public(self) -> dict[str, object]:
        """Without the read cap (IPC answers may be shown or logged)."""
        return {
            "path": self.path,
            "k": self.k,
            "n": self.n,
            "healthy": self.healthy,
            "status": self.status,
            "checked": self.checked,
            "repaired": self.repaired,
            "error": self.error,
        }


class HealthStore:
    """The `file_health` table in the daemon's index (same database, same DB thread)."""

    def __init__(self, index: Index) -> None:
        self.index = index
        with index.transaction() as db:
            for statement in HEALTH_SCHEMA:
                db.execute(statement)

    def record(self, row: HealthRow) -> None:
        with self.index.transaction() as db:
            previous = db.execute(
                "SELECT repaired FROM file_health WHERE cap = ?", (row.cap,)
            ).fetchone()
            repaired = row.repaired if row.repaired is not None else (previous or [None])[0]
            db.execute(
                "INSERT OR REPLACE INTO file_health VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.cap,
                    row.path,
                    row.k,
                    row.n,
                    row.healthy,
                    row.status,
                    row.checked,
                    repaired,
                    row.error,
                ),
            )

    def forget_except(self, caps: set[str]) -> None:
        with self.index.transaction() as db:
            known = [str(r[0]) for r in db.execute("SELECT cap FROM file_health")]
            db.executemany(
                "DELETE FROM file_health WHERE cap = ?", ((c,) for c in known if c not in caps)
            )

    def rows(self) -> list[HealthRow]:
        with self.index.transaction() as db:
            cursor = db.execute("SELECT * FROM file_health ORDER BY path")
            return [HealthRow(*r) for r in cursor.fetchall()]

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows():
            out[row.status] = out.get(row.status, 0) + 1
        return out
