"""The mount's pure parts without a mount: inode table, upload planner, cache journal, errnos."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from desktop.core.namespace import InvalidPath, VersionNotFound
from desktop.fuse.cache import CHUNK, Cache, chunks_for
from desktop.fuse.errnos import check_name, errno_for
from desktop.fuse.fetch import runs
from desktop.fuse.inodes import ROOT_INODE, InodeTable
from desktop.fuse.planner import UploadPlanner


def test_inodes_rename_detach_forget() -> None:
    table = InodeTable()
    a = table.lookup("/d")
    b = table.lookup("/d/f")
    table.rename("/d", "/e")
    assert table.path(a) == "/e" and table.path(b) == "/e/f"
    c = table.lookup("/g")
    table.rename("/e/f", "/g")  # replaces /g: its inode is detached but still valid
    assert table.path(b) == "/g" and table.path(c) is None
    table.forget(c, 1)
    with pytest.raises(KeyError):
        table.path(c)
    table.forget(ROOT_INODE, 5)
    assert table.path(ROOT_INODE) == "/"


def test_planner_debounce_open_urgent_and_backoff() -> None:
    planner = UploadPlanner(delay=2.0)
    planner.opened(1, now=0.0)
    planner.changed(1, now=0.5)
    assert planner.due(10.0) == []  # open for writing: not before close
    planner.closed(1, now=1.0)
    assert planner.due(2.5) == []  # debounce
    assert planner.due(3.0) == [1]
    planner.finished(1, 3.5, ok=False)
    assert planner.due(4.0) == [] and planner.next_due() == pytest.approx(3.5 + 5.0)
    assert planner.due(9.0) == [1]
    planner.finished(1, 9.0, ok=True)
    assert 1 not in planner
    planner.opened(2, now=0.0)
    planner.urgent(2, now=1.0)  # fsync while open
    assert planner.due(1.0) == [2]
    planner.finished(2, 2.0, ok=True, again=True)
    assert planner.due(2.0) == [2]


def test_cache_journal_survives_reopen_and_lru(tmp_path: Path) -> None:
    cache = Cache(tmp_path, limit=3 * CHUNK)
    entry = cache.create_dirty("/a.txt", 0o600, 1)
    cache.dirty_path(entry).write_bytes(b"hello")
    cache.modified(entry, 5)
    cache.rename_dirty("/a.txt", "/b.txt")
    stored = cache.create_dirty("/c.txt", 0o644, 2)
    cache.mark_stored(stored, "pc1r:fake")
    cache.close()
    again = Cache(tmp_path, limit=3 * CHUNK)
    reloaded = again.dirty_at("/b.txt")
    assert reloaded is not None and reloaded.size == 5 and reloaded.mode == 0o600
    assert again.dirty_at("/c.txt") is not None and again.dirty_at("/c.txt").stored_cap  # type: ignore[union-attr]
    old = again.clean_entry("cap-old", 2 * CHUNK)
    again.add_chunks(old, [0, 1])
    new = again.clean_entry("cap-new", 2 * CHUNK)
    again.add_chunks(new, [0, 1])
    old.last_used, new.last_used = 1.0, 2.0
    again.evict()
    assert again.clean("cap-old") is None and again.clean("cap-new") is not None
    assert again.dirty_at("/b.txt") is not None  # dirty data is never evicted


def test_chunk_math_and_errnos() -> None:
    assert list(chunks_for(0, 1, 10)) == [0]
    assert list(chunks_for(CHUNK - 1, 2, 3 * CHUNK)) == [0, 1]
    assert list(chunks_for(5 * CHUNK, 10, 3 * CHUNK)) == []
    assert runs([5, 1, 2, 3, 9]) == [range(1, 4), range(5, 6), range(9, 10)]
    assert errno_for(VersionNotFound("x")) == errno.ENOENT
    assert errno_for(InvalidPath("path component longer than 255 bytes")) == errno.ENAMETOOLONG
    assert errno_for(OSError(errno.ENOSPC, "full")) == errno.ENOSPC
    assert errno_for(RuntimeError("?")) == errno.EIO
    with pytest.raises(OSError) as info:
        check_name(b"x" * 256)
    assert info.value.errno == errno.ENAMETOOLONG
