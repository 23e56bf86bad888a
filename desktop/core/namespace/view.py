"""The merged view of an account's namespace, updated one path operation at a time.

Merge semantics (a pure function of the SET of path operations, whatever their arrival order):
- Operation a happened before b when a.vv <= b.vv pointwise (ties of equal vectors, which honest
  writers never produce, are broken by (device, seq, sub) so this stays a strict partial order).
- For each path the view keeps the frontier: the operations no other operation on that path
  happened after. Inserting is O(frontier): an op dominated by a frontier op is history only;
  otherwise it evicts the frontier ops it dominates. Transitivity makes this order independent.
- Frontier with files/links: the latest (timestamp, device, seq) wins the name; every other one
  with different content becomes a conflict copy `NAME.sync-conflict-YYYYMMDD-HHMMSS-DEV.EXT`
  (named after its own timestamp and device). Same content hash: no copy. A path that is itself a
  conflict copy never gets copies of its own: the losers stay in `versions()`.
- Removals (delete/rmdir) in the frontier only win when no create is concurrent with them:
  delete vs concurrent modify keeps the modification.
- A directory (explicit mkdir in the frontier, or any live path below it) wins its name over a
  concurrent file: the file(s) become conflict copies next to it.
- Rename = removal at every old name + creation at every new name, carried by one entry. A
  concurrent edit of the old name survives at the old name (delete vs modify), the renamed
  content lives at the new name; a file created concurrently inside a renamed directory stays
  in the old directory, which then still exists. Nothing is lost, nothing is silently merged.
- Conflict copies are derived from the frontier, so every replica names them alike. A copy ends
  when a later write to the original saw the losing version, or when a removal at the copy's
  name saw it; `materialize_conflicts` turns copies into regular files (puts) that outlive that.
- Every operation stays in `versions(path)` until a snapshot's retention policy drops it.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from desktop.core.namespace.conflicts import conflict_name, is_conflict_copy
from desktop.core.namespace.errors import InvalidPath, VersionNotFound
from desktop.core.namespace.ops import (
    DeleteOp,
    DirInfo,
    FileInfo,
    LinkInfo,
    Node,
    Op,
    PathOp,
    PutOp,
    RenameOp,
    RmdirOp,
    rename_op,
)
from desktop.core.namespace.paths import ROOT, ancestors, basename, join, normalize_path, parent


def happened_before(a: PathOp, b: PathOp) -> bool:
    if a.vv == b.vv:
        return a.key < b.key
    return a.vv.leq(b.vv)


def _winner_key(op: PathOp) -> tuple[int, str, int, int]:
    return (op.timestamp_ms, op.device, op.seq, op.sub)


def history_key(op: PathOp) -> tuple[int, int, str, int, int]:
    """A deterministic total order that extends causality (vv sums grow along it)."""
    return (op.vv.total(), op.timestamp_ms, op.device, op.seq, op.sub)


def _content(node: Node) -> tuple[str, str]:
    if isinstance(node, FileInfo):
        return ("file", node.content_hash)
    if isinstance(node, LinkInfo):
        return ("link", node.target)
    return ("dir", "")


@dataclass(frozen=True, slots=True)
class ViewNode:
    """What lives at a path in the merged tree."""

    path: str
    node: Node
    source: PathOp | None  # None for a directory that exists only because of its contents
    conflict_of: str | None = None  # original path when this is a conflict copy


@dataclass(frozen=True, slots=True)
class Version:
    """One recorded state of a path (number counts from 1, oldest first)."""

    number: int
    path: str
    device_id: str
    seq: int
    timestamp_ms: int
    node: Node | None

    @property
    def deleted(self) -> bool:
        return self.node is None

    @property
    def file(self) -> FileInfo | None:
        return self.node if isinstance(self.node, FileInfo) else None


@dataclass(slots=True)
class _Resolution:
    files: tuple[PathOp, ...] = ()  # distinct-content file/link ops, winner first
    dir_op: PathOp | None = None

    @property
    def live(self) -> bool:
        return bool(self.files) or self.dir_op is not None


@dataclass(slots=True)
class _PathState:
    frontier: list[PathOp] = field(default_factory=list)
    history: list[PathOp] = field(default_factory=list)
    resolution: _Resolution = field(default_factory=_Resolution)
    copies: tuple[str, ...] = ()


def _resolve(frontier: list[PathOp]) -> _Resolution:
    dirs = [op for op in frontier if isinstance(op.node, DirInfo)]
    files = sorted(
        (op for op in frontier if isinstance(op.node, FileInfo | LinkInfo)),
        key=_winner_key,
        reverse=True,
    )
    distinct: list[PathOp] = []
    seen: set[tuple[str, str]] = set()
    for op in files:
        assert op.node is not None
        content = _content(op.node)
        if content not in seen:
            seen.add(content)
            distinct.append(op)
    dir_op = max(dirs, key=_winner_key) if dirs else None
    return _Resolution(tuple(distinct), dir_op)


class NamespaceView:
    """In-memory merged tree; feed it verified path operations (see Replica for verification)."""

    def __init__(self) -> None:
        self._paths: dict[str, _PathState] = {}
        self._applied: set[tuple[str, int, int]] = set()
        self._live_below: dict[str, int] = {}
        self._children: dict[str, set[str]] = {}
        self._copy_origin: dict[str, tuple[str, PathOp]] = {}
        self._copy_children: dict[str, set[str]] = {}

    # --- updating ---------------------------------------------------------------------------

    def apply(self, ops: Iterable[PathOp]) -> set[str]:
        """Merge operations (idempotent); return the paths whose node may have changed."""
        changed: set[str] = set()
        for op in ops:
            if op.key in self._applied:
                continue
            self._applied.add(op.key)
            state = self._state(op.path)
            state.history.append(op)
            if any(happened_before(op, f) for f in state.frontier):
                continue
            state.frontier = [f for f in state.frontier if not happened_before(f, op)]
            state.frontier.append(op)
            self._refresh(op.path, changed)
        return changed

    def _state(self, path: str) -> _PathState:
        state = self._paths.get(path)
        if state is None:
            state = self._paths[path] = _PathState()
            child = path
            while child != ROOT:
                up = parent(child)
                siblings = self._children.setdefault(up, set())
                if child in siblings:
                    break
                siblings.add(child)
                child = up
        return state

    def _refresh(self, path: str, changed: set[str]) -> None:
        state = self._paths[path]
        was_live = state.resolution.live
        state.resolution = _resolve(state.frontier)
        changed.add(path)
        if was_live != state.resolution.live:
            delta = 1 if state.resolution.live else -1
            for up in ancestors(path):
                before = self._live_below.get(up, 0)
                self._live_below[up] = before + delta
                if (before == 0) != (before + delta == 0):
                    changed.add(up)
                    if up in self._paths:
                        self._update_copies(up, changed)
        self._update_copies(path, changed)

    def _is_dir(self, path: str, state: _PathState | None) -> bool:
        if path == ROOT or self._live_below.get(path, 0) > 0:
            return True
        return state is not None and state.resolution.dir_op is not None

    def _update_copies(self, path: str, changed: set[str]) -> None:
        state = self._paths[path]
        up = parent(path)
        for name in state.copies:
            self._copy_origin.pop(name, None)
            self._copy_children[up].discard(name)
            changed.add(name)
        files = state.resolution.files
        if self._is_dir(path, state):
            losers = files
        elif is_conflict_copy(path):
            losers = ()
        else:
            losers = files[1:]
        names = []
        for op in losers:
            name = conflict_name(path, op.timestamp_ms, op.device)
            self._copy_origin[name] = (path, op)
            self._copy_children.setdefault(up, set()).add(name)
            names.append(name)
            changed.add(name)
        state.copies = tuple(names)

    # --- reading ----------------------------------------------------------------------------

    def node(self, path: str) -> ViewNode | None:
        """The node at `path` in the merged tree, or None."""
        path = normalize_path(path)
        state = self._paths.get(path)
        if self._is_dir(path, state):
            dir_op = state.resolution.dir_op if state else None
            node = dir_op.node if dir_op and dir_op.node else DirInfo()
            return ViewNode(path, node, dir_op)
        if state is not None and state.resolution.files:
            winner = state.resolution.files[0]
            assert winner.node is not None
            return ViewNode(path, winner.node, winner)
        copy = self._copy_origin.get(path)
        if copy is not None:
            origin, op = copy
            # A removal at the copy's name by someone who saw the losing version hides it.
            removed = state is not None and any(happened_before(op, x) for x in state.frontier)
            if not removed:
                assert op.node is not None
                return ViewNode(path, op.node, op, conflict_of=origin)
        return None

    def listdir(self, path: str) -> list[str]:
        """Names (not paths) in directory `path`, sorted; empty when it is not a directory."""
        path = normalize_path(path)
        if not self._is_dir(path, self._paths.get(path)):
            return []
        candidates = self._children.get(path, set()) | self._copy_children.get(path, set())
        return sorted(basename(p) for p in candidates if self.node(p) is not None)

    def walk(self, path: str) -> list[ViewNode]:
        """`path` and every node below it, parents before children."""
        path = normalize_path(path)
        top = self.node(path)
        if top is None:
            return []
        out = [top]
        stack = [path]
        while stack:
            directory = stack.pop()
            for name in self.listdir(directory):
                child = self.node(join(directory, name))
                if child is not None:
                    out.append(child)
                    if isinstance(child.node, DirInfo):
                        stack.append(child.path)
        return out

    def tree(self) -> dict[str, ViewNode]:
        """Every node of the merged tree by path (root included)."""
        out: dict[str, ViewNode] = {}
        candidates = set(self._paths) | set(self._copy_origin) | {ROOT}
        for p in sorted(candidates):
            found = self.node(p)
            if found is not None:
                out[p] = found
        return out

    def conflicts(self) -> list[ViewNode]:
        return [n for n in self.tree().values() if n.conflict_of is not None]

    def versions(self, path: str) -> list[Version]:
        """Every recorded state of `path`, oldest first (deletions included, deleted=True)."""
        path = normalize_path(path)
        state = self._paths.get(path)
        if state is None:
            return []
        ordered = sorted(state.history, key=history_key)
        return [
            Version(i, path, op.device, op.seq, op.timestamp_ms, op.node)
            for i, op in enumerate(ordered, start=1)
        ]

    def ops(self, device: str | None = None, up_to_seq: int | None = None) -> list[PathOp]:
        """Recorded operations (optionally one device's, up to a seq), (device, seq) order."""
        out = [
            op
            for state in self._paths.values()
            for op in state.history
            if (device is None or op.device == device)
            and (up_to_seq is None or op.seq <= up_to_seq)
        ]
        out.sort(key=lambda op: op.key)
        return out

    def paths(self) -> list[str]:
        """Every path any operation ever touched (live or not)."""
        return sorted(self._paths)


def restore_op(view: NamespaceView, path: str, number: int) -> PutOp:
    """The put to append that brings back version `number` of `path` as the current version."""
    for version in view.versions(path):
        if version.number == number:
            if not isinstance(version.node, FileInfo):
                raise VersionNotFound(f"version {number} of {path} is not a file's content")
            return PutOp(version.path, version.node)
    raise VersionNotFound(f"{path} has no version {number}")


def plan_rename(view: NamespaceView, src: str, dst: str) -> RenameOp:
    """The rename entry moving `src` (and its subtree, as this view sees it) to `dst`."""
    src, dst = normalize_path(src), normalize_path(dst)
    if view.node(src) is None:
        raise VersionNotFound(f"cannot rename {src}: no such file or directory")
    if view.node(dst) is not None:
        raise InvalidPath(f"cannot rename {src} to {dst}: the destination exists")
    return rename_op(src, dst, [(n.path, n.node) for n in view.walk(src)])


def plan_remove(view: NamespaceView, path: str) -> list[Op]:
    """The entries removing `path` and everything below it, deepest first (like `rm -r`)."""
    path = normalize_path(path)
    if view.node(path) is None:
        raise VersionNotFound(f"cannot remove {path}: no such file or directory")
    out: list[Op] = []
    for found in sorted(view.walk(path), key=lambda n: n.path.count("/"), reverse=True):
        if isinstance(found.node, DirInfo):
            out.append(RmdirOp(found.path))
        else:
            out.append(DeleteOp(found.path))
    return out


def materialize_conflicts(view: NamespaceView) -> list[PutOp]:
    """Puts that turn the view's derived conflict copies into regular files.

    A derived copy lasts only while its losing version is in the frontier: a later write that
    saw both versions ends it (the version stays in history). Appending these puts makes the
    copies ordinary files that survive such a write; devices doing it concurrently write the same
    content, which never conflicts.
    """
    return [PutOp(n.path, n.node) for n in view.conflicts() if isinstance(n.node, FileInfo)]
