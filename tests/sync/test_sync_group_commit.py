"""Group commit of namespace writes (`Namespace.append_many`, `GroupCommitter`) on a real SQLite
index in a temp dir: per-writer results, one durable transaction, nothing lost on reopening.

The committer runs against a stand-in daemon object holding only what it uses (the namespace,
the one-thread `db` runner and the publish wake-up): a whole daemon needs nodes and keys that
have nothing to do with what is tested here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from desktop.core.namespace import (
    FileInfo,
    InvalidPath,
    MkdirOp,
    PutOp,
    issue_certificate,
    public_bytes,
)
from desktop.daemon.group_commit import GroupCommitter
from desktop.daemon.index import Index
from desktop.daemon.namespace import AppendJob, Namespace


def _info(text: str) -> FileInfo:
    digest = hashlib.sha256(text.encode()).hexdigest()
    return FileInfo(cap=f"pc:r:{digest[:16]}", size=len(text), mtime_ns=1, content_hash=digest)


def _namespace(path: Path, root: Ed25519PrivateKey, device: Ed25519PrivateKey) -> Namespace:
    account = public_bytes(root)
    namespace = Namespace(Index(path), account, device)
    cert = issue_certificate(root, account, public_bytes(device), "dev", 1)
    namespace.add_certificate(cert.to_bytes(), publish=False)
    namespace.load()
    return namespace


class _Daemon:
    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.index = namespace.index
        self.limiter = trio.CapacityLimiter(1)
        self.wakes = 0
        self.calls = 0

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls += 1
        return await trio.to_thread.run_sync(lambda: fn(*args), limiter=self.limiter)

    def wake_publish(self) -> None:
        self.wakes += 1


def test_append_many_stores_all_jobs_in_one_go_and_reports_each(tmp_path: Path) -> None:
    root, device = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    namespace = _namespace(tmp_path / "index.sqlite3", root, device)
    jobs = [
        AppendJob([MkdirOp("/Sync")]),
        AppendJob([PutOp("/Sync/a", _info("a"))], [("pc:r:a", {0: "n0", 1: "n1"})]),
        AppendJob([PutOp("/Sync/b", _info("b")), PutOp("/bad/../path", _info("x"))]),
        AppendJob([PutOp("/Sync/c", _info("c"))]),
    ]
    errors = namespace.append_many(jobs)
    assert errors[0] is None and errors[1] is None and errors[3] is None
    assert isinstance(errors[2], InvalidPath)
    assert namespace.head_seq(namespace.device_id) == 4  # mkdir, a, b (before the bad op), c
    namespace.index.close()

    reopened = _namespace(tmp_path / "index.sqlite3", root, device)
    assert sorted(row.name for row in reopened.index.listdir("/Sync")) == ["a", "b", "c"]
    assert [seq for kind, _, seq in reopened.index.outbox() if kind == "entry"] == [1, 2, 3, 4]
    assert reopened.index.placement_count("pc:r:a") == 2
    assert reopened.index.placement_count(_info("b").cap) == 0


async def test_concurrent_writers_share_commits_and_each_waits_for_its_own(
    tmp_path: Path,
) -> None:
    root, device = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    namespace = _namespace(tmp_path / "index.sqlite3", root, device)
    daemon = _Daemon(namespace)
    committer = GroupCommitter(cast(Any, daemon))
    await committer.commit([MkdirOp("/Sync")])
    durable: list[str] = []

    async def write(i: int) -> None:
        await committer.commit([PutOp(f"/Sync/f{i:03d}", _info(str(i)))])
        # Once commit returns, the entry is in the index (a fresh connection sees it).
        check = Index(tmp_path / "index.sqlite3")
        try:
            assert check.lookup(f"/Sync/f{i:03d}") is not None
        finally:
            check.close()
        durable.append(f"f{i:03d}")

    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(write, i)
    assert len(durable) == 200
    assert namespace.head_seq(namespace.device_id) == 201
    assert daemon.calls < 100  # grouped: far fewer transactions than writers
    assert daemon.wakes >= 1
    with pytest.raises(InvalidPath):
        await committer.commit([PutOp("/Sync/../escape", _info("e"))])
    await committer.commit([PutOp("/Sync/after", _info("after"))])
    assert namespace.head_seq(namespace.device_id) == 202
