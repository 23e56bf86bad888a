"""Run a storage node: identity, store, TLS listener, lease sweeper, in one trio task tree.

`serve_node` is what the daemon (and `permacloud node run`) starts in a nursery.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from desktop.agent.records import RecordStore
from desktop.agent.server import ExtensionHandler, NodeServer, ServerLimits
from desktop.agent.store import Admission, ShareStore
from desktop.net.identity import DeviceKey
from desktop.net.ratelimit import NO_LIMIT, RateLimiter
from desktop.net.tls import pem_to_der, server_context, server_context_for_key

logger = logging.getLogger(__name__)

BackgroundRunner = Callable[[Callable[[], int]], Awaitable[int]]

KEY_FILE = "node_key.pem"
CERT_FILE = "node_cert.pem"


@dataclass
class NodeConfig:
    data_dir: Path
    quota: int
    host: str = "127.0.0.1"
    port: int = 0
    sweep_interval: float = 3600.0
    fsync: bool = True
    limits: ServerLimits = field(default_factory=ServerLimits)
    send_limiter: RateLimiter = NO_LIMIT
    receive_limiter: RateLimiter = NO_LIMIT
    key: DeviceKey | None = None  # the daemon's device key; None: a key file in data_dir
    extensions: dict[str, ExtensionHandler] = field(default_factory=dict)
    admit: Admission | None = None  # the scheduler's say on new shares (agent/runtime.py)
    background: BackgroundRunner | None = None  # runs blocking upkeep; None: a plain thread


@dataclass(frozen=True)
class RunningNode:
    """What `serve_node` reports once it listens."""

    node_id: str
    host: str
    port: int
    server: NodeServer


def load_identity(data_dir: Path) -> tuple[DeviceKey, Path, Path]:
    """The node key (created on first use, mode 0600) and a certificate file for it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path = data_dir / KEY_FILE
    key = DeviceKey.load_or_create(key_path)
    cert_path = data_dir / CERT_FILE
    tmp = cert_path.with_name(CERT_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as cert_file:
        cert_file.write(key.certificate_pem())
    os.replace(tmp, cert_path)
    return key, key_path, cert_path


async def _sweep_forever(
    store: ShareStore, interval: float, background: BackgroundRunner | None
) -> None:
    while True:
        await trio.sleep(interval)
        if background is None:
            removed = await trio.to_thread.run_sync(store.sweep)
        else:
            removed = await background(store.sweep)
        if removed:
            logger.info("lease sweep removed %d share(s)", removed)


async def serve_node(
    config: NodeConfig, *, task_status: trio.TaskStatus[RunningNode] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; `task_status.started` gets the node ID and the bound port."""
    if config.key is None:
        key, key_path, cert_path = await trio.to_thread.run_sync(load_identity, config.data_dir)
        context = server_context(cert_path, key_path)
        der = pem_to_der(await trio.Path(cert_path).read_bytes())
    else:
        key = config.key
        context, der = await trio.to_thread.run_sync(
            server_context_for_key, key, config.data_dir / "tmp"
        )
    store = await trio.to_thread.run_sync(
        lambda: ShareStore(
            config.data_dir / "store", config.quota, fsync=config.fsync, admit=config.admit
        )
    )
    records = await trio.to_thread.run_sync(RecordStore, config.data_dir / "records")
    await trio.to_thread.run_sync(store.sweep)
    server = NodeServer(
        key,
        store,
        config.limits,
        send_limiter=config.send_limiter,
        receive_limiter=config.receive_limiter,
        records=records,
        extensions=config.extensions,
        certificate_der=der,
    )
    listeners = await trio.open_tcp_listeners(config.port, host=config.host)

    async def handle_tcp(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, context, server_side=True, https_compatible=True)
        await server.handle_connection(stream)

    port = listeners[0].socket.getsockname()[1]
    logger.info("node %s listening on %s:%d", key.node_id, config.host, port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_sweep_forever, store, config.sweep_interval, config.background)
        await nursery.start(trio.serve_listeners, handle_tcp, listeners)
        task_status.started(RunningNode(key.node_id, config.host, port, server))
        await server.stopped.wait()
        logger.info("node %s stopped serving", key.node_id)
        nursery.cancel_scope.cancel()
