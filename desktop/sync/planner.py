"""The three-way decision for one path of a sync folder: local now, base, remote now.

Pure (no disk, no trio): the engine gathers the three states and executes what comes out. The
base is what both sides held at the last successful sync of the path; a side "changed" when its
content (kind, content hash or link target, file mode) differs from the base. Only content
counts: a file whose mtime moved but whose bytes did not is re-recorded (ADOPT), not uploaded.

    local  base  remote         -> action
    -      -     -              -> NOTHING
    -      -     R              -> PULL
    L      -     -              -> PUSH
    L      -     R   same       -> ADOPT
    L      -     R   different  -> CONFLICT (two independent creations)
    -      B     -              -> FORGET
    -      B     R   unchanged  -> DELETE_REMOTE
    -      B     R   changed    -> PULL (a modification beats a concurrent delete)
    L      B     -   unchanged  -> DELETE_LOCAL
    L      B     -   changed    -> PUSH
    L      B     R              -> by who changed: nobody NOTHING/ADOPT, one side PUSH/PULL,
                                   both: same content ADOPT, else CONFLICT

A conflict copy never gets a conflict of its own: when both sides changed one, this device's
version is pushed (the other one stays in the namespace's history).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Action(enum.Enum):
    NOTHING = "nothing"
    ADOPT = "adopt"  # both sides agree: record them as the new base
    FORGET = "forget"  # gone on both sides: drop the base
    PUSH = "push"
    PULL = "pull"
    DELETE_LOCAL = "delete-local"
    DELETE_REMOTE = "delete-remote"
    CONFLICT = "conflict"  # move the local version aside as a conflict copy, then pull

    @property
    def deletes(self) -> bool:
        return self in (Action.DELETE_LOCAL, Action.DELETE_REMOTE)


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """What `lstat` (and, for a changed file, hashing) says about a local path."""

    kind: str  # "file", "dir" or "link"
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    mode: int = 0
    target: str | None = None
    content_hash: str | None = None


@dataclass(frozen=True, slots=True)
class BaseEntry:
    """The state of a path at its last sync: the local fingerprint and the content."""

    kind: str
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    mode: int = 0
    target: str | None = None
    content_hash: str | None = None
    cap: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """A namespace node under the folder's remote root."""

    kind: str
    size: int = 0
    mtime_ns: int = 0
    mode: int = 0
    target: str | None = None
    content_hash: str | None = None
    cap: str | None = None
    conflict_of: str | None = None


Entry = LocalEntry | BaseEntry | RemoteEntry


def same_content(a: Entry, b: Entry) -> bool:
    """Kind and bytes (or link target) equal; modes and times do not matter here."""
    if a.kind != b.kind:
        return False
    if a.kind == "file":
        return a.content_hash is not None and a.content_hash == b.content_hash
    if a.kind == "link":
        return a.target == b.target
    return True


def same_state(a: Entry, b: Entry) -> bool:
    """Same content and, for files, the same permission bits (which sync carries too)."""
    if not same_content(a, b):
        return False
    return a.kind != "file" or (a.mode & 0o7777) == (b.mode & 0o7777)


def fingerprint_matches(local: LocalEntry, base: BaseEntry) -> bool:
    """The local path is exactly as synced last time (no need to read it again)."""
    if local.kind != base.kind:
        return False
    if local.kind == "file":
        return (local.size, local.mtime_ns, local.inode, local.mode & 0o7777) == (
            base.size,
            base.mtime_ns,
            base.inode,
            base.mode & 0o7777,
        )
    if local.kind == "link":
        return local.target == base.target
    return True


def needs_hash(local: LocalEntry | None, base: BaseEntry | None) -> bool:
    """Whether the engine must read the local file before `plan` can decide."""
    if local is None or local.kind != "file" or local.content_hash is not None:
        return False
    return base is None or not fingerprint_matches(local, base)


def with_base_hash(local: LocalEntry, base: BaseEntry | None) -> LocalEntry:
    """A local file unchanged since the base has the base's content hash."""
    if (
        local.kind == "file"
        and local.content_hash is None
        and base is not None
        and fingerprint_matches(local, base)
    ):
        return replace(local, content_hash=base.content_hash)
    return local


def plan(
    local: LocalEntry | None,
    base: BaseEntry | None,
    remote: RemoteEntry | None,
    *,
    conflict_copy: bool = False,
) -> Action:
    """The action for one path (see the module docstring for the table)."""
    if local is not None:
        local = with_base_hash(local, base)
        if local.kind == "file" and local.content_hash is None:
            raise ValueError("hash the local file first (see needs_hash)")
    if base is None:
        if local is None:
            return Action.NOTHING if remote is None else Action.PULL
        if remote is None:
            return Action.PUSH
        return _both_new_or_changed(local, remote, conflict_copy)
    if local is None:
        if remote is None:
            return Action.FORGET
        return Action.DELETE_REMOTE if same_state(remote, base) else Action.PULL
    local_changed = not same_state(local, base)
    if remote is None:
        return Action.PUSH if local_changed else Action.DELETE_LOCAL
    remote_changed = not same_state(remote, base)
    if not local_changed and not remote_changed:
        if fingerprint_matches(local, base) and remote.cap == base.cap:
            return Action.NOTHING
        return Action.ADOPT
    if local_changed and not remote_changed:
        return Action.PUSH
    if remote_changed and not local_changed:
        if local.kind == "dir" and remote.kind != "dir":
            return Action.CONFLICT  # never drop a local folder (and what is in it) for a file
        return Action.PULL
    return _both_new_or_changed(local, remote, conflict_copy)


def _both_new_or_changed(local: LocalEntry, remote: RemoteEntry, conflict_copy: bool) -> Action:
    if same_state(local, remote):
        return Action.ADOPT
    if same_content(local, remote) or conflict_copy:
        return Action.PUSH  # only the mode differs, or a copy: this device's version goes up
    return Action.CONFLICT


# --- renames ---------------------------------------------------------------------------------


def local_rename_source(
    new: LocalEntry,
    candidate: BaseEntry,
    local_at_src: LocalEntry | None,
    remote_at_src: RemoteEntry | None,
) -> bool:
    """A new local path is the base entry `candidate` moved here: same inode and fingerprint,
    gone from its old local name, and unchanged in the namespace (so moving it there is safe)."""
    if local_at_src is not None and local_at_src.inode == candidate.inode:
        return False
    if remote_at_src is None or not same_state(remote_at_src, candidate):
        return False
    if new.kind != candidate.kind or new.inode != candidate.inode:
        return False
    if new.kind == "file":
        return (new.size, new.mtime_ns) == (candidate.size, candidate.mtime_ns)
    if new.kind == "link":
        return new.target == candidate.target
    return True


def remote_rename_source(
    new: RemoteEntry,
    candidate: BaseEntry,
    local_at_src: LocalEntry | None,
    remote_at_src: RemoteEntry | None,
) -> bool:
    """A new remote file is the base entry `candidate` moved there by another device: same
    content, gone from its old remote name, and still untouched locally (so a local rename
    replaces a download)."""
    if remote_at_src is not None or local_at_src is None:
        return False
    if new.kind != "file" or candidate.kind != "file" or not same_content(new, candidate):
        return False
    return fingerprint_matches(local_at_src, candidate)
