"""The node protocol v1, sans-I/O: routes, limits, and parsing of what a peer sends.

Every path the node serves matches one strict pattern (lowercase base32 storage index, decimal
numbers, no percent escapes, no dots), so path tricks cannot name anything but a share. See
docs/protocol.md for the wire format.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from desktop.net.storage_index import storage_index_from_str, storage_index_to_str

PROTOCOL_VERSION = 1
MAX_HEADER_BYTES = 16 * 1024
MAX_WRITE_BODY = 8 * 1024 * 1024
MAX_CONTROL_BODY = 64 * 1024
MAX_RECORD_BODY = 1024 * 1024
MAX_SHARE_SIZE = 64 * 1024**3
MAX_SHNUM = 255
MAX_LEASE_SECONDS = 10 * 365 * 86400
MIN_LEASE_SECONDS = 1
JSON_TYPE = "application/json"
OCTETS_TYPE = "application/octet-stream"


class RequestError(Exception):
    """A request the node refuses; `status` and the message become the JSON error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Route:
    """What a request target names. `action` is one of the ACTIONS below."""

    action: str
    si: bytes = b""
    shnum: int = -1
    offset: int = -1
    name: str = ""  # record writer ID, or extension name


# action: (method, pattern)
_NUM = r"(0|[1-9][0-9]{0,11})"
_SI = r"([a-z2-7]{26})"
_OWNER = r"([a-z2-7]{52})"
_ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    ("info", "GET", re.compile(r"/v1/info")),
    ("list", "GET", re.compile(rf"/v1/shares/{_SI}")),
    ("create", "POST", re.compile(rf"/v1/shares/{_SI}/{_NUM}")),
    ("read", "GET", re.compile(rf"/v1/shares/{_SI}/{_NUM}")),
    ("delete", "DELETE", re.compile(rf"/v1/shares/{_SI}/{_NUM}")),
    ("write", "PUT", re.compile(rf"/v1/shares/{_SI}/{_NUM}/data/{_NUM}")),
    ("seal", "POST", re.compile(rf"/v1/shares/{_SI}/{_NUM}/seal")),
    ("lease", "POST", re.compile(rf"/v1/shares/{_SI}/{_NUM}/lease")),
    # create + write + seal in one request for shares up to MAX_WRITE_BODY; the last number
    # is the lease in seconds (in Route.offset).
    ("put", "PUT", re.compile(rf"/v1/shares/{_SI}/{_NUM}/sealed/{_NUM}")),
    # An audit answer (desktop.core.audit): the last number is the challenge (in Route.offset).
    ("proof", "GET", re.compile(rf"/v1/shares/{_SI}/{_NUM}/proof/{_NUM}")),
    # A leaving node hands a share over: created under the ORIGINAL owner's key (the last part,
    # base32 of the 32-byte Ed25519 key, in Route.name); the signer may write and seal it.
    ("handoff", "POST", re.compile(rf"/v1/shares/{_SI}/{_NUM}/handoff/{_OWNER}")),
]
_WRITER = r"([a-z2-7]{32})"
_SEQ = r"([1-9][0-9]{0,18})"
_NAMED_ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    ("records_list", "GET", re.compile(rf"/v1/records/{_WRITER}/after/(0|{_SEQ[1:-1]})")),
    ("records_put", "PUT", re.compile(rf"/v1/records/{_WRITER}/{_SEQ}")),
    ("records_prune", "DELETE", re.compile(rf"/v1/records/{_WRITER}/upto/{_SEQ}")),
    # Many records of one writer in one request (desktop.net.records_wire form).
    ("records_batch", "POST", re.compile(rf"/v1/records/{_WRITER}")),
    ("ext", "POST", re.compile(r"/v1/ext/([a-z][a-z0-9-]{0,31})")),
    # Many whole small shares in one request (see encode_batch); the number is the lease.
    ("batch_put", "PUT", re.compile(rf"/v1/batch/(sealed)/{_NUM}")),
]
SIGNED_ACTIONS = frozenset(
    {
        "create",
        "write",
        "seal",
        "lease",
        "delete",
        "put",
        "handoff",
        "batch_put",
        "records_put",
        "records_batch",
        "records_prune",
    }
)
MAX_RECORD_SEQ = (1 << 63) - 1


def parse_target(method: str, target: bytes) -> Route:
    """Map a request line to a Route, or raise RequestError (400/404/405)."""
    if len(target) > 1024:
        raise RequestError(414, "request target too long")
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise RequestError(400, "request target is not ASCII") from None
    if "?" in text or "%" in text or "#" in text:
        raise RequestError(400, "query strings and percent escapes are not used by this protocol")
    methods_seen: list[str] = []
    tables = ((_ROUTES, _share_route), (_NAMED_ROUTES, _named_route))
    for table, make_route in tables:
        for action, route_method, pattern in table:
            match = pattern.fullmatch(text)
            if match is None:
                continue
            if route_method != method:
                methods_seen.append(route_method)
                continue
            return make_route(action, match.groups())
    if methods_seen:
        raise RequestError(405, f"method {method} not allowed here")
    raise RequestError(404, "no such endpoint")


def _share_route(action: str, groups: tuple[str, ...]) -> Route:
    """Share paths: storage index, then share number, then an offset or lease."""
    si = b""
    if groups:
        try:
            si = storage_index_from_str(groups[0])
        except ValueError as error:
            raise RequestError(400, f"bad storage index: {error}") from None
    shnum = int(groups[1]) if len(groups) > 1 else -1
    if len(groups) > 1 and shnum > MAX_SHNUM:
        raise RequestError(400, f"share number must be 0..{MAX_SHNUM}")
    if action == "handoff":
        return Route(action, si, shnum, name=groups[2])
    offset = int(groups[2]) if len(groups) > 2 else -1
    return Route(action, si, shnum, offset)


def _named_route(action: str, groups: tuple[str, ...]) -> Route:
    """Record and extension paths: a name (writer ID, extension), then a record number."""
    number = int(groups[1]) if len(groups) > 1 else -1
    if number > MAX_RECORD_SEQ:
        raise RequestError(400, f"record number must be at most {MAX_RECORD_SEQ}")
    return Route(action, offset=number, name=groups[0])


_BATCH_ITEM = struct.Struct(">16sHI")  # storage index, share number, length
MAX_BATCH_ITEMS = 1024


def encode_batch(items: Sequence[tuple[bytes, int, bytes | memoryview]]) -> bytes:
    """Body of a batch put: for each share, its storage index, number, length, then bytes."""
    parts: list[bytes | memoryview] = []
    for si, shnum, data in items:
        parts.append(_BATCH_ITEM.pack(si, shnum, len(data)))
        parts.append(data)
    return b"".join(parts)


def batch_size(items: Sequence[tuple[bytes, int, bytes | memoryview]]) -> int:
    return sum(_BATCH_ITEM.size + len(data) for _, _, data in items)


def parse_batch(body: bytes) -> list[tuple[bytes, int, bytes]]:
    """The shares of a batch put body; RequestError(400) when it is malformed."""
    items: list[tuple[bytes, int, bytes]] = []
    position = 0
    while position < len(body):
        if len(body) - position < _BATCH_ITEM.size:
            raise RequestError(400, "batch body ends inside an item header")
        si, shnum, length = _BATCH_ITEM.unpack_from(body, position)
        position += _BATCH_ITEM.size
        if shnum > MAX_SHNUM:
            raise RequestError(400, f"share number must be 0..{MAX_SHNUM}")
        if length > len(body) - position:
            raise RequestError(400, "batch body ends inside an item")
        items.append((si, shnum, body[position : position + length]))
        position += length
        if len(items) > MAX_BATCH_ITEMS:
            raise RequestError(400, f"a batch carries at most {MAX_BATCH_ITEMS} shares")
    return items


def share_path(si: bytes, shnum: int | None = None, suffix: str = "") -> str:
    """Client side: the path of a storage index, share, or share sub-resource."""
    path = f"/v1/shares/{storage_index_to_str(si)}"
    if shnum is not None:
        path += f"/{shnum}"
    return path + suffix


def records_path(writer: str, seq: int | None = None, *, after: int | None = None) -> str:
    """Client side: the path of a record, or of a listing after a sequence number."""
    if after is not None:
        return f"/v1/records/{writer}/after/{after}"
    return f"/v1/records/{writer}/{seq}"


def parse_range(header: str | None, size: int) -> tuple[int, int]:
    """A single `bytes=` range as (start, end exclusive); the whole share when absent."""
    if header is None:
        return 0, size
    match = re.fullmatch(r"bytes=([0-9]{0,15})-([0-9]{0,15})", header.strip())
    if match is None or match.group(0) == "bytes=-":
        raise RequestError(416, "only one byte range of the form bytes=START-END is supported")
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise RequestError(416, "empty suffix range")
        return max(0, size - suffix), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise RequestError(416, f"range not satisfiable for a share of {size} bytes")
    return start, end


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "body is not valid JSON") from None
    if not isinstance(value, dict):
        raise RequestError(400, "body must be a JSON object")
    return value


def json_int(obj: dict[str, Any], name: str, low: int, high: int) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(400, f"'{name}' must be an integer")
    if not low <= value <= high:
        raise RequestError(400, f"'{name}' must be between {low} and {high}")
    return value


def parse_create(body: bytes) -> tuple[int, int]:
    obj = parse_json_object(body)
    size = json_int(obj, "size", 0, MAX_SHARE_SIZE)
    lease = json_int(obj, "lease_seconds", MIN_LEASE_SECONDS, MAX_LEASE_SECONDS)
    return size, lease


def parse_handoff(body: bytes) -> tuple[int, int]:
    """A handoff's (size, lease expiry as unix time): the share keeps its remaining lease."""
    obj = parse_json_object(body)
    size = json_int(obj, "size", 0, MAX_SHARE_SIZE)
    expires = json_int(obj, "lease_expires", 1, 10**12 - 1)
    return size, expires


def owner_to_str(public_key: bytes) -> str:
    """A share owner's Ed25519 public key as the handoff path names it (52 base32 chars)."""
    if len(public_key) != 32:
        raise ValueError("an owner key has 32 bytes")
    return base64.b32encode(public_key).rstrip(b"=").decode("ascii").lower()


def owner_from_str(text: str) -> bytes:
    try:
        raw = base64.b32decode(text.upper() + "====")
    except (ValueError, binascii.Error):
        raise RequestError(400, "bad owner key") from None
    if len(raw) != 32 or owner_to_str(raw) != text:
        raise RequestError(400, "bad owner key")
    return raw


def parse_lease(body: bytes) -> int:
    return json_int(parse_json_object(body), "seconds", MIN_LEASE_SECONDS, MAX_LEASE_SECONDS)


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
