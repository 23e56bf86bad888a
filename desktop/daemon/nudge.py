"""Push notices between an account's devices: "my log grew, fetch now".

Without them a device learns of another's changes only when its replication loop next polls
the record nodes (every few seconds), which was most of the latency of a small change. After
publishing new log entries a device POSTs a tiny nudge to the node of each other device of the
account (`/v1/ext/nudge`, a daemon extension); the receiving daemon wakes its replication loop,
which fetches at once. Nudges are unsigned hints: the fetch itself is what is verified, a lost
nudge only means the next poll picks the change up, and a forged one costs a replication round
(rounds never overlap and are spaced by `ROUND_GAP`, so a flood of nudges cannot make them spin).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from desktop.core.errors import PermaCloudError
from desktop.net.identity import node_id_from_public_key
from desktop.net.protocol import RequestError

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

logger = logging.getLogger(__name__)

NUDGE_EXTENSION = "nudge"
NUDGE_TIMEOUT = 2.0
_WRITER_RE = re.compile(r"^[a-z2-7]{32}$")


def nudge_handler(daemon: Daemon) -> Callable[[bytes, bytes], Awaitable[dict[str, Any]]]:
    """The `/v1/ext/nudge` endpoint of this device's node: wake replication."""

    async def handle(body: bytes, certificate_der: bytes) -> dict[str, Any]:
        try:
            writer = json.loads(body)["writer"]
        except (ValueError, KeyError, TypeError):
            raise RequestError(400, "malformed nudge") from None
        if not isinstance(writer, str) or not _WRITER_RE.match(writer):
            raise RequestError(400, "malformed nudge")
        daemon.wake_replication()
        return {"ok": True}

    return handle


async def nudge_devices(daemon: Daemon) -> bool:
    """Tell the account's other devices that our log grew; True when every one of them took
    the notice (the caller tries again next round if not: a device whose node was not known
    yet, or was down). Never raises: a nudge is only a hint."""
    own = daemon.namespace.device_id
    known = set(daemon.pool.node_ids)
    others = [
        node_id_from_public_key(cert.device_public_key)
        for cert in await daemon.db(daemon.namespace.devices)
        if cert.device_id != own
    ]
    targets = [node_id for node_id in others if node_id in known]
    if not targets:
        return not others
    body = json.dumps({"writer": daemon.keys.device_key.node_id}).encode()
    reached = 0

    async def one(node_id: str) -> None:
        nonlocal reached
        with trio.move_on_after(NUDGE_TIMEOUT):
            try:
                await daemon.pool.client(node_id).call_extension(NUDGE_EXTENSION, body)
            except PermaCloudError as error:
                logger.debug("nudge to %s: %s", node_id, error)
                return
            reached += 1

    async with trio.open_nursery() as nursery:
        for node_id in targets:
            nursery.start_soon(one, node_id)
    return reached == len(others)
