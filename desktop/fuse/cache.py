"""The mount's on-disk cache: dirty files (the write-back journal) and clean chunks of stored files.

Dirty files are what the user wrote and the network does not have yet. Each lives in
`dirty/<id>` with a row in a WAL SQLite journal created *before* the first byte is written, so a
killed daemon finds every file it accepted and uploads it on the next start. A row records the
cap once the content is stored (cleared by the next write), so the replay knows what is done.
Dirty files are never evicted.

Creating a file is the one slow metadata step on a disk that other processes keep fsyncing
(the local nodes do, for every share): 1-2 ms here, against ~10 us to open an existing file.
So empty "spare" files are made ahead in the background (`make_spares`) and a new dirty file
takes one (its row records the file name). A spare with no row is still a spare after a crash;
any other file without a row is an orphan and is deleted at start.

Clean data is a cache of stored files keyed by cap: a sparse `clean/<key>` file plus a bitmap of
the CHUNK-sized pieces present, evicted least-recently-used when the cache is over its limit.

Synchronous and small: called from the trio thread (SQLite in WAL with synchronous=NORMAL commits
without fsync; a process crash loses nothing committed) and, for bulk copies, from workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 2 * 1024 * 1024
SPARE_PREFIX = "s"

SCHEMA = """
CREATE TABLE IF NOT EXISTS dirty (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, mtime_ns INTEGER NOT NULL,
    mode INTEGER NOT NULL, stored_cap TEXT
);
CREATE TABLE IF NOT EXISTS clean (
    key TEXT PRIMARY KEY, cap TEXT NOT NULL, size INTEGER NOT NULL, chunks BLOB NOT NULL,
    last_used REAL NOT NULL
);
"""


def chunk_count(size: int) -> int:
    return (size + CHUNK - 1) // CHUNK


def chunks_for(offset: int, length: int, size: int) -> range:
    """The chunk indexes covering [offset, offset+length) clipped to the file."""
    end = min(offset + length, size)
    if end <= offset:
        return range(0)
    return range(offset // CHUNK, (end - 1) // CHUNK + 1)


def cap_key(cap: str) -> str:
    return hashlib.blake2b(cap.encode(), digest_size=16).hexdigest()


@dataclass
class DirtyFile:
    """A file whose local content is the truth until it is stored (then `stored_cap` is set)."""

    id: int
    path: str
    mtime_ns: int
    mode: int
    size: int
    stored_cap: str | None = None
    gen: int = 0  # bumped on every change; an upload counts only if gen did not move
    file: str = ""  # its file in dirty/ (a former spare), or str(id) when empty

    @property
    def name(self) -> str:
        return self.file or str(self.id)


@dataclass
class CleanEntry:
    key: str
    cap: str
    size: int
    present: set[int]
    last_used: float

    @property
    def cached_bytes(self) -> int:
        full = len(self.present) * CHUNK
        last = chunk_count(self.size) - 1
        if last in self.present:
            full -= CHUNK - (self.size - last * CHUNK)
        return full

    @property
    def complete(self) -> bool:
        return len(self.present) == chunk_count(self.size)


def _bitmap(present: Iterable[int], count: int) -> bytes:
    out = bytearray((count + 7) // 8)
    for index in present:
        out[index // 8] |= 1 << (index % 8)
    return bytes(out)


def _from_bitmap(data: bytes) -> set[int]:
    return {i * 8 + b for i, byte in enumerate(data) for b in range(8) if byte & (1 << b)}


class Cache:
    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit
        self.dirty_dir = root / "dirty"
        self.clean_dir = root / "clean"
        for folder in (root, self.dirty_dir, self.clean_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(root / "journal.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._dirty: dict[int, DirtyFile] = {}
        self._by_path: dict[str, int] = {}
        self._clean: dict[str, CleanEntry] = {}
        self._spares: list[str] = []
        self._spare_serial = 0
        self._load()

    def close(self) -> None:
        self._db.close()

    def _load(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(dirty)")}
        if "file" not in columns:  # journals written before spare files
            self._db.execute("ALTER TABLE dirty ADD COLUMN file TEXT")
        rows = self._db.execute("SELECT id, path, mtime_ns, mode, stored_cap, file FROM dirty")
        for id_, path, mtime_ns, mode, stored, name in list(rows):
            entry = DirtyFile(
                int(id_), str(path), int(mtime_ns), int(mode), 0, stored, file=name or ""
            )
            try:
                entry.size = self.dirty_path(entry).stat().st_size
            except FileNotFoundError:
                # The row is written before the file: a crash in between left nothing to keep.
                self._db.execute("DELETE FROM dirty WHERE id = ?", (id_,))
                continue
            old = self._by_path.get(entry.path)
            if old is not None:  # only the newest file at a path counts
                self._drop_dirty_row(old)
            self._dirty[entry.id] = entry
            self._by_path[entry.path] = entry.id
        used = {e.name for e in self._dirty.values()}
        for child in self.dirty_dir.iterdir():
            if child.name in used:
                continue
            if child.name.startswith(SPARE_PREFIX) and child.stat().st_size == 0:
                self._spares.append(child.name)
            else:
                child.unlink()  # a dropped file whose unlink a crash interrupted
        self._spare_serial = max(
            (int(n[len(SPARE_PREFIX) :]) for n in self._spares if n[len(SPARE_PREFIX) :].isdigit()),
            default=0,
        )
        for key, cap, size, chunks, last_used in self._db.execute("SELECT * FROM clean"):
            self._clean[str(key)] = CleanEntry(
                str(key), str(cap), int(size), _from_bitmap(bytes(chunks)), float(last_used)
            )

    # --- dirty files ------------------------------------------------------------------------

    def dirty_path(self, entry: DirtyFile) -> Path:
        return self.dirty_dir / entry.name

    def dirty(self, id_: int) -> DirtyFile | None:
        return self._dirty.get(id_)

    def dirty_at(self, path: str) -> DirtyFile | None:
        id_ = self._by_path.get(path)
        return None if id_ is None else self._dirty[id_]

    def dirty_files(self) -> list[DirtyFile]:
        return list(self._dirty.values())

    def dirty_children(self, folder: str) -> Iterator[DirtyFile]:
        prefix = "/" if folder == "/" else folder + "/"
        for entry in self._dirty.values():
            rest = entry.path[len(prefix) :]
            if entry.path.startswith(prefix) and rest and "/" not in rest:
                yield entry

    def create_dirty(self, path: str, mode: int, mtime_ns: int) -> DirtyFile:
        """A new empty dirty file at `path` (replacing any dirty file there)."""
        entry, fd = self.create_dirty_open(path, mode, mtime_ns)
        os.close(fd)
        return entry

    def create_dirty_open(self, path: str, mode: int, mtime_ns: int) -> tuple[DirtyFile, int]:
        """`create_dirty`, returning the new file open for reading and writing (one open)."""
        old = self._by_path.get(path)
        if old is not None:
            self.drop_dirty(old)
        spare = self._spares.pop() if self._spares else None
        cursor = self._db.execute(
            "INSERT INTO dirty (path, mtime_ns, mode, file) VALUES (?, ?, ?, ?)",
            (path, mtime_ns, mode, spare),
        )
        assert cursor.lastrowid is not None
        entry = DirtyFile(cursor.lastrowid, path, mtime_ns, mode, 0, file=spare or "")
        if spare is not None:
            fd = os.open(self.dirty_path(entry), os.O_RDWR)  # empty by construction
        else:
            fd = os.open(self.dirty_path(entry), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._dirty[entry.id] = entry
        self._by_path[path] = entry.id
        return entry, fd

    def modified(self, entry: DirtyFile, size: int | None = None) -> None:
        """The content changed: not stored any more (journaled on the first change only)."""
        entry.gen += 1
        if size is not None:
            entry.size = size
        if entry.stored_cap is not None:
            entry.stored_cap = None
            self._db.execute("UPDATE dirty SET stored_cap = NULL WHERE id = ?", (entry.id,))

    def set_meta(
        self, entry: DirtyFile, *, mode: int | None = None, mtime_ns: int | None = None
    ) -> None:
        if mode is not None:
            entry.mode = mode
        if mtime_ns is not None:
            entry.mtime_ns = mtime_ns
        entry.gen += 1
        entry.stored_cap = None
        self._db.execute(
            "UPDATE dirty SET mode = ?, mtime_ns = ?, stored_cap = NULL WHERE id = ?",
            (entry.mode, entry.mtime_ns, entry.id),
        )

    def mark_stored(self, entry: DirtyFile, cap: str) -> None:
        entry.stored_cap = cap
        self._db.execute("UPDATE dirty SET stored_cap = ? WHERE id = ?", (cap, entry.id))

    def rename_dirty(self, src: str, dst: str) -> None:
        """Move dirty files at `src` or below it to `dst` (a dirty file at `dst` is dropped)."""
        if src == dst:
            return
        victim = self._by_path.get(dst)
        if victim is not None:
            self.drop_dirty(victim)
        prefix = src + "/"
        for entry in list(self._dirty.values()):
            if entry.path == src or entry.path.startswith(prefix):
                new = dst + entry.path[len(src) :]
                del self._by_path[entry.path]
                entry.path = new
                self._by_path[new] = entry.id
                self._db.execute("UPDATE dirty SET path = ? WHERE id = ?", (new, entry.id))

    def _drop_dirty_row(self, id_: int) -> DirtyFile | None:
        self._db.execute("DELETE FROM dirty WHERE id = ?", (id_,))
        entry = self._dirty.pop(id_, None)
        if entry is not None and self._by_path.get(entry.path) == id_:
            del self._by_path[entry.path]
        return entry

    def drop_dirty(self, id_: int) -> None:
        """Forget a dirty file (unlinked or replaced); open descriptors keep their data."""
        entry = self._drop_dirty_row(id_)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dirty_dir / (entry.name if entry is not None else str(id_)))

    # --- spare files ------------------------------------------------------------------------

    def spares(self) -> int:
        return len(self._spares)

    def spare_names(self, count: int) -> list[str]:
        """Names for `count` new spares (reserved here, on the calling thread)."""
        first = self._spare_serial + 1
        self._spare_serial += count
        return [f"{SPARE_PREFIX}{n}" for n in range(first, first + count)]

    def make_spares(self, names: list[str]) -> list[str]:
        """Create empty spare files (slow: run in a worker thread); returns those made."""
        made: list[str] = []
        for name in names:
            try:
                fd = os.open(self.dirty_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except OSError:
                continue
            os.close(fd)
            made.append(name)
        return made

    def add_spares(self, names: list[str]) -> None:
        self._spares.extend(names)

    def dirty_bytes(self) -> int:
        return sum(e.size for e in self._dirty.values())

    def promote(self, entry: DirtyFile) -> None:
        """A stored, closed dirty file becomes the clean cache of its cap (no copy: a rename)."""
        cap = entry.stored_cap
        assert cap is not None
        key = cap_key(cap)
        os.replace(self.dirty_path(entry), self.clean_dir / key)
        clean = CleanEntry(key, cap, entry.size, set(range(chunk_count(entry.size))), time.time())
        self._clean[key] = clean
        self._db.execute("BEGIN")
        self._save_clean(clean)
        self._db.execute("DELETE FROM dirty WHERE id = ?", (entry.id,))
        self._db.execute("COMMIT")
        self._dirty.pop(entry.id, None)
        if self._by_path.get(entry.path) == entry.id:
            del self._by_path[entry.path]

    # --- clean data -------------------------------------------------------------------------

    def clean_path(self, cap: str) -> Path:
        return self.clean_dir / cap_key(cap)

    def clean(self, cap: str) -> CleanEntry | None:
        return self._clean.get(cap_key(cap))

    def clean_entry(self, cap: str, size: int) -> CleanEntry:
        """The clean entry of `cap`, creating its (sparse) file on first use."""
        key = cap_key(cap)
        entry = self._clean.get(key)
        if entry is None or entry.size != size:
            path = self.clean_dir / key
            with open(path, "wb") as handle:
                handle.truncate(size)
            entry = CleanEntry(key, cap, size, set(), time.time())
            self._clean[key] = entry
            self._save_clean(entry)
        return entry

    def holds(self, entry: CleanEntry, chunks: range) -> bool:
        """`entry` is still cached (not evicted) and has all of `chunks`."""
        present = entry.present
        return self._clean.get(entry.key) is entry and all(c in present for c in chunks)

    def missing(self, entry: CleanEntry, chunks: range) -> list[int]:
        return [c for c in chunks if c not in entry.present]

    def add_chunks(self, entry: CleanEntry, chunks: Iterable[int]) -> None:
        """Record chunks whose bytes are already written to the clean file."""
        entry.present.update(chunks)
        entry.last_used = time.time()
        self._save_clean(entry)

    def touch(self, entry: CleanEntry) -> None:
        entry.last_used = time.time()

    def _save_clean(self, entry: CleanEntry) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO clean VALUES (?, ?, ?, ?, ?)",
            (
                entry.key,
                entry.cap,
                entry.size,
                _bitmap(entry.present, chunk_count(entry.size)),
                entry.last_used,
            ),
        )

    def clean_bytes(self) -> int:
        return sum(e.cached_bytes for e in self._clean.values())

    def evict(self, pinned: Collection[str] = ()) -> int:
        """Drop least recently used clean files until the cache fits its limit; bytes freed.

        `pinned` keys (files open right now) are kept; dirty data is never touched."""
        over = self.clean_bytes() + self.dirty_bytes() - self.limit
        freed = 0
        for entry in sorted(self._clean.values(), key=lambda e: e.last_used):
            if over - freed <= 0:
                break
            if entry.key in pinned or entry.cap in pinned:
                continue
            freed += entry.cached_bytes
            self.drop_clean(entry.key)
        return freed

    def drop_clean(self, key: str) -> None:
        self._clean.pop(key, None)
        self._db.execute("DELETE FROM clean WHERE key = ?", (key,))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.clean_dir / key)
