"""The node's HTTP/1.1 request handling: h11 on trio TLS streams, one task per connection.

Every failure a peer can cause ends as a JSON error response (or a closed connection when the
stream itself is broken); nothing a request contains can reach another share or crash the node.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import blake3
import h11
import trio

from desktop import __version__
from desktop.agent.peer_limits import PeerRequestLimiter
from desktop.agent.records import RecordError, RecordStore
from desktop.agent.store import ShareStore
from desktop.core.audit import AuditFailed, layout_of_share, proof_ranges
from desktop.core.layout import HEADER_SIZE
from desktop.net.h11io import next_event, send_data, send_event
from desktop.net.identity import DeviceKey, node_id_from_public_key
from desktop.net.protocol import (
    JSON_TYPE,
    MAX_CONTROL_BODY,
    MAX_HEADER_BYTES,
    MAX_LEASE_SECONDS,
    MAX_RECORD_BODY,
    MAX_WRITE_BODY,
    MIN_LEASE_SECONDS,
    OCTETS_TYPE,
    PROTOCOL_VERSION,
    RequestError,
    Route,
    error_body,
    owner_from_str,
    parse_batch,
    parse_create,
    parse_handoff,
    parse_lease,
    parse_range,
    parse_target,
)
from desktop.net.ratelimit import NO_LIMIT, RateLimiter
from desktop.net.records_wire import (
    MAX_RECORD_BATCH_BODY,
    MAX_RECORD_BATCH_ITEMS,
    RecordWireError,
    decode_records,
    encode_records,
)
from desktop.net.signing import ReplayCache, SignatureError, SignedRequest, verify_request

logger = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024
_COALESCE_BODY = 64 * 1024
IDLE_TIMEOUT = 120.0
BODY_TIMEOUT = 60.0
HANDSHAKE_TIMEOUT = 15.0
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError)


@dataclass
class ServerLimits:
    """Tunables of request handling (tests shrink them)."""

    read_rate: float = 500.0
    read_burst: float = 2000.0
    signature_window: float = 300.0
    max_connections: int = 1024


ExtensionHandler = Callable[[bytes, bytes], Awaitable[dict[str, Any]]]
"""An endpoint the daemon adds (e.g. invite joins): (body, our certificate DER) -> JSON reply."""


class _CloseConnection(Exception):
    """The connection cannot carry another request (broken framing, timeout)."""


class NodeServer:
    def __init__(
        self,
        key: DeviceKey,
        store: ShareStore,
        limits: ServerLimits | None = None,
        *,
        send_limiter: RateLimiter = NO_LIMIT,
        receive_limiter: RateLimiter = NO_LIMIT,
        clock: Callable[[], float] = time.time,
        records: RecordStore | None = None,
        extensions: dict[str, ExtensionHandler] | None = None,
        certificate_der: bytes = b"",
    ) -> None:
        self.key = key
        self.store = store
        self.records = records
        self.extensions = extensions if extensions is not None else {}
        self.certificate_der = certificate_der
        self.limits = limits or ServerLimits()
        self.send_limiter = send_limiter
        self.receive_limiter = receive_limiter
        self.clock = clock
        self.replay = ReplayCache(self.limits.signature_window)
        self.read_limiter = PeerRequestLimiter(self.limits.read_rate, self.limits.read_burst)
        self._connections = trio.Semaphore(self.limits.max_connections)
        self.stopped = trio.Event()  # set by `stop`: the node closes its listener for good

    def stop(self) -> None:
        """Stop serving (a device leaving the network): `serve_node` closes its listener."""
        self.stopped.set()

    async def handle_connection(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        peer = _peer_address(stream)
        try:
            if self._connections.value == 0:
                return
            async with self._connections:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    await stream.do_handshake()
                conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
                while await self._serve_one(conn, stream, peer):
                    conn.start_next_cycle()
        except (*_STREAM_ERRORS, trio.TooSlowError, _CloseConnection) as error:
            logger.debug("connection from %s ended: %r", peer, error)
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve_one(
        self, conn: h11.Connection, stream: trio.SSLStream[trio.SocketStream], peer: str
    ) -> bool:
        """Serve one request; False when the connection must close afterwards."""
        try:
            with trio.move_on_after(IDLE_TIMEOUT) as idle:
                event = await next_event(conn, stream)
            if idle.cancelled_caught:
                return False
        except h11.RemoteProtocolError as error:
            status = error.error_status_hint if error.error_status_hint >= 400 else 400
            if status == 431:
                message = f"request head larger than {MAX_HEADER_BYTES} bytes"
            else:
                message = f"malformed HTTP request: {error}"
            await self._send_error(conn, stream, status, message, close=True)
            return False
        if isinstance(event, h11.ConnectionClosed):
            return False
        if not isinstance(event, h11.Request):
            raise _CloseConnection(f"unexpected event {type(event).__name__}")
        head_size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
        if head_size > MAX_HEADER_BYTES:
            message = f"request head larger than {MAX_HEADER_BYTES} bytes"
            await self._send_error(conn, stream, 431, message, close=True)
            return False
        method = event.method.decode("ascii", "replace")
        target = event.target
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
        try:
            await self._dispatch(conn, stream, peer, method, target, headers)
        except RequestError as error:
            close = not await self._drain(conn, stream, headers)
            await self._send_error(conn, stream, error.status, str(error), close=close)
        except h11.RemoteProtocolError as error:
            await self._send_error(conn, stream, 400, f"malformed HTTP body: {error}", close=True)
            return False
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    # ---- plumbing ------------------------------------------------------------------------

    async def _drain(
        self, conn: h11.Connection, stream: trio.abc.Stream, headers: dict[str, str]
    ) -> bool:
        """Read and drop the rest of a refused request's body if small; False to close instead."""
        if conn.their_state is h11.DONE:
            return True
        if conn.their_state is not h11.SEND_BODY:
            return False
        declared = headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_WRITE_BODY:
            return False
        try:
            with trio.fail_after(BODY_TIMEOUT):
                while True:
                    event = await next_event(conn, stream)
                    if isinstance(event, h11.EndOfMessage):
                        return True
                    if not isinstance(event, h11.Data):
                        return False
        except (h11.RemoteProtocolError, trio.TooSlowError):
            return False

    async def _send_error(
        self, conn: h11.Connection, stream: trio.abc.Stream, status: int, message: str, close: bool
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            raise _CloseConnection(f"cannot report error {status} mid-response: {message}")
        logger.info("request refused (%d): %s", status, message)
        await self._send_body(conn, stream, status, error_body(message), JSON_TYPE, close=close)

    async def _send_body(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        status: int,
        body: bytes,
        content_type: str,
        close: bool = False,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("server", f"permacloud-node/{__version__}"),
        ]
        if close:
            headers.append(("connection", "close"))
        headers.extend(extra or [])
        response = h11.Response(status_code=status, headers=headers)
        if len(body) <= _COALESCE_BODY:
            # Head, body and end in one TLS record and one syscall: small answers are bound by
            # per-send costs.
            out = [conn.send(response) or b""]
            if body:
                out.append(conn.send(h11.Data(data=body)) or b"")
            out.append(conn.send(h11.EndOfMessage()) or b"")
            await stream.send_all(b"".join(out))
            return
        await send_event(conn, stream, response)
        await send_data(conn, stream, body)
        await send_event(conn, stream, h11.EndOfMessage())

    async def _send_json(
        self, conn: h11.Connection, stream: trio.abc.Stream, status: int, obj: Any
    ) -> None:
        await self._send_body(conn, stream, status, json.dumps(obj).encode(), JSON_TYPE)

    async def _read_body(self, conn: h11.Connection, stream: trio.abc.Stream, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        with trio.fail_after(BODY_TIMEOUT):
            while True:
                event = await next_event(conn, stream)
                if isinstance(event, h11.EndOfMessage):
                    return b"".join(parts)
                if not isinstance(event, h11.Data):
                    raise _CloseConnection("connection ended inside a request body")
                total += len(event.data)
                if total > limit:
                    raise RequestError(413, f"control body larger than {limit} bytes")
                parts.append(event.data)

    # ---- routing -------------------------------------------------------------------------

    async def _dispatch(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        peer: str,
        method: str,
        target: bytes,
        headers: dict[str, str],
    ) -> None:
        route = parse_target(method, target)
        if route.action == "batch_put":
            signed = self._verify(method, target, headers)
            await self._put_batch(conn, stream, peer, route, signed)
            return
        if route.action.startswith("records_") or route.action == "ext":
            await self._dispatch_named(conn, stream, peer, method, target, headers, route)
            return
        declared = headers.get("content-length")
        bulk = route.action in ("write", "put")
        if declared is not None and not bulk and int(declared) > MAX_CONTROL_BODY:
            raise RequestError(413, f"control body larger than {MAX_CONTROL_BODY} bytes")
        if route.action == "put":
            signed = self._verify(method, target, headers)
            await self._put_sealed(conn, stream, peer, route, signed)
            return
        if route.action == "write":
            signed = self._verify(method, target, headers)
            await self._write(conn, stream, peer, route, signed, headers)
            return
        if route.action in ("create", "handoff", "seal", "lease", "delete"):
            signed = self._verify(method, target, headers)
            body = await self._read_body(conn, stream, MAX_CONTROL_BODY)
            if blake3.blake3(body).hexdigest() != signed.body_hex:
                raise RequestError(400, "body does not match its signed hash")
            await self._control(conn, stream, route, signed, body)
            return
        await self._read_body(conn, stream, MAX_CONTROL_BODY)
        if not self.read_limiter.allow(peer, self.clock()):
            retry = self.read_limiter.retry_after(peer)
            raise RequestError(429, f"too many requests; retry in {retry:.2f} s")
        if route.action == "info":
            await self._send_json(conn, stream, 200, self.info())
        elif route.action == "list":
            shares = [
                {
                    "shnum": s.shnum,
                    "size": s.size,
                    "sealed": s.sealed,
                    "lease_expires": s.lease_expires,
                }
                for s in self.store.list_shares(route.si)
            ]
            await self._send_json(conn, stream, 200, {"shares": shares})
        elif route.action == "proof":
            await self._proof(conn, stream, peer, route)
        else:
            await self._read(conn, stream, peer, route, headers.get("range"))

    async def _dispatch_named(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        peer: str,
        method: str,
        target: bytes,
        headers: dict[str, str],
        route: Route,
    ) -> None:
        """Record logs and daemon extensions: small bodies, one JSON or octet reply."""
        if route.action == "ext":
            handler = self.extensions.get(route.name)
            if handler is None:
                raise RequestError(404, "no such endpoint")
            if not self.read_limiter.allow(peer, self.clock()):
                raise RequestError(429, "too many requests")
            body = await self._read_body(conn, stream, MAX_CONTROL_BODY)
            await self._send_json(conn, stream, 200, await handler(body, self.certificate_der))
            return
        if self.records is None:
            raise RequestError(404, "this node keeps no records")
        records = self.records
        if route.action == "records_list":
            await self._read_body(conn, stream, MAX_CONTROL_BODY)
            if not self.read_limiter.allow(peer, self.clock()):
                raise RequestError(429, "too many requests")
            listing = await trio.to_thread.run_sync(records.list, route.name, route.offset)
            await self._send_body(conn, stream, 200, encode_records(listing), OCTETS_TYPE)
            return
        signed = self._verify(method, target, headers)
        if node_id_from_public_key(signed.public_key) != route.name:
            raise RequestError(403, "only the writer's key may change its records")
        batch = route.action == "records_batch"
        body = await self._read_body(
            conn, stream, MAX_RECORD_BATCH_BODY if batch else MAX_RECORD_BODY
        )
        if blake3.blake3(body).hexdigest() != signed.body_hex:
            raise RequestError(400, "body does not match its signed hash")
        if batch:
            await self._put_records(conn, stream, records, route.name, body)
            return
        try:
            if route.action == "records_put":
                created = await trio.to_thread.run_sync(records.put, route.name, route.offset, body)
                await self._send_json(conn, stream, 200, {"created": created})
            else:
                removed = await trio.to_thread.run_sync(records.prune, route.name, route.offset)
                await self._send_json(conn, stream, 200, {"removed": removed})
        except RecordError as error:
            raise RequestError(error.status, str(error)) from None

    async def _put_records(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        records: RecordStore,
        writer: str,
        body: bytes,
    ) -> None:
        """A record batch: one durable append on the node, a result per record."""
        try:
            items = decode_records(body)
        except RecordWireError as error:
            raise RequestError(400, str(error)) from None
        if len(items) > MAX_RECORD_BATCH_ITEMS:
            raise RequestError(413, f"more than {MAX_RECORD_BATCH_ITEMS} records in a batch")
        try:
            results = await trio.to_thread.run_sync(
                records.put_many, writer, [(r.seq, r.data) for r in items]
            )
        except RecordError as error:
            raise RequestError(error.status, str(error)) from None
        answer = [{"status": status, "error": error} for status, error in results]
        await self._send_json(conn, stream, 200, {"results": answer})

    def info(self) -> dict[str, Any]:
        return {
            "node_id": self.key.node_id,
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "quota": self.store.quota,
            "used": self.store.used,
            "free": self.store.free,
            "max_write": MAX_WRITE_BODY,
        }

    def _verify(self, method: str, target: bytes, headers: dict[str, str]) -> SignedRequest:
        try:
            return verify_request(
                headers, method, target.decode("ascii"), self.key.node_id, self.clock(), self.replay
            )
        except SignatureError as error:
            raise RequestError(error.status, str(error)) from None

    async def _control(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        route: Route,
        signed: SignedRequest,
        body: bytes,
    ) -> None:
        store = self.store
        owner = signed.public_key
        si, shnum = route.si, route.shnum
        if route.action in ("create", "handoff"):
            if route.action == "create":
                size, lease = parse_create(body)
                created, state = await trio.to_thread.run_sync(
                    store.create, si, shnum, size, lease, owner
                )
            else:
                size, expires = parse_handoff(body)
                created, state = await trio.to_thread.run_sync(
                    store.create_handoff,
                    si,
                    shnum,
                    size,
                    expires,
                    owner_from_str(route.name),
                    owner,
                )
            await self._send_json(
                conn,
                stream,
                201 if created else 200,
                {
                    "created": created,
                    "sealed": state.sealed,
                    "size": state.size,
                    "already_written": [list(r) for r in state.ranges],
                    "lease_expires": state.lease_expires,
                },
            )
        elif route.action == "seal":
            state = await trio.to_thread.run_sync(store.seal, si, shnum, owner)
            answer: dict[str, Any] = {"sealed": True, "size": state.size}
            if state.writer is not None and state.writer == owner:
                # A handoff's sender checks the copy against its own before deleting it.
                answer["blake3"] = await trio.to_thread.run_sync(store.data_hash, si, shnum)
            await self._send_json(conn, stream, 200, answer)
        elif route.action == "lease":
            seconds = parse_lease(body)
            state = await trio.to_thread.run_sync(store.renew_lease, si, shnum, owner, seconds)
            await self._send_json(conn, stream, 200, {"lease_expires": state.lease_expires})
        else:
            await trio.to_thread.run_sync(store.delete, si, shnum, owner)
            await self._send_json(conn, stream, 200, {"deleted": True})

    async def _put_batch(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        peer: str,
        route: Route,
        signed: SignedRequest,
    ) -> None:
        """Many small sealed shares in one request; each gets its own status, like a sealed
        put of its own (so one full quota does not fail the others)."""
        lease = _lease_in_path(route)
        body = await self._read_sealed_body(conn, stream, peer, signed)
        items = parse_batch(body)
        results = await trio.to_thread.run_sync(
            self.store.put_sealed_many, items, lease, signed.public_key
        )
        await self._send_json(
            conn,
            stream,
            200,
            {"results": [{"status": status, "error": error} for status, error in results]},
        )

    async def _read_sealed_body(
        self, conn: h11.Connection, stream: trio.abc.Stream, peer: str, signed: SignedRequest
    ) -> bytes:
        """A whole-share body: throttled like any share data, checked against its signature."""
        body = await self._read_body(conn, stream, MAX_WRITE_BODY)
        await self.receive_limiter.consume(len(body), peer)
        if blake3.blake3(body).hexdigest() != signed.body_hex:
            raise RequestError(400, "body does not match its signed hash")
        return body

    async def _put_sealed(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        peer: str,
        route: Route,
        signed: SignedRequest,
    ) -> None:
        """A whole small share in one request: written, fsynced and sealed at once."""
        lease = _lease_in_path(route)
        body = await self._read_sealed_body(conn, stream, peer, signed)
        created, state = await trio.to_thread.run_sync(
            self.store.put_sealed, route.si, route.shnum, body, lease, signed.public_key
        )
        await self._send_json(
            conn,
            stream,
            201 if created else 200,
            {"sealed": True, "size": state.size, "lease_expires": state.lease_expires},
        )

    async def _write(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        peer: str,
        route: Route,
        signed: SignedRequest,
        headers: dict[str, str],
    ) -> None:
        declared = headers.get("content-length")
        if declared is None:
            raise RequestError(411, "a write needs a Content-Length")
        length = int(declared)
        if length > MAX_WRITE_BODY:
            raise RequestError(413, f"a write carries at most {MAX_WRITE_BODY} bytes")
        writer = self.store.begin_write(
            route.si, route.shnum, route.offset, length, signed.public_key
        )
        try:
            hasher = blake3.blake3()
            with trio.fail_after(BODY_TIMEOUT):
                while True:
                    event = await next_event(conn, stream)
                    if isinstance(event, h11.EndOfMessage):
                        break
                    if not isinstance(event, h11.Data):
                        raise _CloseConnection("connection ended inside a write body")
                    await self.receive_limiter.consume(len(event.data), peer)
                    hasher.update(event.data)
                    writer.feed(event.data)
            if hasher.hexdigest() != signed.body_hex:
                raise RequestError(400, "body does not match its signed hash")
            await trio.to_thread.run_sync(writer.commit)
        finally:
            writer.close()
        await self._send_json(conn, stream, 200, {"offset": route.offset, "length": length})

    async def _read(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        peer: str,
        route: Route,
        range_header: str | None,
    ) -> None:
        state = self.store.readable(route.si, route.shnum)
        start, end = parse_range(range_header, state.size) if state.size else (0, 0)
        try:
            fd = os.open(state.data_path, os.O_RDONLY)
        except FileNotFoundError:
            raise RequestError(404, "no such share on this node") from None
        try:
            headers = [
                ("content-type", OCTETS_TYPE),
                ("content-length", str(end - start)),
                ("accept-ranges", "bytes"),
            ]
            status = 200
            if range_header is not None:
                status = 206
                headers.append(("content-range", f"bytes {start}-{end - 1}/{state.size}"))
            await send_event(conn, stream, h11.Response(status_code=status, headers=headers))
            buffer = bytearray(min(READ_CHUNK, end - start))
            view = memoryview(buffer)
            position = start
            while position < end:
                want = min(len(buffer), end - position)
                got = os.preadv(fd, [view[:want]], position)
                if got <= 0:
                    raise _CloseConnection("share file shorter than its recorded size")
                await self.send_limiter.consume(got, peer)
                await send_data(conn, stream, view[:got])
                position += got
            await send_event(conn, stream, h11.EndOfMessage())
        finally:
            os.close(fd)

    async def _proof(
        self, conn: h11.Connection, stream: trio.abc.Stream, peer: str, route: Route
    ) -> None:
        """An audit answer: stored bytes copied from the ranges `core.audit` names (no hashing
        here; the challenger checks everything against the file's cap)."""
        state = self.store.readable(route.si, route.shnum)
        try:
            body = await trio.to_thread.run_sync(
                read_proof, state.data_path, route.shnum, route.offset
            )
        except FileNotFoundError:
            raise RequestError(404, "no such share on this node") from None
        except AuditFailed as error:
            raise RequestError(422, str(error)) from None
        await self.send_limiter.consume(len(body), peer)
        await self._send_body(conn, stream, 200, body, OCTETS_TYPE)


def read_proof(path: os.PathLike[str], shnum: int, challenge: int) -> bytes:
    """The proof bytes of a stored share; AuditFailed when it is too damaged to find them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        layout, stored_shnum = layout_of_share(os.pread(fd, HEADER_SIZE, 0))
        if stored_shnum != shnum:
            raise AuditFailed(f"stored share says it is share {stored_shnum}")
        parts = []
        for offset, length in proof_ranges(layout, shnum, challenge):
            data = os.pread(fd, length, offset)
            if len(data) != length:
                raise AuditFailed("stored share is shorter than its header says")
            parts.append(data)
        return b"".join(parts)
    finally:
        os.close(fd)


def _lease_in_path(route: Route) -> int:
    lease = route.offset
    if not MIN_LEASE_SECONDS <= lease <= MAX_LEASE_SECONDS:
        raise RequestError(
            400, f"lease must be between {MIN_LEASE_SECONDS} and {MAX_LEASE_SECONDS} seconds"
        )
    return lease


def _peer_address(stream: trio.SSLStream[trio.SocketStream]) -> str:
    try:
        address = stream.transport_stream.socket.getpeername()
    except OSError:
        return "unknown"
    return str(address[0]) if isinstance(address, tuple) else str(address)
