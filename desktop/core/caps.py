"""Capability strings: a read cap (key + roots hash) and a verify cap (storage index + roots hash).

Format: `pc1r:` or `pc1v:` then base64url (no padding) of the payload and a 2-byte keyed check,
so a mistyped cap is rejected at parse time instead of failing later as "corrupt shares". The
storage index is a keyed hash of the key (Tahoe-style): a verify cap can be derived from a read
cap but not the other way round. The roots hash commits to parameters, sizes, every share's hash
tree root and the encrypted manifest, so caps are self-authenticating.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import blake3

from desktop.core.errors import CapError
from desktop.core.hashing import derive_key, purpose_key

KEY_SIZE = 32
ROOTS_HASH_SIZE = 32
STORAGE_INDEX_SIZE = 16
_CHECK_SIZE = 2
_CHECK_KEY = purpose_key("cap check")
READ_PREFIX = "pc1r:"
VERIFY_PREFIX = "pc1v:"
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_B32 = re.compile(r"[a-z2-7]{26}")


def storage_index_for_key(key: bytes) -> bytes:
    """Where a file's shares are stored: reveals nothing about the key."""
    return derive_key("storage index", key, STORAGE_INDEX_SIZE)


def _check(prefix: str, payload: bytes) -> bytes:
    return bytes(blake3.blake3(prefix.encode() + payload, key=_CHECK_KEY).digest(_CHECK_SIZE))


def _encode(prefix: str, payload: bytes) -> str:
    body = payload + _check(prefix, payload)
    return prefix + base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def _decode(prefix: str, text: str, payload_size: int, kind: str) -> bytes:
    body_text = text[len(prefix) :]
    if not _B64URL.fullmatch(body_text):
        raise CapError(f"{kind} contains characters outside base64url")
    try:
        body = base64.urlsafe_b64decode(body_text + "=" * (-len(body_text) % 4))
    except (binascii.Error, ValueError):
        raise CapError(f"{kind} is not valid base64url") from None
    if len(body) != payload_size + _CHECK_SIZE:
        raise CapError(f"{kind} has the wrong length (truncated or padded?)")
    if base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii") != body_text:
        raise CapError(f"{kind} is not in canonical form")
    payload, check = body[:payload_size], body[payload_size:]
    if check != _check(prefix, payload):
        raise CapError(f"{kind} fails its checksum (mistyped or truncated?)")
    return payload


@dataclass(frozen=True)
class VerifyCap:
    """Lets a node, checker or repairer check shares without being able to read them."""

    storage_index: bytes
    roots_hash: bytes

    def __post_init__(self) -> None:
        if len(self.storage_index) != STORAGE_INDEX_SIZE:
            raise CapError(f"storage index must be {STORAGE_INDEX_SIZE} bytes")
        if len(self.roots_hash) != ROOTS_HASH_SIZE:
            raise CapError(f"roots hash must be {ROOTS_HASH_SIZE} bytes")

    def to_string(self) -> str:
        return _encode(VERIFY_PREFIX, self.storage_index + self.roots_hash)

    def __str__(self) -> str:
        return self.to_string()


@dataclass(frozen=True)
class ReadCap:
    """Lets its holder fetch, check and decrypt one immutable file."""

    key: bytes
    roots_hash: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_SIZE:
            raise CapError(f"key must be {KEY_SIZE} bytes")
        if len(self.roots_hash) != ROOTS_HASH_SIZE:
            raise CapError(f"roots hash must be {ROOTS_HASH_SIZE} bytes")

    @property
    def storage_index(self) -> bytes:
        return storage_index_for_key(self.key)

    def verify_cap(self) -> VerifyCap:
        return VerifyCap(self.storage_index, self.roots_hash)

    def to_string(self) -> str:
        return _encode(READ_PREFIX, self.key + self.roots_hash)

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        # Keep the secret key out of logs and tracebacks.
        return f"ReadCap(storage_index={storage_index_to_str(self.storage_index)})"


def parse_cap(text: str) -> ReadCap | VerifyCap:
    """Parse a cap string; raises CapError with a one-line reason if it is malformed."""
    if not isinstance(text, str):
        raise CapError("capability must be a string")
    text = text.strip()
    if text.startswith(READ_PREFIX):
        payload = _decode(READ_PREFIX, text, KEY_SIZE + ROOTS_HASH_SIZE, "read cap")
        return ReadCap(payload[:KEY_SIZE], payload[KEY_SIZE:])
    if text.startswith(VERIFY_PREFIX):
        payload = _decode(VERIFY_PREFIX, text, STORAGE_INDEX_SIZE + ROOTS_HASH_SIZE, "verify cap")
        return VerifyCap(payload[:STORAGE_INDEX_SIZE], payload[STORAGE_INDEX_SIZE:])
    if re.match(r"pc\d+[a-z]:", text):
        raise CapError(f"unsupported capability version or kind: {text.split(':', 1)[0]!r}")
    raise CapError("not a PermaCloud capability (expected 'pc1r:...' or 'pc1v:...')")


def parse_read_cap(text: str) -> ReadCap:
    cap = parse_cap(text)
    if not isinstance(cap, ReadCap):
        raise CapError("a read cap is needed here, got a verify cap")
    return cap


def storage_index_to_str(storage_index: bytes) -> str:
    """Lowercase base32 without padding (26 chars): safe as a URL path segment and file name."""
    if len(storage_index) != STORAGE_INDEX_SIZE:
        raise CapError(f"storage index must be {STORAGE_INDEX_SIZE} bytes")
    return base64.b32encode(storage_index).rstrip(b"=").decode("ascii").lower()


def storage_index_from_str(text: str) -> bytes:
    if not isinstance(text, str) or not _B32.fullmatch(text):
        raise CapError("storage index must be 26 lowercase base32 characters")
    raw = base64.b32decode(text.upper() + "======")
    if storage_index_to_str(raw) != text:
        raise CapError("storage index is not in canonical form")
    return raw
