"""The operations a device log records, and their expansion into per-path operations.

Every entry carries one operation. The merge works on `PathOp`s: an operation on one path. A
rename expands into "remove at the old name" plus "create at the new name" for each moved node,
with the node's content carried in the entry, so it is merged like any other write (see view.py
for what that means when someone edits the old name concurrently).
"""

from dataclasses import dataclass
from typing import Any

from desktop.core.namespace.errors import InvalidPath
from desktop.core.namespace.paths import ROOT, is_under, normalize_path
from desktop.core.namespace.vclock import VersionVector


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A regular file's content: the capability to read it plus the metadata the mount shows."""

    cap: str
    size: int
    mtime_ns: int
    content_hash: str
    mode: int = 0o644


@dataclass(frozen=True, slots=True)
class LinkInfo:
    target: str
    mtime_ns: int = 0


@dataclass(frozen=True, slots=True)
class DirInfo:
    mode: int = 0o755
    mtime_ns: int = 0  # as set by the user (touch, cp -a, rsync -a, tar); 0: never set


Node = FileInfo | LinkInfo | DirInfo


@dataclass(frozen=True, slots=True)
class PutOp:
    path: str
    info: FileInfo


@dataclass(frozen=True, slots=True)
class DeleteOp:
    path: str


@dataclass(frozen=True, slots=True)
class MkdirOp:
    """Make a folder, or change the mode/mtime of an existing one."""

    path: str
    mode: int = 0o755
    mtime_ns: int = 0


@dataclass(frozen=True, slots=True)
class RmdirOp:
    path: str


@dataclass(frozen=True, slots=True)
class SymlinkOp:
    path: str
    target: str
    mtime_ns: int = 0


@dataclass(frozen=True, slots=True)
class RenameItem:
    src: str
    dst: str
    node: Node


@dataclass(frozen=True, slots=True)
class RenameOp:
    """Move `src` (file, link or directory subtree) to `dst`; items list every moved node."""

    src: str
    dst: str
    items: tuple[RenameItem, ...]


Op = PutOp | DeleteOp | MkdirOp | RmdirOp | SymlinkOp | RenameOp


@dataclass(frozen=True, slots=True)
class PathOp:
    """One operation on one path, with the causal data of the entry it came from.

    `node` is None for a removal (delete / rmdir). `sub` numbers the path ops of one entry.
    """

    device: str
    seq: int
    sub: int
    timestamp_ms: int
    vv: VersionVector
    path: str
    node: Node | None

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.device, self.seq, self.sub)


def rename_op(src: str, dst: str, items: list[tuple[str, Node]]) -> RenameOp:
    """Build a rename from the nodes found under `src` (paths as in the writer's view)."""
    src, dst = normalize_path(src), normalize_path(dst)
    moved = tuple(
        RenameItem(p, dst + p[len(src) :], node) for p, node in sorted(items, key=lambda x: x[0])
    )
    op = RenameOp(src, dst, moved)
    validate_op(op)
    return op


def validate_op(op: Op) -> None:
    """Raise InvalidPath unless every path is canonical and a rename is well formed."""
    if isinstance(op, RenameOp):
        for p in (op.src, op.dst):
            _require_canonical(p)
        if op.src == ROOT or op.dst == ROOT:
            raise InvalidPath("cannot rename the root directory")
        if op.src == op.dst or is_under(op.dst, op.src) or is_under(op.src, op.dst):
            raise InvalidPath(f"cannot rename {op.src!r} to {op.dst!r}: one contains the other")
        if not op.items or op.items[0].src != op.src:
            raise InvalidPath(f"rename of {op.src!r} must list {op.src!r} itself first")
        seen: set[str] = set()
        for item in op.items:
            _require_canonical(item.src)
            if item.src != op.src and not is_under(item.src, op.src):
                raise InvalidPath(f"rename item {item.src!r} is not under {op.src!r}")
            if item.dst != op.dst + item.src[len(op.src) :]:
                raise InvalidPath(f"rename item {item.src!r} has a wrong destination")
            if item.src in seen:
                raise InvalidPath(f"rename lists {item.src!r} twice")
            seen.add(item.src)
        return
    _require_canonical(op.path)
    if op.path == ROOT:
        raise InvalidPath("the root directory cannot be changed")


def _require_canonical(path: str) -> None:
    if normalize_path(path) != path:
        raise InvalidPath(f"path is not in canonical form: {path!r}")


def expand(op: Op) -> list[tuple[str, Node | None]]:
    """The (path, node-or-removal) pairs an operation stands for, in a fixed order."""
    if isinstance(op, PutOp):
        return [(op.path, op.info)]
    if isinstance(op, DeleteOp | RmdirOp):
        return [(op.path, None)]
    if isinstance(op, MkdirOp):
        return [(op.path, DirInfo(op.mode, op.mtime_ns))]
    if isinstance(op, SymlinkOp):
        return [(op.path, LinkInfo(op.target, op.mtime_ns))]
    out: list[tuple[str, Node | None]] = [(item.src, None) for item in op.items]
    out.extend((item.dst, item.node) for item in op.items)
    return out


# --- wire form -------------------------------------------------------------------------------


def node_to_wire(node: Node | None) -> dict[str, Any]:
    if node is None:
        return {"t": "gone"}
    if isinstance(node, FileInfo):
        return {
            "t": "file",
            "cap": node.cap,
            "size": node.size,
            "mtime": node.mtime_ns,
            "hash": node.content_hash,
            "mode": node.mode,
        }
    if isinstance(node, LinkInfo):
        return {"t": "link", "target": node.target, "mtime": node.mtime_ns}
    return {"t": "dir", "mode": node.mode, "mtime": node.mtime_ns}


def node_from_wire(obj: Any) -> Node | None:
    kind = _field(obj, "t", str)
    if kind == "gone":
        _exact_keys(obj, {"t"})
        return None
    if kind == "file":
        _exact_keys(obj, {"t", "cap", "size", "mtime", "hash", "mode"})
        size = _field(obj, "size", int)
        if size < 0:
            raise ValueError("negative file size")
        return FileInfo(
            _field(obj, "cap", str),
            size,
            _field(obj, "mtime", int),
            _field(obj, "hash", str),
            _field(obj, "mode", int),
        )
    if kind == "link":
        _exact_keys(obj, {"t", "target", "mtime"})
        return LinkInfo(_field(obj, "target", str), _field(obj, "mtime", int))
    if kind == "dir":
        _exact_keys(obj, {"t", "mode", "mtime"}, optional=frozenset({"mtime"}))
        return DirInfo(_field(obj, "mode", int), _optional_int(obj, "mtime"))
    raise ValueError(f"unknown node type {kind!r}")


def op_to_wire(op: Op) -> dict[str, Any]:
    if isinstance(op, PutOp):
        return {"t": "put", "path": op.path, "node": node_to_wire(op.info)}
    if isinstance(op, DeleteOp):
        return {"t": "del", "path": op.path}
    if isinstance(op, MkdirOp):
        return {"t": "mkdir", "path": op.path, "mode": op.mode, "mtime": op.mtime_ns}
    if isinstance(op, RmdirOp):
        return {"t": "rmdir", "path": op.path}
    if isinstance(op, SymlinkOp):
        return {"t": "link", "path": op.path, "target": op.target, "mtime": op.mtime_ns}
    return {
        "t": "mv",
        "from": op.src,
        "to": op.dst,
        "items": [[i.src, i.dst, node_to_wire(i.node)] for i in op.items],
    }


def op_from_wire(obj: Any) -> Op:
    """Parse and validate an operation; ValueError/InvalidPath on anything malformed."""
    kind = _field(obj, "t", str)
    op: Op
    if kind == "put":
        _exact_keys(obj, {"t", "path", "node"})
        info = node_from_wire(obj["node"])
        if not isinstance(info, FileInfo):
            raise ValueError("put must carry a file")
        op = PutOp(_field(obj, "path", str), info)
    elif kind == "del":
        _exact_keys(obj, {"t", "path"})
        op = DeleteOp(_field(obj, "path", str))
    elif kind == "mkdir":
        _exact_keys(obj, {"t", "path", "mode", "mtime"}, optional=frozenset({"mtime"}))
        op = MkdirOp(
            _field(obj, "path", str), _field(obj, "mode", int), _optional_int(obj, "mtime")
        )
    elif kind == "rmdir":
        _exact_keys(obj, {"t", "path"})
        op = RmdirOp(_field(obj, "path", str))
    elif kind == "link":
        _exact_keys(obj, {"t", "path", "target", "mtime"})
        op = SymlinkOp(
            _field(obj, "path", str), _field(obj, "target", str), _field(obj, "mtime", int)
        )
    elif kind == "mv":
        _exact_keys(obj, {"t", "from", "to", "items"})
        raw_items = obj["items"]
        if not isinstance(raw_items, list):
            raise ValueError("rename items must be a list")
        items: list[RenameItem] = []
        for raw in raw_items:
            if not (isinstance(raw, list) and len(raw) == 3):
                raise ValueError("rename item must be [src, dst, node]")
            src, dst, node = raw[0], raw[1], node_from_wire(raw[2])
            if not isinstance(src, str) or not isinstance(dst, str) or node is None:
                raise ValueError("bad rename item")
            items.append(RenameItem(src, dst, node))
        op = RenameOp(_field(obj, "from", str), _field(obj, "to", str), tuple(items))
    else:
        raise ValueError(f"unknown operation {kind!r}")
    validate_op(op)
    return op


def _field(obj: Any, name: str, kind: type) -> Any:
    if not isinstance(obj, dict) or name not in obj:
        raise ValueError(f"missing field {name!r}")
    value = obj[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"field {name!r} must be {kind.__name__}")
    return value


def _exact_keys(obj: Any, keys: set[str], optional: frozenset[str] = frozenset()) -> None:
    """Exactly `keys`; those in `optional` may be missing (fields added after logs were written:
    folder mtimes)."""
    if not isinstance(obj, dict) or not keys - optional <= set(obj) <= keys:
        raise ValueError(f"expected exactly the fields {sorted(keys)}")


def _optional_int(obj: dict[str, Any], name: str) -> int:
    return _field(obj, name, int) if name in obj else 0
