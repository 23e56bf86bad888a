"""The daemon: one trio nursery running this device's node, client engine, IPC and replication.

Local state lives in the SQLite index and is only touched from one worker thread at a time (the
`db` limiter), so trio never blocks on disk. Anything the user was told succeeded is in the index
before the reply; publishing to the network follows from the outbox and survives restarts.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import trio

from desktop.agent.human_values import parse_size
from desktop.agent.node import NodeConfig, RunningNode, serve_node
from desktop.agent.runtime import AgentRuntime
from desktop.client.download import download_bytes
from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions, upload_bytes
from desktop.core.errors import PermaCloudError
from desktop.core.namespace import DeviceCertificate
from desktop.daemon.account import AccountKeys, load_keys
from desktop.daemon.auditor import run_auditor
from desktop.daemon.checker import checker_for
from desktop.daemon.config import DeviceConfig, load_config
from desktop.daemon.conflict_notices import receive_and_announce
from desktop.daemon.discovery import run_discovery
from desktop.daemon.health import DurabilitySettings, retention_policy, storage_owner_key
from desktop.daemon.index import Index
from desktop.daemon.ipc_server import EventBus, IpcServer
from desktop.daemon.leave import left_marker
from desktop.daemon.namespace import Namespace
from desktop.daemon.nudge import NUDGE_EXTENSION, nudge_devices, nudge_handler
from desktop.daemon.paths import AppPaths
from desktop.daemon.replication import (
    REPLICAS,
    cert_record,
    decode_account_record,
    decode_entries,
    fetch_records,
    node_record,
    publish_account_record,
    publish_record,
    publish_records,
    record_nodes,
)
from desktop.daemon.secrets import open_secret_store
from desktop.knobs import env_float, env_int
from desktop.net.errors import NodeError
from desktop.net.identity import node_id_from_public_key
from desktop.net.nodes_file import NodeAddress, parse_address

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

REPLICATION_INTERVAL = env_float("PERMACLOUD_REPLICATION_INTERVAL", 2.0)
ROUND_GAP = 0.05  # at least this between replication rounds (nudges cannot make them spin)
OUTBOX_CHUNK = 2000  # entries read and published at a time
REFRESH_INTERVAL = 10.0
SNAPSHOT_EVERY = env_int("PERMACLOUD_SNAPSHOT_EVERY", 1000)
SNAPSHOT_RECORD_BASE = 1 << 62  # record numbers above this point at snapshots, not entries
RETENTION = retention_policy()


class DaemonAlreadyRunning(PermaCloudError):
    """Another daemon holds this device's lock."""


def acquire_lock(path: Path) -> int:
    """An exclusive lock for the life of the process (released by the kernel even on kill -9)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DaemonAlreadyRunning(
            f"another PermaCloud daemon is already running for {path.parent}"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


@dataclass
class Activity:
    """Recent things worth telling the user (the tray's activity menu)."""

    items: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))

    def add(self, kind: str, text: str) -> None:
        self.items.appendleft({"time": time.time(), "kind": kind, "text": text})


class Daemon:
    def __init__(self, paths: AppPaths, config: DeviceConfig, keys: AccountKeys) -> None:
        self.paths = paths
        self.config = config
        self.keys = keys
        self.index = Index(paths.data_dir / "index.sqlite3")
        self.namespace = Namespace(self.index, keys.account_public, keys.device_key.private_key)
        self.pool = NodePool(storage_owner_key(keys.account_secret), [])
        self.bus = EventBus()
        self.activity = Activity()
        self.node: RunningNode | None = None
        self.started = time.time()
        self._db = trio.CapacityLimiter(1)
        self._wake = trio.Event()
        self._full_due = True
        self._nudge_owed = False  # a device missed the last nudge: tell it next round
        self._shutdown = trio.Event()
        self.sync_paused = False
        self._replication_lock = trio.Lock()
        self.extra_status: dict[str, Callable[[], Any]] = {}
        self.agent = AgentRuntime(
            paths.data_dir,
            paths.data_dir / "node" / "store",
            default_donated=parse_size(config.node.quota),
            publish=self.bus.publish,
        )

    async def db(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run index/namespace work in the one database thread.

        Local writes it made are announced as `namespace.local` (the sync folders pull what the
        CLI or the mount changed under them; the mount itself follows `foreign_changes`)."""
        try:
            return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._db)
        finally:
            changed = self.namespace.take_local_changes()
            if changed:
                self.bus.publish("namespace.local", {"changed": changed})

    def wake_replication(self) -> None:
        """A full round (publish and fetch) at once."""
        self._full_due = True
        self._wake.set()

    def wake_publish(self) -> None:
        """Publish what this device appended, soon: a bulk of local changes is pushed in few
        rounds that do not also poll the other devices' logs (nudges and the interval do)."""
        self._wake.set()

    def request_shutdown(self) -> None:
        self._shutdown.set()

    # --- nodes ------------------------------------------------------------------------------

    def known_node_addresses(self) -> list[NodeAddress]:
        found: dict[str, NodeAddress] = {}
        for row in self.index.nodes():
            try:
                host, port = parse_address(row.address)
            except PermaCloudError:
                continue
            found[row.id] = NodeAddress(row.id, host, port)
        for known in self.config.known_nodes:
            host, port = parse_address(known.address)
            found.setdefault(known.id, NodeAddress(known.id, host, port))
        return list(found.values())

    async def refresh_nodes(self) -> None:
        addresses = await self.db(self.known_node_addresses)
        self.pool.update(addresses)
        await self.pool.refresh()

    # --- replication ------------------------------------------------------------------------

    async def publish_outbox(self) -> int:
        """Push every unpublished entry and certificate; keep what no node took for later.

        Entries go in batches (many records per request, see `publish_records`), a chunk of
        the outbox at a time; when any were new, the other devices are nudged to fetch now.
        Returns how many items are still waiting."""
        sent = 0
        while True:
            outbox = await self.db(self.index.outbox, OUTBOX_CHUNK, "entry")
            if not outbox:
                break
            done = await self._publish_entries(outbox)
            if done:
                await self.db(self.index.mark_published, done)
                sent += len(done)
            if len(done) < len(outbox) or len(outbox) < OUTBOX_CHUNK:
                break
        if sent or self._nudge_owed:
            self._nudge_owed = not await nudge_devices(self)
        await self._publish_account_items()
        return await self.db(self.index.outbox_size)

    async def _publish_entries(
        self, outbox: list[tuple[str, str, int]]
    ) -> list[tuple[str, str, int]]:
        own = self.keys.device_key
        data = await self.db(self.index.entries_at, [(key, seq) for _, key, seq in outbox])
        done: list[tuple[str, str, int]] = []
        items: list[tuple[int, bytes]] = []
        for item in outbox:
            _, key, seq = item
            entry = data.get((key, seq))
            if entry is None or key != self.namespace.device_id:
                done.append(item)  # gone (compacted) or not ours to publish
            else:
                items.append((seq, entry))
        if not items:
            return done
        result = await publish_records(self.pool, self.keys, own, items)
        for item in outbox:
            _, key, seq = item
            if key != self.namespace.device_id or (key, seq) not in data:
                continue
            if result.stored.get(seq, 0):
                done.append(item)
            elif seq in result.conflicts:
                logger.warning("entry %d of this device: the nodes hold other data", seq)
        return done

    async def _publish_account_items(self) -> None:
        """Certificates and node addresses (the account log): few, one record each."""
        outbox = [i for i in await self.db(self.index.outbox) if i[0] != "entry"]
        if not outbox:
            return
        done: list[tuple[str, str, int]] = []
        certs: dict[str, bytes] = {}
        if any(kind == "cert" for kind, _, _ in outbox):
            for cert_bytes in await self.db(self.index.certificates):
                certs[DeviceCertificate.from_bytes(cert_bytes).device_id] = cert_bytes
        for kind, key, seq in outbox:
            if kind == "cert" and key in certs:
                stored = await publish_account_record(self.pool, self.keys, cert_record(certs[key]))
            elif kind == "node":
                address = self.node_address() if key == self.keys.device_key.node_id else None
                for known in await self.db(self.known_node_addresses):
                    if known.node_id == key and address is None:
                        address = f"{known.host}:{known.port}"
                name = self.config.device_name if key == self.keys.device_key.node_id else ""
                if address is None:
                    done.append((kind, key, seq))
                    continue
                stored = await publish_account_record(
                    self.pool, self.keys, node_record(key, address, name)
                )
            else:
                stored = 1
            if stored:
                done.append((kind, key, seq))
        if done:
            await self.db(self.index.mark_published, done)

    async def fetch_account_log(self) -> None:
        after = int(await self.db(self.index.get_meta, "account_log_seq") or 0)
        records = await fetch_records(self.pool, self.keys, self.keys.account_writer, after)
        for seq, data in records:
            try:
                record = decode_account_record(data)
                if record.kind == "cert":
                    added = await self.db(
                        self.namespace.add_certificate,
                        base64.b64decode(record.body["data"]),
                        publish=False,
                    )
                    for device in added:
                        self.activity.add("device", f"device {device[:8]} joined the account")
                elif record.kind == "node":
                    node_id, address = str(record.body["id"]), str(record.body["address"])
                    if node_id != self.keys.device_key.node_id:
                        await self.db(self.index.upsert_node, node_id, address, "account")
            except (PermaCloudError, KeyError, ValueError) as error:
                logger.warning("skipping account record %d: %s", seq, error)
        if records:
            await self.db(self.index.set_meta, "account_log_seq", str(records[-1][0]))

    async def compact_own_log(self) -> bool:
        """Every SNAPSHOT_EVERY entries: a signed snapshot (stored like any file), announced in
        this device's record log, and the entries it covers pruned from the nodes."""
        head = await self.db(self.namespace.head_seq, self.namespace.device_id)
        last = int(await self.db(self.index.get_meta, "snapshot_seq") or 0)
        if head - last < SNAPSHOT_EVERY:
            return False
        if await self.db(self.index.outbox_size):
            return False  # snapshot only what the nodes already have
        snapshot = await self.db(self.namespace.make_own_snapshot, RETENTION)
        result = await upload_bytes(self.pool, snapshot.to_bytes(), self.upload_options())
        pointer = json.dumps({"snapshot": result.cap.to_string(), "seq": snapshot.seq}).encode()
        stored = await publish_record(
            self.pool, self.keys, self.keys.device_key, SNAPSHOT_RECORD_BASE + snapshot.seq, pointer
        )
        if not stored:
            return False
        await self.db(self.namespace.store_own_snapshot, snapshot)
        await self.db(self.index.set_meta, "snapshot_seq", str(snapshot.seq))
        for node_id in record_nodes(self.pool, self.keys.device_key.node_id, REPLICAS):
            try:
                await self.pool.client(node_id).prune_records(self.keys.device_key, snapshot.seq)
            except NodeError as error:
                logger.info("pruning on %s: %s", node_id, error)
        self.activity.add("sync", f"log compacted up to entry {snapshot.seq}")
        return True

    def upload_options(self) -> UploadOptions:
        storage = self.config.storage
        lease = DurabilitySettings.from_env().lease_seconds
        return UploadOptions(k=storage.k, n=storage.n, happy=storage.happy, lease_seconds=lease)

    async def _adopt_snapshot(self, device_id: str, pointers: list[tuple[int, bytes]]) -> None:
        """The newest snapshot of a device whose early entries are gone from the nodes."""
        seq, data = pointers[-1]
        pointer = json.loads(data)
        blob = await download_bytes(self.pool, str(pointer["snapshot"]))
        changed = await self.db(self.namespace.load_snapshot, blob)
        if changed:
            self.bus.publish("namespace", {"changed": sorted(changed)})
        logger.info("started %s's log from its snapshot at %d", device_id[:8], seq)

    async def fetch_device_logs(self, *, include_own: bool = False) -> int:
        merged = 0
        for cert in await self.db(self.namespace.devices):
            if cert.device_id == self.namespace.device_id and not include_own:
                continue
            writer = node_id_from_public_key(cert.device_public_key)
            after = await self.db(self.namespace.head_seq, cert.device_id)
            records = await fetch_records(self.pool, self.keys, writer, after)
            entries = [(s, d) for s, d in records if s < SNAPSHOT_RECORD_BASE]
            pointers = [
                (s - SNAPSHOT_RECORD_BASE, d) for s, d in records if s >= SNAPSHOT_RECORD_BASE
            ]
            first = entries[0][0] if entries else None
            if pointers and pointers[-1][0] > after and (first is None or first > after + 1):
                try:
                    await self._adopt_snapshot(cert.device_id, pointers)
                except (PermaCloudError, KeyError, ValueError) as error:
                    logger.warning("snapshot of %s unusable: %s", cert.device_id[:8], error)
            if not entries:
                continue
            result = await receive_and_announce(self, decode_entries(entries))
            merged += result.merged
            for reason in result.rejected:
                self.activity.add("error", reason)
                self.bus.publish(
                    "notify", {"kind": "error", "title": "Rejected change", "text": reason}
                )
            if result.changed:
                self.bus.publish("namespace", {"changed": sorted(result.changed)})
        return merged

    async def restore_from_network(self) -> None:
        """A deleted index comes back from the network: certificates and nodes from the account
        log, then every device's log, this device's own first of all. Until its own log is
        back, local writes are refused, so the device never forks its own history."""
        self.namespace.restoring = True
        try:
            await self.refresh_nodes()
            await self.fetch_account_log()
            if not self.pool.online():
                logger.warning("no node reachable: the index will be rebuilt when one is")
                return
            await self.fetch_device_logs(include_own=True)
            self.namespace.restoring = False
            await self.db(self.index.set_meta, "restored", str(time.time()))
            self.activity.add("sync", "local index rebuilt from the network")
        except PermaCloudError as error:
            logger.warning("rebuilding the index: %s", error)

    async def replicate_once(self) -> None:
        """One round; rounds never overlap (the IPC `replicate` and the loop share a lock)."""
        async with self._replication_lock:
            await self._replicate_round()

    async def publish_once(self) -> None:
        """Only push this device's news (a full round while the index is being restored)."""
        async with self._replication_lock:
            if self.namespace.restoring:
                await self._replicate_round()
                return
            await self.publish_outbox()
            await self.compact_own_log()

    async def _replicate_round(self) -> None:
        if self.namespace.restoring:
            await self.restore_from_network()
        await self.publish_outbox()
        await self.compact_own_log()
        await self.fetch_account_log()
        await self.fetch_device_logs()

    async def replication_loop(self) -> None:
        """Publish and fetch every few seconds and at once when woken (another device's
        nudge, a new node); only publish when woken by local changes; nothing while paused."""
        next_full = 0.0
        while True:
            full = self._full_due or trio.current_time() >= next_full
            self._full_due = False
            try:
                if not self.sync_paused:
                    await (self.replicate_once() if full else self.publish_once())
            except PermaCloudError as error:
                logger.warning("replication: %s", error)
            except Exception:  # a bad round must never take the daemon down; next round retries
                logger.exception("replication round failed")
            if full:
                next_full = trio.current_time() + REPLICATION_INTERVAL
            with trio.move_on_at(next_full):
                await self._wake.wait()
            self._wake = trio.Event()
            await trio.sleep(ROUND_GAP)

    async def refresh_loop(self) -> None:
        while True:
            await trio.sleep(REFRESH_INTERVAL)
            await self.refresh_nodes()

    def node_address(self) -> str:
        if self.node is None:
            return self.config.node.listen
        return f"{self.node.host}:{self.node.port}"

    # --- running ----------------------------------------------------------------------------

    async def run(self, ready: Callable[[Daemon], None] | None = None) -> None:
        """Serve until `request_shutdown`; cleanup runs shielded so a shutdown is clean."""
        from desktop.daemon.handlers import build_handlers
        from desktop.daemon.mount_handlers import mount_service
        from desktop.daemon.sync_handlers import sync_service

        await self.db(self.namespace.load)
        needs_restore = self.index.created
        host, port = parse_address(self.config.node.listen)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.agent.run)
                if self.config.node.enabled and not left_marker(self.paths.data_dir).exists():
                    node_config = NodeConfig(
                        data_dir=self.paths.data_dir / "node",
                        quota=parse_size(self.config.node.quota),
                        host=host,
                        port=port,
                        key=self.keys.device_key,
                        extensions=build_extensions(self),
                        send_limiter=self.agent.send_limiter,
                        receive_limiter=self.agent.receive_limiter,
                        admit=self.agent.admit,
                        background=self.agent.run_background,
                    )
                    self.node = await nursery.start(serve_node, node_config)
                    self.agent.attach_store(self.node.server.store)
                    await self.db(
                        self.index.upsert_node, self.node.node_id, self.node_address(), "self"
                    )
                await nursery.start(run_auditor, self)
                await self.refresh_nodes()
                if needs_restore:
                    await self.restore_from_network()
                server = IpcServer(self.paths.socket_path, build_handlers(self), self.bus)
                await nursery.start(server.serve)
                nursery.start_soon(self.replication_loop)
                nursery.start_soon(self.refresh_loop)
                nursery.start_soon(checker_for(self).run)
                nursery.start_soon(run_discovery, self)
                nursery.start_soon(mount_service(self).run)
                nursery.start_soon(sync_service(self).run)
                logger.info("daemon ready: device %s", self.config.device_name)
                if ready is not None:
                    ready(self)
                await self._shutdown.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.pool.aclose()
            self.index.close()


def build_extensions(daemon: Daemon) -> dict[str, Any]:
    from desktop.daemon.join import inviter_join_handler

    return {"join": inviter_join_handler(daemon), NUDGE_EXTENSION: nudge_handler(daemon)}


def open_device(paths: AppPaths) -> Daemon:
    """Config, keys (the keyring may block on D-Bus) and the index: all blocking, so a thread."""
    config = load_config(paths.config_file)
    store = open_secret_store(
        config.home_id, paths.data_dir / "secrets.json", prefer=config.secret_store
    )
    return Daemon(paths, config, load_keys(store))


async def run_daemon(paths: AppPaths, ready: Callable[[Daemon], None] | None = None) -> None:
    """The `permacloud daemon` process: lock, load, serve until SIGTERM/SIGINT."""
    await trio.to_thread.run_sync(paths.ensure)
    lock_fd = acquire_lock(paths.data_dir / "daemon.lock")
    try:
        daemon = await trio.to_thread.run_sync(open_device, paths)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def watch_signals() -> None:
                    async for signum in signals:
                        logger.info("signal %d: shutting down", signum)
                        daemon.request_shutdown()
                        return

                nursery.start_soon(watch_signals)
                await daemon.run(ready)
                nursery.cancel_scope.cancel()
    finally:
        os.close(lock_fd)
