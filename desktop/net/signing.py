"""Request signing: the client proves who it is per request, since TLS cannot carry its identity.

Sans-I/O: building and checking headers are plain functions; the replay cache takes the clock as
an argument. The signature covers method, target (path + query), the BLAKE3 hash of the body,
time, a random nonce and the node it is meant for, so it cannot be replayed on another node,
another share, with another body or after the window.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass

import blake3

from desktop.net.identity import DeviceKey, verify_signature

DOMAIN = b"permacloud-request-v1"
H_KEY = "pc-key"
H_TIME = "pc-time"
H_NONCE = "pc-nonce"
H_BODY = "pc-body-blake3"
H_SIG = "pc-signature"
H_TARGET = "pc-target"
SIGNED_HEADERS = (H_KEY, H_TIME, H_NONCE, H_BODY, H_TARGET, H_SIG)
DEFAULT_WINDOW = 300.0
EMPTY_BODY_HASH = blake3.blake3(b"").hexdigest()


class SignatureError(Exception):
    """Why a signed request was rejected; `status` is 401 (authentication) or 403."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def body_hash(body: bytes | memoryview) -> str:
    return blake3.blake3(body).hexdigest()


def canonical_message(
    method: str, target: str, body_hex: str, timestamp: int, nonce: str, node_id: str
) -> bytes:
    return b"\n".join(
        [
            DOMAIN,
            method.upper().encode(),
            target.encode(),
            body_hex.encode(),
            str(timestamp).encode(),
            nonce.encode(),
            node_id.encode(),
        ]
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_request(
    key: DeviceKey, method: str, target: str, body_hex: str, node_id: str, now: float
) -> list[tuple[str, str]]:
    """Headers that authenticate one request to `node_id`."""
    timestamp = int(now)
    nonce = os.urandom(16).hex()
    message = canonical_message(method, target, body_hex, timestamp, nonce, node_id)
    return [
        (H_KEY, _b64(key.public_bytes)),
        (H_TIME, str(timestamp)),
        (H_NONCE, nonce),
        (H_BODY, body_hex),
        (H_TARGET, node_id),
        (H_SIG, _b64(key.sign(message))),
    ]


@dataclass(frozen=True)
class SignedRequest:
    """What a verified signature tells the node: who, and the body hash it must check."""

    public_key: bytes
    body_hex: str
    nonce: str
    timestamp: int


class ReplayCache:
    """Nonces seen within the time window; older ones cannot pass the time check anyway."""

    def __init__(self, window: float = DEFAULT_WINDOW, max_entries: int = 1_000_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self._seen: dict[str, float] = {}

    def check_and_add(self, nonce: str, now: float) -> bool:
        """False when `nonce` was already used; otherwise remember it."""
        if len(self._seen) >= self.max_entries or len(self._seen) % 1024 == 0:
            self._prune(now)
        if nonce in self._seen:
            return False
        self._seen[nonce] = now + 2 * self.window
        return True

    def _prune(self, now: float) -> None:
        self._seen = {n: t for n, t in self._seen.items() if t > now}


def verify_request(
    headers: Mapping[str, str],
    method: str,
    target: str,
    node_id: str,
    now: float,
    replay: ReplayCache,
) -> SignedRequest:
    """Check the signature headers of one request (not yet the body); raise SignatureError."""
    missing = [name for name in SIGNED_HEADERS if name not in headers]
    if missing:
        raise SignatureError(f"missing signature header(s): {', '.join(missing)}")
    try:
        public_key = _unb64(headers[H_KEY])
        signature = _unb64(headers[H_SIG])
        timestamp = int(headers[H_TIME])
    except (ValueError, binascii.Error):
        raise SignatureError("malformed signature headers") from None
    nonce = headers[H_NONCE]
    body_hex = headers[H_BODY].lower()
    if not (16 <= len(nonce) <= 64 and nonce.isalnum()):
        raise SignatureError("malformed nonce")
    if len(body_hex) != 64 or any(c not in "0123456789abcdef" for c in body_hex):
        raise SignatureError("malformed body hash")
    if headers[H_TARGET] != node_id:
        raise SignatureError(
            f"request was signed for node {headers[H_TARGET][:40]}, this is node {node_id}"
        )
    if abs(now - timestamp) > replay.window:
        raise SignatureError(f"request time is more than {int(replay.window)} s off the node clock")
    message = canonical_message(method, target, body_hex, timestamp, nonce, node_id)
    if not verify_signature(public_key, signature, message):
        raise SignatureError("bad request signature (wrong key, body, path or target node)")
    if not replay.check_and_add(nonce, now):
        raise SignatureError("replayed request (nonce already used)")
    return SignedRequest(public_key, body_hex, nonce, timestamp)
