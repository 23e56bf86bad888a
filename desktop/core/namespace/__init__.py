"""Sans-I/O multi-device namespace: signed per-device logs merged into one tree.

Each device appends signed, hash-chained entries to its own log; every replica merges all logs
of the account into the same tree whatever the arrival order. See view.py for merge semantics.
"""

from desktop.core.namespace.conflicts import conflict_name, is_conflict_copy
from desktop.core.namespace.entries import Entry, decode_entry, sign_entry
from desktop.core.namespace.errors import (
    InvalidPath,
    NamespaceError,
    TamperedLog,
    UnauthorizedDevice,
    VersionNotFound,
)
from desktop.core.namespace.keys import key_id, public_bytes, short_id
from desktop.core.namespace.log import ChainHead, LogWriter
from desktop.core.namespace.membership import DeviceCertificate, Membership, issue_certificate
from desktop.core.namespace.ops import (
    DeleteOp,
    DirInfo,
    FileInfo,
    LinkInfo,
    MkdirOp,
    Op,
    PathOp,
    PutOp,
    RenameOp,
    RmdirOp,
    SymlinkOp,
    rename_op,
)
from desktop.core.namespace.paths import normalize_path
from desktop.core.namespace.replica import Replica
from desktop.core.namespace.snapshot import (
    RetentionPolicy,
    Snapshot,
    decode_snapshot,
    make_snapshot,
    retain,
)
from desktop.core.namespace.vclock import VersionVector
from desktop.core.namespace.view import (
    NamespaceView,
    Version,
    ViewNode,
    materialize_conflicts,
    plan_remove,
    plan_rename,
    restore_op,
)

__all__ = [
    "ChainHead",
    "DeleteOp",
    "DeviceCertificate",
    "DirInfo",
    "Entry",
    "FileInfo",
    "InvalidPath",
    "LinkInfo",
    "LogWriter",
    "Membership",
    "MkdirOp",
    "NamespaceError",
    "NamespaceView",
    "Op",
    "PathOp",
    "PutOp",
    "RenameOp",
    "Replica",
    "RetentionPolicy",
    "RmdirOp",
    "Snapshot",
    "SymlinkOp",
    "TamperedLog",
    "UnauthorizedDevice",
    "Version",
    "VersionNotFound",
    "VersionVector",
    "ViewNode",
    "conflict_name",
    "decode_entry",
    "decode_snapshot",
    "is_conflict_copy",
    "issue_certificate",
    "key_id",
    "make_snapshot",
    "materialize_conflicts",
    "normalize_path",
    "plan_remove",
    "plan_rename",
    "public_bytes",
    "rename_op",
    "restore_op",
    "retain",
    "short_id",
    "sign_entry",
]
