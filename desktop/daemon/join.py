"""Invites over the wire: the inviter's daemon endpoint and the joiner's one-shot exchange.

The joiner connects over TLS to an address in the code and accepts only a node whose ID matches
the code's pin; only then does it send a request proving knowledge of the one-time secret, bound
to the TLS certificate it saw. The reply is encrypted under a key derived from the secret, so a
passive or active attacker without the code learns nothing and cannot impersonate either side.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from desktop.core.errors import PermaCloudError
from desktop.core.invite import (
    InviteError,
    InviteInvalid,
    InviteRecord,
    accept_join_request,
    make_join_request,
    make_join_response,
    mark_used,
    open_join_response,
    parse_invite_code,
    record_failure,
)
from desktop.core.namespace import issue_certificate
from desktop.core.namespace.canonical import decode as canonical_decode
from desktop.core.namespace.canonical import unb64
from desktop.daemon.replication import node_record, publish_account_record
from desktop.net.errors import NodeError
from desktop.net.identity import DeviceKey, node_id_from_public_key
from desktop.net.node_client import NodeClient, Timeouts
from desktop.net.protocol import RequestError

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

logger = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _find_record(records: list[tuple[str, str]], invite_id: bytes) -> InviteRecord | None:
    for _, text in records:
        record = InviteRecord.from_json(text.encode())
        if record.invite_id == invite_id:
            return record
    return None


def inviter_join_handler(daemon: Daemon) -> Callable[[bytes, bytes], Awaitable[dict[str, Any]]]:
    """The `/v1/ext/join` endpoint of this device's node."""

    async def handle(body: bytes, certificate_der: bytes) -> dict[str, Any]:
        try:
            wrapper = json.loads(body)
            message = base64.b64decode(wrapper["join"])
            joiner_address = str(wrapper.get("address", ""))
            invite_id = unb64(canonical_decode(message)["invite"])
        except (ValueError, KeyError, TypeError, PermaCloudError):
            raise RequestError(400, "malformed join request") from None
        record = _find_record(await daemon.db(daemon.index.invites), invite_id)
        if record is None:
            raise RequestError(403, "unknown invite")
        now = time.time()
        try:
            accepted = accept_join_request(record, message, certificate_der, now)
        except InviteInvalid as error:
            await daemon.db(
                daemon.index.save_invite,
                record.invite_id.hex(),
                record_failure(record).to_json().decode(),
            )
            raise RequestError(403, str(error)) from None
        except InviteError as error:
            raise RequestError(403, str(error)) from None
        await daemon.db(
            daemon.index.save_invite,
            record.invite_id.hex(),
            mark_used(record, now).to_json().decode(),
        )
        payload = await _grant(
            daemon, record, accepted.joiner_public_key, accepted.joiner_name, joiner_address
        )
        response = make_join_response(record, accepted, json.dumps(payload).encode())
        daemon.activity.add("device", f"{accepted.joiner_name} joined with an invite")
        return {"response": _b64(response)}

    return handle


async def _grant(
    daemon: Daemon, record: InviteRecord, joiner_key: bytes, name: str, address: str
) -> dict[str, Any]:
    """What the joiner receives; also records its node in the account log."""
    keys = daemon.keys
    node_id = node_id_from_public_key(joiner_key)
    nodes = [
        {"id": node.node_id, "address": f"{node.host}:{node.port}"}
        for node in await daemon.db(daemon.known_node_addresses)
    ]
    if address:
        await daemon.db(daemon.index.upsert_node, node_id, address, "account")
        try:
            await publish_account_record(daemon.pool, keys, node_record(node_id, address, name))
        except (PermaCloudError, NodeError) as error:
            logger.warning("could not publish the new node yet: %s", error)
    payload: dict[str, Any] = {"kind": record.code.kind, "nodes": nodes}
    if record.code.kind == "device":
        cert = issue_certificate(
            keys.account_root, keys.account_public, joiner_key, name, int(time.time() * 1000)
        )
        await daemon.db(daemon.namespace.add_certificate, cert.to_bytes(), publish=True)
        daemon.wake_replication()
        payload.update(
            account_root=_b64(keys.root_seed()),
            account_secret=_b64(keys.account_secret),
            certificate=_b64(cert.to_bytes()),
            certificates=[_b64(c) for c in await daemon.db(daemon.index.certificates)],
        )
    return payload


@dataclass(frozen=True)
class JoinGrant:
    kind: str
    nodes: list[tuple[str, str]]
    account_root: bytes | None
    account_secret: bytes | None
    certificates: list[bytes]


async def join_with_code(
    code_text: str, device_key: DeviceKey, name: str, own_address: str
) -> JoinGrant:
    """The joiner's side: try each address in the code until one pinned inviter answers."""
    code = parse_invite_code(code_text)
    last_error: Exception | None = None
    for host, port in code.addresses:
        client = NodeClient(
            "",
            (host, port),
            device_key,
            accept=code.pins,
            timeouts=Timeouts(connect=10, request=30),
        )
        try:
            await client.info()
            message, state = make_join_request(
                code, client.node_id, device_key.private_key, name, client.peer_certificate
            )
            wrapper = json.dumps({"join": _b64(message), "address": own_address}).encode()
            reply = await client.call_extension("join", wrapper)
            payload = json.loads(open_join_response(state, base64.b64decode(reply["response"])))
        except (NodeError, InviteError) as error:
            last_error = error
            continue
        finally:
            await client.aclose()
        return JoinGrant(
            kind=str(payload["kind"]),
            nodes=[(str(n["id"]), str(n["address"])) for n in payload["nodes"]],
            account_root=base64.b64decode(payload["account_root"])
            if "account_root" in payload
            else None,
            account_secret=base64.b64decode(payload["account_secret"])
            if "account_secret" in payload
            else None,
            certificates=[base64.b64decode(c) for c in payload.get("certificates", [])]
            + ([base64.b64decode(payload["certificate"])] if "certificate" in payload else []),
        )
    raise InviteInvalid(f"could not join: {last_error}")
