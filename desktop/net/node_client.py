"""Client for one storage node: pinned TLS, signed requests, a small keep-alive connection pool.

The multi-node engine builds on this; every failure surfaces as a `NodeError` subclass so the
engine can decide between retrying, placing elsewhere, or distrusting the node.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import h11
import trio

from desktop.net.errors import (
    NodeRefused,
    NodeUnavailable,
    ProtocolError,
    WrongNodeIdentity,
    refused_error,
)
from desktop.net.h11io import next_event, send_data, send_event
from desktop.net.identity import DeviceKey, IdentityError, node_id_from_certificate
from desktop.net.protocol import (
    JSON_TYPE,
    MAX_HEADER_BYTES,
    MAX_WRITE_BODY,
    OCTETS_TYPE,
    batch_size,
    encode_batch,
    owner_to_str,
    records_path,
    share_path,
)
from desktop.net.ratelimit import NO_LIMIT, RateLimiter
from desktop.net.records_wire import (
    Record,
    RecordWireError,
    batch_results,
    decode_records,
    encode_records,
)
from desktop.net.signing import body_hash, sign_request
from desktop.net.tls import client_context
from desktop.net.tls_stream import ClientTLSStream

logger = logging.getLogger(__name__)

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError)
_SHARED_CONTEXT: ssl.SSLContext | None = None
_COALESCE_BODY = 64 * 1024


def _context() -> ssl.SSLContext:
    global _SHARED_CONTEXT
    if _SHARED_CONTEXT is None:
        _SHARED_CONTEXT = client_context()
    return _SHARED_CONTEXT


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    version: str
    protocol: int
    quota: int
    used: int
    free: int
    max_write: int


@dataclass(frozen=True)
class CreateResult:
    """`already_written` lists [start, end) ranges the node holds, so an upload can resume."""

    created: bool
    sealed: bool
    size: int
    already_written: list[tuple[int, int]]
    lease_expires: float

    def missing(self) -> list[tuple[int, int]]:
        """The [start, end) ranges still to write."""
        out: list[tuple[int, int]] = []
        position = 0
        for start, end in sorted(self.already_written):
            if start > position:
                out.append((position, start))
            position = max(position, end)
        if position < self.size:
            out.append((position, self.size))
        return out


@dataclass(frozen=True)
class ShareInfo:
    shnum: int
    size: int
    sealed: bool
    lease_expires: float


@dataclass(frozen=True)
class Timeouts:
    connect: float = 10.0
    request: float = 120.0


class _Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError(f"node sent a malformed JSON body (status {self.status})") from None


class _Connection:
    def __init__(self, stream: ClientTLSStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.used = False

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class NodeClient:
    """Talks to one node, pinned to `node_id`. Safe for concurrent use from many tasks."""

    def __init__(
        self,
        node_id: str,
        address: tuple[str, int],
        client_key: DeviceKey,
        *,
        max_connections: int = 4,
        timeouts: Timeouts | None = None,
        send_limiter: RateLimiter = NO_LIMIT,
        receive_limiter: RateLimiter = NO_LIMIT,
        accept: Callable[[str], bool] | None = None,
    ) -> None:
        """`accept`: instead of an exact node ID, a pin test (invite codes carry a short pin);
        after the first connection `node_id` is the ID the peer proved."""
        self.node_id = node_id
        self.accept = accept
        self.peer_certificate = b""
        self.address = address
        self.key = client_key
        self.timeouts = timeouts or Timeouts()
        self.send_limiter = send_limiter
        self.receive_limiter = receive_limiter
        self._slots = trio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"NodeClient({self.node_id[:8]}@{self.address[0]}:{self.address[1]})"

    # ---- public API ----------------------------------------------------------------------

    async def info(self) -> NodeInfo:
        obj = (await self._request("GET", "/v1/info")).json()
        try:
            return NodeInfo(
                node_id=str(obj["node_id"]),
                version=str(obj["version"]),
                protocol=int(obj["protocol"]),
                quota=int(obj["quota"]),
                used=int(obj["used"]),
                free=int(obj["free"]),
                max_write=int(obj["max_write"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("node sent an incomplete info response") from None

    async def create_share(
        self, si: bytes, shnum: int, size: int, lease_seconds: int
    ) -> CreateResult:
        body = json.dumps({"size": size, "lease_seconds": lease_seconds}).encode()
        obj = (await self._request("POST", share_path(si, shnum), body, signed=True)).json()
        return _create_result(obj)

    async def write(self, si: bytes, shnum: int, offset: int, data: bytes | memoryview) -> None:
        """Write `data` at `offset`, split into requests of at most 8 MiB."""
        view = memoryview(data)
        position = 0
        while True:
            piece = view[position : position + MAX_WRITE_BODY]
            path = share_path(si, shnum, f"/data/{offset + position}")
            await self._request("PUT", path, piece, signed=True, content_type=OCTETS_TYPE)
            position += len(piece)
            if position >= len(view):
                return

    async def put_sealed(
        self, si: bytes, shnum: int, data: bytes | memoryview, lease_seconds: int
    ) -> None:
        """Create, write and seal a whole share (at most `MAX_WRITE_BODY` bytes) in one request.
        Idempotent for the same bytes; QuotaExceeded when the node has no room."""
        if len(data) > MAX_WRITE_BODY:
            raise ValueError(f"put_sealed carries at most {MAX_WRITE_BODY} bytes")
        path = share_path(si, shnum, f"/sealed/{lease_seconds}")
        await self._request("PUT", path, data, signed=True, content_type=OCTETS_TYPE)

    async def put_sealed_many(
        self, items: Sequence[tuple[bytes, int, bytes | memoryview]], lease_seconds: int
    ) -> list[NodeRefused | None]:
        """Several whole shares (si, shnum, data) in one request (at most `MAX_WRITE_BODY`
        bytes in all): None for each stored, or the refusal (QuotaExceeded...) for that share."""
        if batch_size(items) > MAX_WRITE_BODY:
            raise ValueError(f"a batch carries at most {MAX_WRITE_BODY} bytes")
        body = encode_batch(items)
        response = await self._request(
            "PUT", f"/v1/batch/sealed/{lease_seconds}", body, signed=True, content_type=OCTETS_TYPE
        )
        try:
            results = response.json()["results"]
            out: list[NodeRefused | None] = [
                None
                if int(r["status"]) in (200, 201)
                else refused_error(int(r["status"]), str(r["error"]))
                for r in results
            ]
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("node sent an incomplete batch response") from None
        if len(out) != len(items):
            raise ProtocolError("node answered a batch with the wrong number of results")
        return out

    async def seal(self, si: bytes, shnum: int) -> str | None:
        """Seal a fully written share; for a handoff, the BLAKE3 of the node's copy."""
        response = await self._request("POST", share_path(si, shnum, "/seal"), b"", signed=True)
        obj = response.json()
        digest = obj.get("blake3") if isinstance(obj, dict) else None
        return digest if isinstance(digest, str) else None

    async def create_handoff(
        self, si: bytes, shnum: int, owner: bytes, size: int, lease_expires: float
    ) -> CreateResult:
        """Hand a share over (a leaving node): created under `owner`, keeping its lease expiry;
        then `write` and `seal` it with this client's key. Resumable like a create."""
        body = json.dumps({"size": size, "lease_expires": int(lease_expires)}).encode()
        path = share_path(si, shnum, f"/handoff/{owner_to_str(owner)}")
        obj = (await self._request("POST", path, body, signed=True)).json()
        return _create_result(obj)

    async def read(
        self, si: bytes, shnum: int, offset: int = 0, length: int | None = None
    ) -> bytes:
        """Bytes [offset, offset+length) of a sealed share (to its end when length is None)."""
        if length == 0:
            return b""
        last = "" if length is None else str(offset + length - 1)
        response = await self._request(
            "GET", share_path(si, shnum), extra_headers=[("range", f"bytes={offset}-{last}")]
        )
        return response.body

    async def proof(self, si: bytes, shnum: int, challenge: int) -> bytes:
        """The node's audit answer for one share (checked by `core.audit.verify_answer`)."""
        response = await self._request("GET", share_path(si, shnum, f"/proof/{challenge}"))
        return response.body

    async def list_shares(self, si: bytes) -> list[ShareInfo]:
        obj = (await self._request("GET", share_path(si))).json()
        try:
            return [
                ShareInfo(int(s["shnum"]), int(s["size"]), bool(s["sealed"]), s["lease_expires"])
                for s in obj["shares"]
            ]
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("node sent an incomplete share list") from None

    async def renew_lease(self, si: bytes, shnum: int, seconds: int) -> float:
        """Extend the lease to at least now + seconds; returns the new expiry (unix time)."""
        body = json.dumps({"seconds": seconds}).encode()
        obj = (
            await self._request("POST", share_path(si, shnum, "/lease"), body, signed=True)
        ).json()
        return float(obj["lease_expires"])

    async def delete(self, si: bytes, shnum: int) -> None:
        await self._request("DELETE", share_path(si, shnum), b"", signed=True)

    async def put_record(self, signer: DeviceKey, seq: int, data: bytes) -> bool:
        """Append a record to the log of `signer`'s key; True if it was new on this node."""
        path = records_path(signer.node_id, seq)
        response = await self._request(
            "PUT", path, data, signed=True, content_type=OCTETS_TYPE, signer=signer
        )
        return bool(response.json().get("created"))

    async def put_records(self, signer: DeviceKey, records: list[Record]) -> list[tuple[int, str]]:
        """Append many records to `signer`'s log in one request (and one fsync on the node);
        per record (status, error): 201 new, 200 already there, 409 other data, ..."""
        path = f"/v1/records/{signer.node_id}"
        response = await self._request(
            "POST",
            path,
            encode_records(records),
            signed=True,
            content_type=OCTETS_TYPE,
            signer=signer,
        )
        try:
            return batch_results(response.json(), len(records))
        except RecordWireError as error:
            raise ProtocolError(f"node {self.node_id}: {error}") from None

    async def list_records(self, writer: str, after: int = 0) -> list[Record]:
        """Records of `writer` with seq > after (one page; ask again after the last one)."""
        response = await self._request("GET", records_path(writer, after=after))
        try:
            return decode_records(response.body)
        except RecordWireError as error:
            raise ProtocolError(f"node {self.node_id}: {error}") from None

    async def prune_records(self, signer: DeviceKey, up_to: int) -> int:
        """Drop the signer's records up to `up_to` (covered by a snapshot); returns how many."""
        path = f"/v1/records/{signer.node_id}/upto/{up_to}"
        response = await self._request("DELETE", path, b"", signed=True, signer=signer)
        return int(response.json().get("removed", 0))

    async def call_extension(self, name: str, body: bytes) -> Any:
        """POST to a daemon extension endpoint (e.g. invite joins); returns its JSON reply."""
        return (await self._request("POST", f"/v1/ext/{name}", body)).json()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- plumbing ------------------------------------------------------------------------

    async def _connect(self) -> _Connection:
        host, port = self.address
        try:
            with trio.fail_after(self.timeouts.connect):
                tcp = await trio.open_tcp_stream(host, port)
                stream = ClientTLSStream(tcp, _context())
                try:
                    await stream.do_handshake()
                    got = _peer_node_id(stream)
                except BaseException:
                    await trio.aclose_forcefully(stream)
                    raise
        except trio.TooSlowError:
            raise NodeUnavailable(
                f"node {self.node_id} at {host}:{port}: connect timed out"
            ) from None
        except IdentityError as error:
            raise WrongNodeIdentity(self.node_id, f"(invalid: {error})") from None
        except _STREAM_ERRORS as error:
            raise NodeUnavailable(
                f"node {self.node_id} at {host}:{port}: {_describe(error)}"
            ) from None
        if self.accept is not None and self.accept(got):
            self.node_id, self.accept = got, None
        if got != self.node_id:
            await trio.aclose_forcefully(stream)
            raise WrongNodeIdentity(self.node_id, got)
        self.peer_certificate = stream.getpeercert(binary_form=True) or b""
        return _Connection(stream)

    async def _request(
        self,
        method: str,
        path: str,
        body: bytes | memoryview = b"",
        *,
        signed: bool = False,
        content_type: str = JSON_TYPE,
        extra_headers: list[tuple[str, str]] | None = None,
        signer: DeviceKey | None = None,
    ) -> _Response:
        if self._closed:
            raise NodeUnavailable(f"client for node {self.node_id} is closed")
        body_hex = body_hash(body) if signed else ""
        async with self._slots:
            for attempt in range(2):
                conn = self._idle.pop() if self._idle else await self._connect()
                reused = conn.used
                headers = [
                    ("host", f"{self.address[0]}:{self.address[1]}"),
                    ("content-length", str(len(body))),
                    *(extra_headers or []),
                ]
                if body:
                    headers.append(("content-type", content_type))
                if signed:  # fresh nonce per attempt: a retry is not a replay
                    headers += sign_request(
                        signer or self.key, method, path, body_hex, self.node_id, time.time()
                    )
                try:
                    with trio.fail_after(self.timeouts.request):
                        response = await self._exchange(conn, method, path, headers, body)
                except trio.TooSlowError:
                    await conn.aclose()
                    raise NodeUnavailable(f"node {self.node_id}: request timed out") from None
                except _RetryableClose as error:
                    await conn.aclose()
                    if reused and not error.received_any and attempt == 0:
                        continue  # the node closed an idle keep-alive connection
                    raise NodeUnavailable(f"node {self.node_id}: {error}") from None
                except h11.ProtocolError as error:
                    await conn.aclose()
                    raise ProtocolError(f"node {self.node_id}: bad HTTP: {error}") from None
                conn.used = True
                if (
                    conn.h11.our_state is h11.DONE
                    and conn.h11.their_state is h11.DONE
                    and not self._closed
                ):
                    conn.h11.start_next_cycle()
                    self._idle.append(conn)
                else:
                    await conn.aclose()
                if response.status >= 400:
                    raise refused_error(response.status, _reason(response))
                return response
        raise NodeUnavailable(f"node {self.node_id}: connection lost")  # pragma: no cover

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes | memoryview,
    ) -> _Response:
        stream = conn.stream
        received_any = False
        peer = self.node_id
        try:
            request = h11.Request(method=method, target=path, headers=headers)
            if body:
                await self.send_limiter.consume(len(body), peer)
            if len(body) <= _COALESCE_BODY:
                # One TLS record and one syscall for the whole request: small requests are
                # bound by per-send costs, not bytes.
                parts_out = [conn.h11.send(request) or b""]
                if body:
                    parts_out.append(conn.h11.send(h11.Data(data=body)) or b"")  # type: ignore[arg-type]
                parts_out.append(conn.h11.send(h11.EndOfMessage()) or b"")
                await stream.send_all(b"".join(parts_out))
            else:
                await send_event(conn.h11, stream, request)
                await send_data(conn.h11, stream, body)
                await send_event(conn.h11, stream, h11.EndOfMessage())
            event = await next_event(conn.h11, stream)
            received_any = True
            if isinstance(event, h11.ConnectionClosed):
                raise _RetryableClose("node closed the connection", received_any=False)
            if not isinstance(event, h11.Response):
                raise ProtocolError(f"node {self.node_id}: unexpected {type(event).__name__}")
            response_headers = {
                name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers
            }
            parts: list[bytes] = []
            while True:
                data_event = await next_event(conn.h11, stream)
                if isinstance(data_event, h11.EndOfMessage):
                    break
                if not isinstance(data_event, h11.Data):
                    raise _RetryableClose("connection ended inside a response", received_any=True)
                await self.receive_limiter.consume(len(data_event.data), peer)
                parts.append(data_event.data)
        except h11.RemoteProtocolError:
            if conn.h11.their_state is h11.ERROR and _saw_eof(conn.h11):
                raise _RetryableClose(
                    "node closed the connection", received_any=received_any
                ) from None
            raise
        except _STREAM_ERRORS as error:
            raise _RetryableClose(_describe(error), received_any=received_any) from None
        body_out = parts[0] if len(parts) == 1 else b"".join(parts)
        return _Response(event.status_code, response_headers, body_out)


def _peer_node_id(stream: ClientTLSStream) -> str:
    """The node ID proved by the peer's certificate (the handshake must be done)."""
    der = stream.getpeercert()
    if not der:
        return "(no certificate)"
    return node_id_from_certificate(der)


def _create_result(obj: Any) -> CreateResult:
    try:
        return CreateResult(
            created=bool(obj["created"]),
            sealed=bool(obj["sealed"]),
            size=int(obj["size"]),
            already_written=[(int(a), int(b)) for a, b in obj["already_written"]],
            lease_expires=float(obj["lease_expires"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ProtocolError("node sent an incomplete create response") from None


def _saw_eof(conn: h11.Connection) -> bool:
    """True when h11 failed because the peer closed the stream (not because of bad bytes)."""
    return bool(conn.trailing_data[1])


class _RetryableClose(Exception):
    def __init__(self, message: str, *, received_any: bool) -> None:
        super().__init__(message)
        self.received_any = received_any


def _reason(response: _Response) -> str:
    try:
        obj = json.loads(response.body)
        if isinstance(obj, dict) and isinstance(obj.get("error"), str):
            return str(obj["error"])[:500]
    except (ValueError, UnicodeDecodeError):
        pass
    return f"HTTP {response.status}"


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
