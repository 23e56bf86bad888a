"""Per-folder sync state in SQLite: the base (last synced state) of every path.

Everything here can be rebuilt: with no base, a path present and equal on both sides is simply
adopted again. That is what makes a crash at any point harmless (nothing lost, nothing pushed
twice); WAL with synchronous=NORMAL is therefore enough. Synchronous: the engine calls it from
its own worker thread, one call at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from desktop.sync.planner import BaseEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS base (
    rel TEXT PRIMARY KEY, parent TEXT NOT NULL, kind TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
    mode INTEGER NOT NULL, target TEXT, content_hash TEXT, cap TEXT
);
CREATE INDEX IF NOT EXISTS base_parent ON base (parent);
CREATE INDEX IF NOT EXISTS base_inode ON base (inode);
CREATE INDEX IF NOT EXISTS base_hash ON base (content_hash);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = "kind, size, mtime_ns, inode, mode, target, content_hash, cap"


def parent_of(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def _entry(row: tuple[object, ...]) -> BaseEntry:
    kind, size, mtime_ns, inode, mode, target, content_hash, cap = row
    return BaseEntry(
        str(kind),
        int(size),  # type: ignore[call-overload]
        int(mtime_ns),  # type: ignore[call-overload]
        int(inode),  # type: ignore[call-overload]
        int(mode),  # type: ignore[call-overload]
        None if target is None else str(target),
        None if content_hash is None else str(content_hash),
        None if cap is None else str(cap),
    )


class SyncState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, rel: str) -> BaseEntry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM base WHERE rel = ?", (rel,)).fetchone()
        return None if row is None else _entry(row)

    def put(self, rel: str, entry: BaseEntry) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO base VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rel,
                parent_of(rel),
                entry.kind,
                entry.size,
                entry.mtime_ns,
                entry.inode,
                entry.mode,
                entry.target,
                entry.content_hash,
                entry.cap,
            ),
        )

    def delete(self, rel: str) -> None:
        self._db.execute("DELETE FROM base WHERE rel = ?", (rel,))

    def delete_tree(self, rel: str) -> None:
        """Forget `rel` and everything below it."""
        self._db.execute(
            "DELETE FROM base WHERE rel = ? OR (rel >= ? AND rel < ?)", (rel, rel + "/", rel + "0")
        )

    def move_tree(self, src: str, dst: str) -> None:
        """Re-key `src` and everything below it to `dst` (a rename both sides agree on)."""
        with self._transaction():
            rows = self._db.execute(
                f"SELECT rel, {_COLUMNS} FROM base WHERE rel = ? OR (rel >= ? AND rel < ?)",
                (src, src + "/", src + "0"),
            ).fetchall()
            self.delete_tree(dst)
            self.delete_tree(src)
            for row in rows:
                self.put(dst + str(row[0])[len(src) :], _entry(row[1:]))

    def children(self, rel: str) -> list[str]:
        """Names of base entries directly in folder `rel` ("" for the root)."""
        cursor = self._db.execute("SELECT rel FROM base WHERE parent = ? AND rel != ''", (rel,))
        return [str(r[0]).rsplit("/", 1)[-1] for r in cursor]

    def by_inode(self, inode: int) -> list[tuple[str, BaseEntry]]:
        cursor = self._db.execute(f"SELECT rel, {_COLUMNS} FROM base WHERE inode = ?", (inode,))
        return [(str(r[0]), _entry(r[1:])) for r in cursor]

    def by_hash(self, content_hash: str) -> list[tuple[str, BaseEntry]]:
        cursor = self._db.execute(
            f"SELECT rel, {_COLUMNS} FROM base WHERE content_hash = ? LIMIT 50", (content_hash,)
        )
        return [(str(r[0]), _entry(r[1:])) for r in cursor]

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM base").fetchone()[0])

    def conflict_paths(self) -> list[str]:
        cursor = self._db.execute("SELECT rel FROM base WHERE rel LIKE '%.sync-conflict-%'")
        return [str(r[0]) for r in cursor]

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN")

        def __exit__(self, kind: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if kind is not None else "COMMIT")

    def _transaction(self) -> SyncState._Tx:
        return SyncState._Tx(self._db)

    def iter_rels(self) -> Iterator[str]:
        """Every base path, in batches so the whole tree is never held at once."""
        last = ""
        while True:
            rows = self._db.execute(
                "SELECT rel FROM base WHERE rel > ? ORDER BY rel LIMIT 1000", (last,)
            ).fetchall()
            if not rows:
                return
            for (rel,) in rows:
                yield str(rel)
            last = str(rows[-1][0])
