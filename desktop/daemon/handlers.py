"""The daemon's IPC methods (documented in docs/ipc.md): what the CLI, tray and mount call.

Each handler validates its parameters (one-line `bad_request` errors), does the network work on
trio and the index work in the database thread, and replies with plain JSON.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import trio

from desktop.client.download import download_to_file
from desktop.client.errors import single_error
from desktop.client.upload import upload_file
from desktop.core.caps import parse_read_cap
from desktop.core.errors import PermaCloudError
from desktop.core.invite import Invite
from desktop.core.namespace import (
    FileInfo,
    MkdirOp,
    PutOp,
    Version,
    normalize_path,
    plan_remove,
    plan_rename,
    restore_op,
)
from desktop.core.namespace.paths import ancestors
from desktop.daemon.agent_handlers import build_agent_handlers
from desktop.daemon.auditor import build_audit_handlers
from desktop.daemon.checker import build_health_handlers
from desktop.daemon.index import ViewRow
from desktop.daemon.ipc_protocol import IpcProtocolError, param
from desktop.daemon.ipc_server import CallContext, Handler, NotFound
from desktop.daemon.links import link_name, make_link, parse_link
from desktop.daemon.mount_handlers import build_mount_handlers
from desktop.daemon.reputation_store import book as reputation_book
from desktop.daemon.sync_handlers import build_sync_handlers

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

HASH_CHUNK = 4 << 20


def _row_json(row: ViewRow) -> dict[str, Any]:
    return {
        "path": row.path,
        "name": row.name,
        "kind": row.kind,
        "size": row.size,
        "mtime_ns": row.mtime_ns,
        "mode": row.mode,
        "target": row.target,
        "conflict_of": row.conflict_of,
    }


def _version_json(version: Version) -> dict[str, Any]:
    info = version.file
    return {
        "number": version.number,
        "device": version.device_id,
        "time": version.timestamp_ms / 1000,
        "deleted": version.deleted,
        "size": info.size if info else None,
        "kind": type(version.node).__name__.removesuffix("Info").lower() if version.node else None,
    }


def content_hash(path: Path) -> str:
    """BLAKE3 of the plaintext: how devices tell equal edits from conflicting ones."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


@asynccontextmanager
async def progress_events(ctx: CallContext) -> AsyncIterator[Callable[[int, int], None]]:
    """A sync progress callback whose latest value is sent as an event at most 5 times a second."""
    latest: list[tuple[int, int]] = []

    def report(done: int, total: int) -> None:
        latest[:] = [(done, total)]

    async def sender() -> None:
        sent: tuple[int, int] | None = None
        while True:
            await trio.sleep(0.2)
            if latest and latest[0] != sent:
                sent = latest[0]
                await ctx.progress(done=sent[0], total=sent[1])

    with single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            yield report
            nursery.cancel_scope.cancel()


def _local_path(params: dict[str, Any], name: str) -> Path:
    text = param(params, name, str)
    path = Path(text)
    if not path.is_absolute():
        raise IpcProtocolError(f"parameter '{name}' must be an absolute path")
    return path


def build_handlers(daemon: Daemon) -> dict[str, Handler]:
    ns = daemon.namespace
    index = daemon.index

    async def status(params: dict[str, Any], ctx: CallContext) -> Any:
        files, stored = await daemon.db(index.view_totals)
        outbox = await daemon.db(index.outbox)
        node = daemon.node
        used = node.server.store.used if node else 0
        quota = node.server.store.quota if node else 0
        result: dict[str, Any] = {
            "device": {
                "name": daemon.config.device_name,
                "id": ns.device_id,
                "account": ns.account_id,
            },
            "node": {"id": node.node_id if node else None, "address": daemon.node_address()},
            "nodes": {"online": len(daemon.pool.online()), "known": len(daemon.pool)},
            "storage": {
                "files": files,
                "stored_bytes": stored,
                "donated_bytes": quota,
                "used_donated_bytes": used,
            },
            "pending": {"publish": len(outbox)},
            "sync": {
                "state": "paused" if daemon.sync_paused else ("syncing" if outbox else "idle"),
                "pending": len(outbox),
                "conflicts": await daemon.db(index.conflict_count),
                "folder": None,
                "error": None,
            },
            "uptime": time.time() - daemon.started,
        }
        for key, provider in daemon.extra_status.items():  # agent, mount
            result[key] = provider()
        return result

    async def ls(params: dict[str, Any], ctx: CallContext) -> Any:
        path = normalize_path(param(params, "path", str, default="/"))
        row = await daemon.db(index.lookup, path)
        if row is None and path != "/":
            raise NotFound(f"no such file or folder: {path}")
        if row is not None and row.kind != "dir":
            return [_row_json(row)]
        return [_row_json(r) for r in await daemon.db(index.listdir, path)]

    async def put(params: dict[str, Any], ctx: CallContext) -> Any:
        local = _local_path(params, "local")
        path = normalize_path(param(params, "path", str))
        existing = await daemon.db(index.lookup, path)
        if existing is not None and existing.kind == "dir":
            path = normalize_path(f"{path}/{local.name}")
        try:
            info = await trio.to_thread.run_sync(os.stat, local)
        except OSError as error:
            raise PermaCloudError(f"cannot read {local}: {error.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise PermaCloudError(f"{local} is not a regular file")
        digest = await trio.to_thread.run_sync(content_hash, local)
        async with progress_events(ctx) as report:
            result = await upload_file(daemon.pool, local, daemon.upload_options(), progress=report)
        file_info = FileInfo(
            cap=result.cap.to_string(),
            size=result.size,
            mtime_ns=info.st_mtime_ns,
            content_hash=digest,
            mode=stat.S_IMODE(info.st_mode),
        )
        entry = await daemon.db(ns.append, PutOp(path, file_info))
        await daemon.db(index.add_placements, file_info.cap, result.placements)
        daemon.wake_replication()
        daemon.activity.add("put", f"stored {path}")
        return {
            "path": path,
            "size": result.size,
            "seq": entry.seq,
            "placements": len(result.placements),
        }

    async def get(params: dict[str, Any], ctx: CallContext) -> Any:
        local = _local_path(params, "local")
        source = param(params, "path", str)
        if source.startswith(("permacloud:", "pc1r:")):
            cap = parse_link(source)
            name = link_name(source) or "download"
        else:
            path = normalize_path(source)
            row = await daemon.db(index.lookup, path)
            if row is None:
                raise NotFound(f"no such file: {path}")
            if row.kind != "file" or row.cap is None:
                raise PermaCloudError(f"{path} is not a file")
            cap = parse_read_cap(row.cap)
            name = row.name
        if await trio.Path(local).is_dir():
            local = local / Path(name).name
        async with progress_events(ctx) as report:
            size = await download_to_file(daemon.pool, cap, local, progress=report)
        return {"local": str(local), "size": size}

    async def mkdir(params: dict[str, Any], ctx: CallContext) -> Any:
        path = normalize_path(param(params, "path", str))
        existing = await daemon.db(index.lookup, path)
        if existing is not None:
            raise PermaCloudError(f"{path} already exists")
        parents = bool(params.get("parents", False))
        missing = [
            p for p in [*ancestors(path)[1:], path] if await daemon.db(index.lookup, p) is None
        ]
        if len(missing) > 1 and not parents:
            raise NotFound(f"parent folder of {path} does not exist (use --parents)")
        for folder in missing:
            await daemon.db(ns.append, MkdirOp(folder))
        daemon.wake_replication()
        return {"path": path}

    async def mv(params: dict[str, Any], ctx: CallContext) -> Any:
        src = normalize_path(param(params, "src", str))
        dst = normalize_path(param(params, "dst", str))
        target = await daemon.db(index.lookup, dst)
        if target is not None and target.kind == "dir":
            dst = normalize_path(f"{dst}/{src.rsplit('/', 1)[-1]}")
        op = await daemon.db(lambda: plan_rename(ns.replica.view, src, dst))
        await daemon.db(ns.append, op)
        daemon.wake_replication()
        return {"src": src, "dst": dst}

    async def rm(params: dict[str, Any], ctx: CallContext) -> Any:
        path = normalize_path(param(params, "path", str))
        row = await daemon.db(index.lookup, path)
        if row is None:
            raise NotFound(f"no such file or folder: {path}")
        if row.kind == "dir" and not params.get("recursive"):
            children = await daemon.db(index.listdir, path)
            if children:
                raise PermaCloudError(f"{path} is a folder that is not empty (use --recursive)")
        ops = await daemon.db(lambda: plan_remove(ns.replica.view, path))
        for op in ops:
            await daemon.db(ns.append, op)
        daemon.wake_replication()
        return {"path": path, "removed": len(ops)}

    async def versions(params: dict[str, Any], ctx: CallContext) -> Any:
        path = normalize_path(param(params, "path", str))
        found = await daemon.db(ns.versions, path)
        if not found:
            raise NotFound(f"no history for {path}")
        return [_version_json(v) for v in found]

    async def restore(params: dict[str, Any], ctx: CallContext) -> Any:
        path = normalize_path(param(params, "path", str))
        number = param(params, "version", int)
        op = await daemon.db(lambda: restore_op(ns.replica.view, path, number))
        entry = await daemon.db(ns.append, op)
        daemon.wake_replication()
        return {"path": path, "version": number, "seq": entry.seq}

    async def share(params: dict[str, Any], ctx: CallContext) -> Any:
        path = normalize_path(param(params, "path", str))
        row = await daemon.db(index.lookup, path)
        if row is None:
            raise NotFound(f"no such file: {path}")
        if row.kind != "file" or row.cap is None:
            raise PermaCloudError(f"only files can be shared: {path} is a {row.kind}")
        return {"path": path, "link": make_link(row.cap, row.name)}

    async def invite(params: dict[str, Any], ctx: CallContext) -> Any:
        kind = param(params, "kind", str, default="device")
        if kind not in ("device", "node"):
            raise IpcProtocolError("invite kind must be 'device' or 'node'")
        ttl = param(params, "ttl", int, default=3600)
        if daemon.node is None:
            raise PermaCloudError("this device runs no node, so it cannot accept joins")
        code, record = Invite.create(
            [daemon.node_address()],
            daemon.node.node_id,
            "device" if kind == "device" else "node",
            ttl,
            time.time(),
        )
        await daemon.db(index.save_invite, record.invite_id.hex(), record.to_json().decode())
        return {"code": code, "kind": kind, "expires": record.expires_at}

    async def nodes(params: dict[str, Any], ctx: CallContext) -> Any:
        online = set(daemon.pool.online())
        scores = reputation_book(daemon)
        return [
            {
                "id": row.id,
                "address": row.address,
                "source": row.source,
                "online": row.id in online,
                **scores.describe(row.id),
            }
            for row in await daemon.db(index.nodes)
        ]

    async def activity(params: dict[str, Any], ctx: CallContext) -> Any:
        limit = param(params, "limit", int, default=10)
        return list(daemon.activity.items)[: max(limit, 0)]

    async def sync_now(params: dict[str, Any], ctx: CallContext) -> Any:
        await daemon.replicate_once()
        return {"pending": len(await daemon.db(index.outbox))}

    async def sync_pause(params: dict[str, Any], ctx: CallContext) -> Any:
        daemon.sync_paused = True
        daemon.activity.add("sync", "sync paused")
        daemon.bus.publish("status", {"sync": "paused"})
        return {}

    async def sync_resume(params: dict[str, Any], ctx: CallContext) -> Any:
        daemon.sync_paused = False
        daemon.activity.add("sync", "sync resumed")
        daemon.wake_replication()
        daemon.bus.publish("status", {"sync": "resumed"})
        return {}

    async def shutdown(params: dict[str, Any], ctx: CallContext) -> Any:
        daemon.request_shutdown()
        return {}

    return {
        "status": status,
        "ls": ls,
        "put": put,
        "get": get,
        "mkdir": mkdir,
        "mv": mv,
        "rm": rm,
        "versions": versions,
        "restore": restore,
        "share": share,
        "invite": invite,
        "nodes": nodes,
        "activity": activity,
        "replicate": sync_now,
        "sync.pause": sync_pause,
        "sync.resume": sync_resume,
        "shutdown": shutdown,
        **build_agent_handlers(daemon),
        **build_mount_handlers(daemon),
        **build_sync_handlers(daemon),
        **build_health_handlers(daemon),
        **build_audit_handlers(daemon),
    }
