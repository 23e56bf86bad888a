"""Hand-made requests to a node, for tests that must send what a well-behaved client never would."""

from __future__ import annotations

import json
import time
from typing import Any

import h11
import trio

from desktop.net.h11io import next_event, send_data, send_event
from desktop.net.identity import DeviceKey
from desktop.net.signing import body_hash, sign_request
from desktop.net.tls import client_context


async def open_tls(address: tuple[str, int]) -> trio.SSLStream[trio.SocketStream]:
    tcp = await trio.open_tcp_stream(*address)
    stream = trio.SSLStream(tcp, client_context(), https_compatible=True)
    await stream.do_handshake()
    return stream


def signed_headers(
    key: DeviceKey,
    method: str,
    path: str,
    body: bytes,
    node_id: str,
    *,
    now: float | None = None,
) -> list[tuple[str, str]]:
    return sign_request(
        key, method, path, body_hash(body), node_id, time.time() if now is None else now
    )


async def raw_request(
    address: tuple[str, int],
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> tuple[int, Any]:
    """One request on a fresh connection; returns (status, parsed JSON body or raw bytes)."""
    stream = await open_tls(address)
    try:
        conn = h11.Connection(h11.CLIENT)
        all_headers = [("host", "x"), ("content-length", str(len(body))), *(headers or [])]
        await send_event(conn, stream, h11.Request(method=method, target=path, headers=all_headers))
        if body:
            await send_data(conn, stream, body)
        await send_event(conn, stream, h11.EndOfMessage())
        return await read_response(conn, stream)
    finally:
        await trio.aclose_forcefully(stream)


async def read_response(conn: h11.Connection, stream: trio.abc.Stream) -> tuple[int, Any]:
    event = await next_event(conn, stream)
    assert isinstance(event, h11.Response), event
    parts = []
    while True:
        data = await next_event(conn, stream)
        if isinstance(data, h11.EndOfMessage):
            break
        assert isinstance(data, h11.Data), data
        parts.append(data.data)
    raw = b"".join(parts)
    try:
        return event.status_code, json.loads(raw)
    except ValueError:
        return event.status_code, raw


async def raw_bytes_exchange(address: tuple[str, int], payload: bytes) -> bytes:
    """Send arbitrary bytes over TLS; return whatever comes back until the node closes."""
    stream = await open_tls(address)
    received = b""
    try:
        await stream.send_all(payload)
        with trio.move_on_after(10):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
    except trio.BrokenResourceError:
        pass
    finally:
        await trio.aclose_forcefully(stream)
    return received
