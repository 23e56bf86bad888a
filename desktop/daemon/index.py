"""The device's local SQLite index: log entries, the materialized namespace view, known nodes,
pending work.

Everything here can be rebuilt from the network (the entries and certificates are the truth; the
view is derived), except what this device has not yet published, which is why the outbox lives in
the same transaction as the entry it refers to. WAL with synchronous=FULL: once a method returns,
its write survives a crash of the daemon or the machine.

The class is synchronous; the daemon calls it from one worker thread at a time.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificates (device TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    device TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (device, seq)
);
CREATE TABLE IF NOT EXISTS outbox (
    kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (kind, key, seq)
);
CREATE INDEX IF NOT EXISTS outbox_by_seq ON outbox (kind, seq);
CREATE TABLE IF NOT EXISTS view (
    path TEXT PRIMARY KEY, parent TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    cap TEXT, size INTEGER NOT NULL DEFAULT 0, mtime_ns INTEGER NOT NULL DEFAULT 0,
    mode INTEGER NOT NULL DEFAULT 0, target TEXT, content_hash TEXT, conflict_of TEXT
);
CREATE INDEX IF NOT EXISTS view_by_parent ON view (parent);
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY, address TEXT NOT NULL, source TEXT NOT NULL, last_seen REAL
);
CREATE TABLE IF NOT EXISTS snapshots (
    device TEXT PRIMARY KEY, seq INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS invites (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS placements (
    cap TEXT NOT NULL, shnum INTEGER NOT NULL, node TEXT NOT NULL,
    PRIMARY KEY (cap, shnum, node)
);
"""


@dataclass(frozen=True)
class ViewRow:
    path: str
    parent: str
    name: str
    kind: str  # "file", "dir" or "link"
    cap: str | None = None
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    target: str | None = None
    content_hash: str | None = None
    conflict_of: str | None = None


@dataclass(frozen=True)
class NodeRow:
    id: str
    address: str
    source: str
    last_seen: float | None = None


class Index:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.created = not path.exists()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # --- certificates and entries -----------------------------------------------------------

    def add_certificate(self, device: str, data: bytes, *, publish: bool) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO certificates VALUES (?, ?)", (device, data))
            if publish:
                db.execute("INSERT OR IGNORE INTO outbox VALUES ('cert', ?, 0)", (device,))

    def certificates(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._db.execute("SELECT data FROM certificates")]

    def add_entries(
        self,
        entries: Iterable[tuple[str, int, bytes]],
        rows: Iterable[ViewRow] = (),
        removed: Iterable[str] = (),
        *,
        publish: bool,
        placements: Iterable[tuple[str, dict[int, str]]] = (),
    ) -> None:
        """Store entries, the view rows they changed and the placements of the files they
        name in one transaction (one fsync however many)."""
        with self.transaction() as db:
            for device, seq, data in entries:
                db.execute("INSERT OR IGNORE INTO entries VALUES (?, ?, ?)", (device, seq, data))
                if publish:
                    db.execute("INSERT OR IGNORE INTO outbox VALUES ('entry', ?, ?)", (device, seq))
            self._write_view(db, rows, removed)
            for cap, where in placements:
                db.executemany(
                    "INSERT OR IGNORE INTO placements VALUES (?, ?, ?)",
                    ((cap, shnum, node) for shnum, node in where.items()),
                )

    def entries(
        self, device: str | None = None, after: int = 0
    ) -> Iterator[tuple[str, int, bytes]]:
        if device is None:
            cursor = self._db.execute("SELECT device, seq, data FROM entries ORDER BY device, seq")
        else:
            cursor = self._db.execute(
                "SELECT device, seq, data FROM entries WHERE device = ? AND seq > ? ORDER BY seq",
                (device, after),
            )
        for device_id, seq, data in cursor:
            yield str(device_id), int(seq), bytes(data)

    def entry(self, device: str, seq: int) -> bytes | None:
        row = self._db.execute(
            "SELECT data FROM entries WHERE device = ? AND seq = ?", (device, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def entries_at(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], bytes]:
        """Several stored entries at once (the publisher reads a whole outbox chunk)."""
        out: dict[tuple[str, int], bytes] = {}
        for device, seq in keys:
            row = self._db.execute(
                "SELECT data FROM entries WHERE device = ? AND seq = ?", (device, seq)
            ).fetchone()
            if row is not None:
                out[(device, seq)] = bytes(row[0])
        return out

    def last_seq(self, device: str) -> int:
        row = self._db.execute(
            "SELECT MAX(seq) FROM entries WHERE device = ?", (device,)
        ).fetchone()
        return int(row[0] or 0)

    def entry_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def save_snapshot(self, device: str, seq: int, data: bytes) -> None:
        """Keep a device's latest snapshot; entries it covers are no longer needed."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (device, seq, data))
            db.execute("DELETE FROM entries WHERE device = ? AND seq <= ?", (device, seq))

    def snapshots(self) -> list[tuple[str, int, bytes]]:
        cursor = self._db.execute("SELECT device, seq, data FROM snapshots ORDER BY device")
        return [(str(d), int(s), bytes(b)) for d, s, b in cursor]

    def enqueue(self, kind: str, key: str, seq: int) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?)", (kind, key, seq))

    def outbox(self, limit: int = -1, kind: str | None = None) -> list[tuple[str, str, int]]:
        """What is still to publish (of one `kind` if given), oldest entries first, at most
        `limit` items if that is >= 0."""
        if kind is None:
            cursor = self._db.execute(
                "SELECT kind, key, seq FROM outbox ORDER BY seq LIMIT ?", (limit,)
            )
        else:
            cursor = self._db.execute(
                "SELECT kind, key, seq FROM outbox WHERE kind = ? ORDER BY seq LIMIT ?",
                (kind, limit),
            )
        return [(str(k), str(key), int(s)) for k, key, s in cursor]

    def outbox_size(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def mark_published(self, items: Iterable[tuple[str, str, int]]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM outbox WHERE kind = ? AND key = ? AND seq = ?", items)

    # --- the view ---------------------------------------------------------------------------

    @staticmethod
    def _write_view(
        db: sqlite3.Connection, rows: Iterable[ViewRow], removed: Iterable[str]
    ) -> None:
        db.executemany("DELETE FROM view WHERE path = ?", ((p,) for p in removed))
        db.executemany(
            "INSERT OR REPLACE INTO view VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    r.path,
                    r.parent,
                    r.name,
                    r.kind,
                    r.cap,
                    r.size,
                    r.mtime_ns,
                    r.mode,
                    r.target,
                    r.content_hash,
                    r.conflict_of,
                )
                for r in rows
            ),
        )

    def replace_view(self, rows: Iterable[ViewRow]) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM view")
            self._write_view(db, rows, ())

    def lookup(self, path: str) -> ViewRow | None:
        row = self._db.execute("SELECT * FROM view WHERE path = ?", (path,)).fetchone()
        return None if row is None else ViewRow(*row)

    def listdir(self, path: str) -> list[ViewRow]:
        cursor = self._db.execute("SELECT * FROM view WHERE parent = ? ORDER BY name", (path,))
        return [ViewRow(*row) for row in cursor]

    def conflict_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM view WHERE conflict_of IS NOT NULL").fetchone()
        return int(row[0])

    def view_totals(self) -> tuple[int, int]:
        """(number of files, bytes in them)."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM view WHERE kind = 'file'"
        ).fetchone()
        return int(row[0]), int(row[1])

    # --- nodes ------------------------------------------------------------------------------

    def upsert_node(self, node_id: str, address: str, source: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO nodes VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "address = excluded.address, source = excluded.source, "
                "last_seen = excluded.last_seen",
                (node_id, address, source, time.time()),
            )

    def nodes(self) -> list[NodeRow]:
        cursor = self._db.execute("SELECT id, address, source, last_seen FROM nodes ORDER BY id")
        return [NodeRow(str(a), str(b), str(c), d) for a, b, c, d in cursor]

    # --- invites ----------------------------------------------------------------------------

    def save_invite(self, invite_id: str, record_json: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO invites VALUES (?, ?)", (invite_id, record_json))

    def invites(self) -> list[tuple[str, str]]:
        return [(str(a), str(b)) for a, b in self._db.execute("SELECT id, record FROM invites")]

    # --- placements -------------------------------------------------------------------------

    def placement_count(self, cap: str) -> int:
        """How many distinct shares of a file this device placed (the mount's "stored n/n")."""
        row = self._db.execute(
            "SELECT COUNT(DISTINCT shnum) FROM placements WHERE cap = ?", (cap,)
        ).fetchone()
        return int(row[0])

    def add_placements(self, cap: str, placements: dict[int, str]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO placements VALUES (?, ?, ?)",
                ((cap, shnum, node) for shnum, node in placements.items()),
            )
