"""Small signed records a node keeps for its writers: the account's device logs live here.

Shares are immutable and content-addressed; a namespace needs something that grows. A record log
belongs to one writer key (its ID is the node ID of that key, so only the key's holder can append)
and holds opaque, client-encrypted records by sequence number. A record, once written, never
changes: writing the same bytes again is a no-op, different bytes under a taken number are a
conflict. The node cannot read records; clients verify what they fetch by its inner signatures.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from desktop.core.errors import PermaCloudError
from desktop.net.records_wire import MAX_RECORD_SIZE, Record

MAX_SEQ = (1 << 63) - 1
_WRITER_RE = re.compile(r"^[a-z2-7]{32}$")
_NAME_RE = re.compile(r"^(\d{19})\.rec$")


class RecordError(PermaCloudError):
    """A record request that cannot be honoured; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_writer(writer: str) -> str:
    if not _WRITER_RE.match(writer):
        raise RecordError(400, "malformed writer id")
    return writer


def check_seq(seq: int) -> int:
    if not 0 < seq <= MAX_SEQ:
        raise RecordError(400, f"record sequence number must be 1..{MAX_SEQ}")
    return seq


class RecordStore:
    """Append-only record logs on disk: one file per record, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._clean_temp_files()

    def _clean_temp_files(self) -> None:
        for tmp in self.root.glob("*/*.tmp"):
            tmp.unlink(missing_ok=True)

    def _path(self, writer: str, seq: int) -> Path:
        return self.root / check_writer(writer) / f"{check_seq(seq):019d}.rec"

    def put(self, writer: str, seq: int, data: bytes) -> bool:
        """Store a record; True if new, False if the same bytes were already there."""
        if len(data) > MAX_RECORD_SIZE:
            raise RecordError(413, f"record larger than {MAX_RECORD_SIZE} bytes")
        path = self._path(writer, seq)
        try:
            existing = path.read_bytes()
        except FileNotFoundError:
            pass
        else:
            if existing == data:
                return False
            raise RecordError(409, f"record {seq} already holds different data")
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def list(self, writer: str, after: int = 0, limit_bytes: int = 8 << 20) -> list[Record]:
        """Records with seq > after, in order, up to about `limit_bytes` of data."""
        folder = self.root / check_writer(writer)
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            return []
        records: list[Record] = []
        total = 0
        for name in names:
            match = _NAME_RE.match(name)
            if match is None:
                continue
            seq = int(match.group(1))
            if seq <= after:
                continue
            data = (folder / name).read_bytes()
            records.append(Record(seq, data))
            total += len(data)
            if total >= limit_bytes:
                break
        return records

    def prune(self, writer: str, up_to: int) -> int:
        """Drop records with seq <= up_to (the writer compacted them into a snapshot)."""
        folder = self.root / check_writer(writer)
        removed = 0
        for record in self.list(writer, 0, limit_bytes=1 << 62):
            if record.seq > up_to:
                break
            (folder / f"{record.seq:019d}.rec").unlink(missing_ok=True)
            removed += 1
        return removed

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*/*.rec"))
