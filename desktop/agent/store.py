"""The node's share store on disk: crash-safe, quota-bounded, leased.

Layout under the data directory:

    shares/<si[:2]>/<si>/<shnum>/data        share bytes (sparse until written)
    shares/<si[:2]>/<si>/<shnum>/meta.json   size, owner, lease, sealed flag (replaced atomically)
    shares/<si[:2]>/<si>/<shnum>/journal     partial shares only: fixed-size records of the
                                             byte ranges written and fsynced, each with a CRC
    tmp/                                     new share dirs before their rename, and trash

Why it survives `kill -9` at any moment: a share dir appears by one rename of a complete dir; a
range is recorded in the journal only after its bytes were fsynced (a torn last record fails its
CRC and is cut off, so the range is just written again on resume); sealing is one atomic rename of
meta.json; deletion is one rename into tmp/. On start tmp/ is emptied and each share is loaded
from its meta and journal, so partial shares stay resumable and sealed ones never change.

Methods are blocking and thread-safe: the server calls the fsyncing ones through trio threads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from desktop.agent.ranges import Ranges, add_range, covers, overlaps
from desktop.net.protocol import MAX_LEASE_SECONDS, RequestError
from desktop.net.storage_index import storage_index_to_str

logger = logging.getLogger(__name__)

_RECORD = struct.Struct("<QQI")  # offset, length, crc32 of the first 16 bytes
_META_FORMAT = 1


class StoreError(RequestError):
    """A store operation refused; carries the HTTP status the server answers with."""


Admission = Callable[[int, int], "str | None"]
"""Scheduler hook for a NEW share: (size, bytes used now) -> None to accept, or why not (507).
Existing shares (reads, resumed writes, lease renewals) never pass through it."""


@dataclass
class ShareState:
    si: bytes
    shnum: int
    size: int
    owner: bytes
    lease_expires: float
    sealed: bool
    path: Path
    ranges: Ranges = field(default_factory=list)
    writer: bytes | None = None  # a handoff's sender: may write and seal, nothing else

    @property
    def data_path(self) -> Path:
        return self.path / "data"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


class ShareStore:
    """All shares of one node, with their quota accounting and leases."""

    def __init__(
        self,
        root: Path,
        quota: int,
        *,
        clock: Callable[[], float] = time.time,
        fsync: bool = True,
        admit: Admission | None = None,
    ) -> None:
        self.root = root
        self.quota = quota
        self.admit = admit
        self.clock = clock
        self.fsync = fsync
        self._lock = threading.Lock()
        self._shares: dict[tuple[bytes, int], ShareState] = {}
        self._used = 0
        self._shares_dir = root / "shares"
        self._tmp_dir = root / "tmp"
        self._recover()

    # ---- startup -------------------------------------------------------------------------

    def _recover(self) -> None:
        self._shares_dir.mkdir(parents=True, exist_ok=True)
        if self._tmp_dir.exists():
            shutil.rmtree(self._tmp_dir)
        self._tmp_dir.mkdir()
        for share_dir in sorted(self._shares_dir.glob("*/*/*")):
            try:
                state = self._load_share(share_dir)
            except (OSError, ValueError, KeyError, TypeError) as error:
                logger.warning("dropping unreadable share %s: %s", share_dir, error)
                self._discard_dir(share_dir)
                continue
            self._shares[(state.si, state.shnum)] = state
            self._used += state.size
        logger.info(
            "store at %s: %d shares, %d bytes used", self.root, len(self._shares), self.used
        )

    def _load_share(self, share_dir: Path) -> ShareState:
        for stray in share_dir.glob("*.tmp"):
            stray.unlink()
        meta = json.loads((share_dir / "meta.json").read_text())
        if meta.get("format") != _META_FORMAT:
            raise ValueError("unknown meta format")
        si = bytes.fromhex(meta["si"])
        shnum = int(meta["shnum"])
        if storage_index_to_str(si) != share_dir.parent.name or str(shnum) != share_dir.name:
            raise ValueError("meta does not match its directory")
        state = ShareState(
            si=si,
            shnum=shnum,
            size=int(meta["size"]),
            owner=bytes.fromhex(meta["owner"]),
            lease_expires=float(meta["lease_expires"]),
            sealed=bool(meta["sealed"]),
            path=share_dir,
            writer=bytes.fromhex(meta["writer"]) if meta.get("writer") else None,
        )
        if state.data_path.stat().st_size != state.size:
            raise ValueError("data file has the wrong size")
        if state.sealed:
            (share_dir / "journal").unlink(missing_ok=True)
            state.ranges = [(0, state.size)] if state.size else []
        else:
            state.ranges = self._load_journal(share_dir / "journal", state.size)
        return state

    @staticmethod
    def _load_journal(path: Path, size: int) -> Ranges:
        ranges: Ranges = []
        raw = path.read_bytes() if path.exists() else b""
        valid = 0
        for pos in range(0, len(raw) - _RECORD.size + 1, _RECORD.size):
            offset, length, crc = _RECORD.unpack_from(raw, pos)
            if zlib.crc32(raw[pos : pos + 16]) != crc or offset + length > size:
                break
            ranges = add_range(ranges, offset, offset + length)
            valid = pos + _RECORD.size
        if valid != len(raw):
            with open(path, "r+b") as journal:  # cut a torn tail so appends stay aligned
                journal.truncate(valid)
        return ranges

    # ---- accounting ----------------------------------------------------------------------

    @property
    def used(self) -> int:
        """Bytes reserved: the declared size of every share, partial or sealed."""
        return self._used

    @property
    def free(self) -> int:
        return max(0, self.quota - self.used)

    def get(self, si: bytes, shnum: int) -> ShareState:
        state = self._shares.get((si, shnum))
        if state is None:
            raise StoreError(404, "no such share on this node")
        return state

    def list_shares(self, si: bytes) -> list[ShareState]:
        # list() of a dict view is one C call under the GIL: safe against the store's threads.
        shares = list(self._shares.values())
        return sorted((s for s in shares if s.si == si), key=lambda s: s.shnum)

    def __len__(self) -> int:
        return len(self._shares)

    # ---- operations ----------------------------------------------------------------------

    def create(
        self, si: bytes, shnum: int, size: int, lease_seconds: int, owner: bytes
    ) -> tuple[bool, ShareState]:
        """Create a share (reserving `size`), or return the existing one of the same owner."""
        with self._lock:
            existing = self._shares.get((si, shnum))
            if existing is not None:
                _check_same_share(existing, owner, size)
                self._extend_lease(existing, lease_seconds)
                return False, existing
            self._check_room(size)
            state = self._make_share(si, shnum, size, lease_seconds, owner)
            self._shares[(si, shnum)] = state
            self._used += size
            return True, state

    def create_handoff(
        self, si: bytes, shnum: int, size: int, lease_expires: float, owner: bytes, writer: bytes
    ) -> tuple[bool, ShareState]:
        """A share handed over by a leaving node: owned by `owner` (the original owner, who
        alone may renew or delete it), written and sealed by `writer`, with the remaining lease.

        Costs quota like any create. Idempotent: the same handoff again (or onto the owner's
        own sealed copy) returns the existing share, its lease raised to `lease_expires`."""
        if lease_expires <= self.clock():
            raise StoreError(400, "the handed-over share's lease has already expired")
        with self._lock:
            existing = self._shares.get((si, shnum))
            if existing is not None:
                _check_same_share(existing, owner, size)
                if not existing.sealed and existing.writer != writer:
                    raise StoreError(409, "this share is being written by another client")
                self._raise_lease(existing, lease_expires)
                return False, existing
            self._check_room(size)
            state = self._make_share(si, shnum, size, 1, owner, writer=writer)
            state.lease_expires = min(lease_expires, self.clock() + MAX_LEASE_SECONDS)
            self._save_meta(state)
            self._shares[(si, shnum)] = state
            self._used += size
            return True, state

    def _raise_lease(self, state: ShareState, expires: float) -> None:
        expires = min(expires, self.clock() + MAX_LEASE_SECONDS)
        if expires > state.lease_expires:
            state.lease_expires = expires
            self._save_meta(state)

    def data_hash(self, si: bytes, shnum: int) -> str:
        """BLAKE3 of a sealed share's bytes (blocking; a handoff's sender checks its copy)."""
        state = self.readable(si, shnum)
        hasher = blake3.blake3()
        with open(state.data_path, "rb") as data:
            while chunk := data.read(4 * 1024 * 1024):
                hasher.update(chunk)
        return hasher.hexdigest()

    def discard(self, si: bytes, shnum: int) -> None:
        """Drop a share from this node (its operator's decision, e.g. after a handoff)."""
        with self._lock:
            state = self._shares.get((si, shnum))
            if state is not None:
                self._remove(state)

    def all_shares(self) -> list[ShareState]:
        return sorted(self._shares.values(), key=lambda s: (s.si, s.shnum))

    def _check_room(self, size: int) -> None:
        """The agent's admission (paused, donated space, min free disk), then the quota."""
        refusal = self.admit(size, self.used) if self.admit is not None else None
        if refusal is not None:
            raise StoreError(507, refusal)
        if self.used + size > self.quota:
            raise StoreError(
                507, f"insufficient storage: share needs {size} bytes, node has {self.free} free"
            )

    def put_sealed(
        self, si: bytes, shnum: int, data: bytes, lease_seconds: int, owner: bytes
    ) -> tuple[bool, ShareState]:
        """Store a complete share and seal it in one step (small shares: 4 fsyncs, not ~11).

        Idempotent: the same owner putting the same bytes again gets the existing share with its
        lease extended; different bytes, size or an unsealed share of that name: 409."""
        size = len(data)
        with self._lock:
            existing = self._shares.get((si, shnum))
            if existing is not None:
                if existing.owner != owner:
                    raise StoreError(403, "this share exists and belongs to another client")
                if not existing.sealed or existing.size != size:
                    raise StoreError(409, "a different share of this name exists")
                with open(existing.data_path, "rb") as current:
                    if current.read() != data:
                        raise StoreError(409, "data differs from the sealed share")
                self._extend_lease(existing, lease_seconds)
                return False, existing
            self._check_room(size)
            si_text = storage_index_to_str(si)
            final = self._shares_dir / si_text[:2] / si_text / str(shnum)
            staging = self._tmp_dir / f"new-{uuid.uuid4().hex}"
            staging.mkdir()
            state = ShareState(si, shnum, size, owner, self.clock() + lease_seconds, True, final)
            state.ranges = [(0, size)] if size else []
            if self.fsync:
                _write_file_synced(staging / "data", data)
            else:
                (staging / "data").write_bytes(data)
            _write_file_synced(staging / "meta.json", self._meta_bytes(state))
            self._publish(staging, final)
            self._shares[(si, shnum)] = state
            self._used += size
            return True, state

    def put_sealed_many(
        self, items: list[tuple[bytes, int, bytes]], lease_seconds: int, owner: bytes
    ) -> list[tuple[int, str]]:
        """`put_sealed` for each (si, shnum, data): a (status, error) per item, 201 created or
        200 already there, else the refusal's status and message."""
        results: list[tuple[int, str]] = []
        for si, shnum, data in items:
            try:
                created, _ = self.put_sealed(si, shnum, data, lease_seconds, owner)
            except StoreError as error:
                results.append((error.status, str(error)))
            else:
                results.append((201 if created else 200, ""))
        return results

    def _make_share(
        self,
        si: bytes,
        shnum: int,
        size: int,
        lease_seconds: int,
        owner: bytes,
        *,
        writer: bytes | None = None,
    ) -> ShareState:
        si_text = storage_index_to_str(si)
        final = self._shares_dir / si_text[:2] / si_text / str(shnum)
        staging = self._tmp_dir / f"new-{uuid.uuid4().hex}"
        staging.mkdir()
        state = ShareState(si, shnum, size, owner, self.clock() + lease_seconds, False, final)
        state.writer = writer
        with open(staging / "data", "wb") as data:
            data.truncate(size)
            if self.fsync:
                os.fsync(data.fileno())
        _write_file_synced(staging / "journal", b"")
        _write_file_synced(staging / "meta.json", self._meta_bytes(state))
        self._publish(staging, final)
        return state

    def _publish(self, staging: Path, final: Path) -> None:
        """Make a fully written staging folder appear at its final name, atomically and
        durably: its contents are synced before the rename, the rename after."""
        if self.fsync:
            _fsync_dir(staging)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        if self.fsync:
            _fsync_dir(final.parent)

    @staticmethod
    def _meta_bytes(state: ShareState) -> bytes:
        return json.dumps(
            {
                "format": _META_FORMAT,
                "si": state.si.hex(),
                "shnum": state.shnum,
                "size": state.size,
                "owner": state.owner.hex(),
                "lease_expires": state.lease_expires,
                "sealed": state.sealed,
                **({"writer": state.writer.hex()} if state.writer else {}),
            }
        ).encode()

    def _save_meta(self, state: ShareState) -> None:
        tmp = state.path / "meta.json.tmp"
        _write_file_synced(tmp, self._meta_bytes(state))
        os.replace(tmp, state.path / "meta.json")
        if self.fsync:
            _fsync_dir(state.path)

    def _extend_lease(self, state: ShareState, seconds: int) -> None:
        expires = self.clock() + seconds
        if expires > state.lease_expires:
            state.lease_expires = expires
            self._save_meta(state)

    def _owned(self, si: bytes, shnum: int, owner: bytes) -> ShareState:
        state = self.get(si, shnum)
        if state.owner != owner:
            raise StoreError(403, "only the owner of a share may do this")
        return state

    def _writable(self, si: bytes, shnum: int, signer: bytes) -> ShareState:
        """The owner, or the handoff sender that created the share, may write and seal it."""
        state = self.get(si, shnum)
        if state.owner != signer and (state.writer is None or state.writer != signer):
            raise StoreError(403, "only the owner of a share may do this")
        return state

    def begin_write(self, si: bytes, shnum: int, offset: int, length: int, owner: bytes) -> Writer:
        with self._lock:
            state = self._writable(si, shnum, owner)
            if offset + length > state.size:
                raise StoreError(
                    416, f"write of {length} bytes at {offset} is beyond share size {state.size}"
                )
            if state.sealed:
                if covers(state.ranges, offset, offset + length):
                    return Writer(self, state, offset, length)  # idempotent: compare only
                raise StoreError(409, "share is sealed")
            return Writer(self, state, offset, length)

    def _record_written(self, state: ShareState, offset: int, length: int) -> None:
        with self._lock:
            if self._shares.get((state.si, state.shnum)) is not state or state.sealed:
                return
            head = struct.pack("<QQ", offset, length)
            record = head + struct.pack("<I", zlib.crc32(head))
            fd = os.open(state.path / "journal", os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, record)
                if self.fsync:
                    os.fdatasync(fd)
            finally:
                os.close(fd)
            state.ranges = add_range(state.ranges, offset, offset + length)

    def seal(self, si: bytes, shnum: int, owner: bytes) -> ShareState:
        with self._lock:
            state = self._writable(si, shnum, owner)
            if state.sealed:
                return state
            if state.size and not covers(state.ranges, 0, state.size):
                missing = state.size - sum(b - a for a, b in state.ranges)
                raise StoreError(409, f"cannot seal: {missing} bytes of the share are not written")
            if self.fsync:
                fd = os.open(state.data_path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            state.sealed = True
            try:
                self._save_meta(state)
            except OSError:
                state.sealed = False
                raise
            (state.path / "journal").unlink(missing_ok=True)
            return state

    def readable(self, si: bytes, shnum: int) -> ShareState:
        state = self.get(si, shnum)
        if not state.sealed:
            raise StoreError(409, "share is not sealed yet")
        return state

    def renew_lease(self, si: bytes, shnum: int, owner: bytes, seconds: int) -> ShareState:
        with self._lock:
            state = self._owned(si, shnum, owner)
            self._extend_lease(state, seconds)
            return state

    def delete(self, si: bytes, shnum: int, owner: bytes) -> None:
        with self._lock:
            state = self._owned(si, shnum, owner)
            self._remove(state)

    def sweep(self) -> int:
        """Remove every share whose lease has expired; returns how many."""
        now = self.clock()
        with self._lock:
            expired = [s for s in self._shares.values() if s.lease_expires <= now]
            for state in expired:
                logger.info("lease expired: removing share %s", state.path)
                self._remove(state)
        return len(expired)

    def _remove(self, state: ShareState) -> None:
        del self._shares[(state.si, state.shnum)]
        self._used -= state.size
        self._discard_dir(state.path)
        try:  # tidy empty parents; a racing create may refill them, which is fine
            state.path.parent.rmdir()
            state.path.parent.parent.rmdir()
        except OSError:
            pass

    def _discard_dir(self, path: Path) -> None:
        trash = self._tmp_dir / f"trash-{uuid.uuid4().hex}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


class Writer:
    """One streaming write: the body goes to disk chunk by chunk; the range counts once fsynced.

    Parts that are already written are compared instead of overwritten, so a write can never
    change data a client already confirmed, and a retried write is harmless.
    """

    def __init__(self, store: ShareStore, state: ShareState, offset: int, length: int) -> None:
        self.store = store
        self.state = state
        self.offset = offset
        self.length = length
        self.position = offset
        self._done = overlaps(state.ranges, offset, offset + length)
        self._fd = os.open(state.data_path, os.O_RDONLY if state.sealed else os.O_RDWR)

    def feed(self, chunk: bytes | memoryview) -> None:
        """Write (or compare) the next chunk; StoreError(409) on a mismatch, 400 past the end."""
        start = self.position
        end = start + len(chunk)
        if end > self.offset + self.length:
            raise StoreError(400, "body is longer than Content-Length")
        view = memoryview(chunk)
        pos = start
        for a, b in self._done:
            if b <= pos or a >= end:
                continue
            if a > pos:
                self._pwrite(view[pos - start : a - start], pos)
            lo, hi = max(a, pos), min(b, end)
            if os.pread(self._fd, hi - lo, lo) != view[lo - start : hi - start]:
                raise StoreError(409, f"data differs from what is already written at {lo}")
            pos = hi
        if pos < end:
            self._pwrite(view[pos - start :], pos)
        self.position = end

    def _pwrite(self, data: memoryview, at: int) -> None:
        while data:
            written = os.pwrite(self._fd, data, at)
            data = data[written:]
            at += written

    def commit(self) -> None:
        """Blocking: fsync the bytes, then record the range (call once the body hash checked)."""
        if self.position != self.offset + self.length:
            raise StoreError(400, "body is shorter than Content-Length")
        if self.store.fsync and not self.state.sealed:
            os.fdatasync(self._fd)
        self.store._record_written(self.state, self.offset, self.length)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _check_same_share(existing: ShareState, owner: bytes, size: int) -> None:
    """A create that names an existing share must be its owner's, with the same size."""
    if existing.owner != owner:
        raise StoreError(403, "this share exists and belongs to another client")
    if existing.size != size:
        raise StoreError(409, f"this share exists with size {existing.size}, not {size}")
