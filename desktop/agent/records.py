"""Small signed records a node keeps for its writers: the account's device logs live here.

Shares are immutable and content-addressed; a namespace needs something that grows. A record log
belongs to one writer key (its ID is the node ID of that key, so only the key's holder can append)
and holds opaque, client-encrypted records by sequence number. A record, once written, never
changes: writing the same bytes again is a no-op, different bytes under a taken number are a
conflict. The node cannot read records; clients verify what they fetch by its inner signatures.

On disk each writer has one append-only file, `<writer>.log`, of frames (8-byte seq, 4-byte
length, 4-byte CRC-32 of the three, the data). A batch of records is appended with one write and
one fdatasync: a file and an fsync per record cost about a millisecond each, which capped a
device's log at a few hundred entries a second per node. A frame that does not check out (a
write torn by a crash, only ever the tail) ends the log and is cut off when the file is opened.
The index (seq -> offset) is kept in memory for recently used writers and rebuilt by one read of
the file; pruning rewrites the file without the pruned records (atomically, by rename).
"""

from __future__ import annotations

import bisect
import os
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from desktop.core.errors import PermaCloudError
from desktop.net.records_wire import MAX_RECORD_SIZE, Record

MAX_SEQ = (1 << 63) - 1
MAX_OPEN_LOGS = 256  # writers whose index is kept in memory
_WRITER_RE = re.compile(r"^[a-z2-7]{32}$")
_FRAME_HEAD = 16
_READ_CHUNK = 1 << 20

STATUS_CREATED = 201
STATUS_SAME = 200


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


def _frame(seq: int, data: bytes) -> bytes:
    head = seq.to_bytes(8, "big") + len(data).to_bytes(4, "big")
    crc = zlib.crc32(data, zlib.crc32(head))
    return head + crc.to_bytes(4, "big") + data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _WriterLog:
    """The in-memory index of one writer's file; its lock serializes that writer's changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.evicted = False
        self.seqs: list[int] = []  # sorted
        self.where: dict[int, tuple[int, int]] = {}  # seq -> (data offset, length)
        self.end = 0
        self._load()

    def _load(self) -> None:
        """Read the frames; a bad one (torn tail of a crash) and all after it are cut off."""
        try:
            handle = open(self.path, "r+b", buffering=_READ_CHUNK)  # noqa: SIM115
        except FileNotFoundError:
            return
        with handle:
            offset = 0
            found: list[int] = []
            while True:
                head = handle.read(_FRAME_HEAD)
                if len(head) < _FRAME_HEAD:
                    break
                seq = int.from_bytes(head[:8], "big")
                length = int.from_bytes(head[8:12], "big")
                if not 0 < seq <= MAX_SEQ or length > MAX_RECORD_SIZE:
                    break
                data = handle.read(length)
                crc = int.from_bytes(head[12:16], "big")
                if len(data) != length or zlib.crc32(data, zlib.crc32(head[:12])) != crc:
                    break
                if seq not in self.where:
                    found.append(seq)
                self.where[seq] = (offset + _FRAME_HEAD, length)
                offset += _FRAME_HEAD + length
            if offset < os.fstat(handle.fileno()).st_size:
                handle.truncate(offset)
                handle.flush()
                os.fsync(handle.fileno())
            self.end = offset
            self.seqs = sorted(found)

    def read(self, fd: int, seq: int) -> bytes:
        offset, length = self.where[seq]
        return os.pread(fd, length, offset)

    def open_read(self) -> int:
        return os.open(self.path, os.O_RDONLY)

    def append(self, records: list[tuple[int, bytes]]) -> None:
        """Append new records durably (one write, one fdatasync), then index them."""
        if not records:
            return
        blob = b"".join(_frame(seq, data) for seq, data in records)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            view = memoryview(blob)
            at = self.end
            while view:
                written = os.pwrite(fd, view, at)
                view = view[written:]
                at += written
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)
        offset = self.end
        for seq, data in records:
            self.where[seq] = (offset + _FRAME_HEAD, len(data))
            bisect.insort(self.seqs, seq)
            offset += _FRAME_HEAD + len(data)
        self.end = offset


class RecordStore:
    """Append-only record logs on disk, one file per writer; thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._logs: OrderedDict[str, _WriterLog] = OrderedDict()
        self._lock = threading.Lock()
        self._clean_temp_files()

    def _clean_temp_files(self) -> None:
        for tmp in self.root.glob("*.tmp"):
            tmp.unlink(missing_ok=True)

    def _path(self, writer: str) -> Path:
        return self.root / f"{check_writer(writer)}.log"

    def _log(self, writer: str) -> _WriterLog:
        """The writer's log, locked by the caller (`with log.lock` after this returns it)."""
        path = self._path(writer)
        with self._lock:
            log = self._logs.get(writer)
            if log is not None:
                self._logs.move_to_end(writer)
                return log
            for name, old in list(self._logs.items()):
                if len(self._logs) < MAX_OPEN_LOGS:
                    break
                if old.lock.acquire(blocking=False):
                    old.evicted = True
                    del self._logs[name]
                    old.lock.release()
            log = self._logs[writer] = _WriterLog(path)
            return log

    def _locked(self, writer: str) -> _WriterLog:
        while True:
            log = self._log(writer)
            log.lock.acquire()
            if not log.evicted:
                return log
            log.lock.release()

    def put(self, writer: str, seq: int, data: bytes) -> bool:
        """Store a record; True if new, False if the same bytes were already there."""
        status, message = self.put_many(writer, [(seq, data)])[0]
        if status not in (STATUS_CREATED, STATUS_SAME):
            raise RecordError(status, message)
        return status == STATUS_CREATED

    def put_many(self, writer: str, records: Iterable[tuple[int, bytes]]) -> list[tuple[int, str]]:
        """Store records in one durable append; per record (HTTP status, error): 201 new,
        200 the same bytes were there, 409 other bytes under that number, 413 / 400 refused."""
        results: list[tuple[int, str]] = []
        log = self._locked(writer)
        try:
            new: dict[int, bytes] = {}
            fd: int | None = None
            try:
                for seq, data in records:
                    if len(data) > MAX_RECORD_SIZE:
                        results.append((413, f"record larger than {MAX_RECORD_SIZE} bytes"))
                        continue
                    try:
                        check_seq(seq)
                    except RecordError as error:
                        results.append((error.status, str(error)))
                        continue
                    if seq in new:
                        existing: bytes | None = new[seq]
                    elif seq in log.where:
                        if fd is None:
                            fd = log.open_read()
                        existing = log.read(fd, seq)
                    else:
                        existing = None
                    if existing is None:
                        new[seq] = data
                        results.append((STATUS_CREATED, ""))
                    elif existing == data:
                        results.append((STATUS_SAME, ""))
                    else:
                        results.append((409, f"record {seq} already holds different data"))
            finally:
                if fd is not None:
                    os.close(fd)
            log.append(list(new.items()))
        finally:
            log.lock.release()
        return results

    def list(self, writer: str, after: int = 0, limit_bytes: int = 8 << 20) -> list[Record]:
        """Records with seq > after, in order, up to about `limit_bytes` of data."""
        log = self._locked(writer)
        try:
            start = bisect.bisect_right(log.seqs, after)
            if start == len(log.seqs):
                return []
            records: list[Record] = []
            total = 0
            fd = log.open_read()
            try:
                for seq in log.seqs[start:]:
                    data = log.read(fd, seq)
                    records.append(Record(seq, data))
                    total += len(data)
                    if total >= limit_bytes:
                        break
            finally:
                os.close(fd)
            return records
        finally:
            log.lock.release()

    def prune(self, writer: str, up_to: int) -> int:
        """Drop records with seq <= up_to (the writer compacted them into a snapshot)."""
        log = self._locked(writer)
        try:
            cut = bisect.bisect_right(log.seqs, up_to)
            if cut == 0:
                return 0
            tmp = log.path.with_name(log.path.name + ".tmp")
            fd = log.open_read()
            try:
                kept = [(seq, log.read(fd, seq)) for seq in log.seqs[cut:]]
            finally:
                os.close(fd)
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                blob = b"".join(_frame(seq, data) for seq, data in kept)
                view = memoryview(blob)
                while view:
                    view = view[os.write(out, view) :]
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(tmp, log.path)
            _fsync_dir(self.root)
            log.evicted = True
            with self._lock:
                if self._logs.get(writer) is log:
                    del self._logs[writer]
            return cut
        finally:
            log.lock.release()

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*.log"))
