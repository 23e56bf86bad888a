"""Reading the local side of a sync folder: one path's state, one folder's names, hashes.

Blocking file-system calls; the engine runs them through `trio.to_thread`. Listing is one
folder at a time (`os.scandir`), so a 100k-file tree is never held in memory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import blake3

from desktop.sync.planner import LocalEntry

HASH_CHUNK = 4 << 20


def local_entry(path: Path) -> LocalEntry | None:
    """The path as sync sees it (symlinks are links, never followed); None when absent or a
    kind sync does not carry (sockets, fifos, devices)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return entry_from_stat(path, st)


def entry_from_stat(path: Path, st: os.stat_result) -> LocalEntry | None:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISREG(st.st_mode):
        return LocalEntry("file", st.st_size, st.st_mtime_ns, st.st_ino, mode)
    if stat.S_ISDIR(st.st_mode):
        return LocalEntry("dir", 0, st.st_mtime_ns, st.st_ino, mode)
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except OSError:
            return None
        return LocalEntry("link", 0, st.st_mtime_ns, st.st_ino, mode, target)
    return None


def list_names(path: Path) -> list[str]:
    """Names in a local folder (empty when it is not one)."""
    try:
        with os.scandir(path) as it:
            return [e.name for e in it]
    except (FileNotFoundError, NotADirectoryError):
        return []


def hash_file(path: Path) -> tuple[str, LocalEntry | None]:
    """BLAKE3 of the content (the same digest `put` and the mount record) and the file's state
    after reading, so a file that changed while it was read is noticed."""
    hasher = blake3.blake3()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(HASH_CHUNK):
            hasher.update(chunk)
    return str(hasher.hexdigest()), local_entry(path)
