"""Invite codes for adding a device to an account or a node to a household, and the exchange.

A code (`pc-` + Crockford base32 in dash-separated groups) carries: format version and kind, the
inviter's addresses (host:port), an 8-byte pin of its node id, an 8-byte one-time secret and a
16-bit checksum that catches typos. The inviter keeps an `InviteRecord` (expiry, used flag).

The exchange, PAKE-free (the lead runs it over sockets):
1. The joiner connects over TLS to an address in the code and checks that the node id behind the
   TLS key matches the pin (`InviteCode.pins`) BEFORE sending anything that depends on the secret:
   a man in the middle without the pinned key never sees a proof to brute-force offline.
2. Joiner -> inviter: `make_join_request`: invite id (derived from the secret, not the secret),
   its public key, a fresh nonce, an HMAC over the transcript keyed from the secret, and an
   Ed25519 signature over the transcript (it owns the key it asks to have certified).
   The transcript binds the invite, the inviter's node id, the joiner's key, the nonce and a
   channel binding (e.g. the inviter's TLS certificate bytes) that both sides know.
3. Inviter: `accept_join_request` checks expiry, single use, the HMAC (constant time) and the
   signature; `make_join_response` encrypts the account material with AES-256-GCM under another
   key derived from the secret, with the transcript as associated data. Only someone holding the
   secret can open it, so decrypting is also the joiner's proof that it talks to the inviter.
Guessing the 64-bit secret is only possible online against the inviter, which burns the invite
after a few failed attempts and on first use.
"""

import base64
import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass, replace
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from desktop.core.errors import PermaCloudError
from desktop.core.namespace import canonical

InviteKind = Literal["device", "node"]

CODE_PREFIX = "pc-"
CODE_VERSION = 1
GROUP = 5
PIN_BYTES = 8
SECRET_BYTES = 8
CHECKSUM_BYTES = 2
MAX_FAILED_ATTEMPTS = 5
MAX_ADDRESSES = 4
_KINDS: dict[str, int] = {"device": 0, "node": 1}
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford: no i, l, o, u
_DECODE = {c: i for i, c in enumerate(_ALPHABET)} | {"o": 0, "i": 1, "l": 1}


class InviteError(PermaCloudError):
    """Base of invite errors."""


class InviteInvalid(InviteError):
    """A code that does not parse (typo, garbage) or an exchange message that fails to verify."""


class InviteExpired(InviteError):
    pass


class InviteUsed(InviteError):
    pass


@dataclass(frozen=True, slots=True)
class InviteCode:
    """What the joiner learns from the typed code."""

    kind: InviteKind
    addresses: tuple[tuple[str, int], ...]
    node_pin: bytes
    secret: bytes

    @property
    def invite_id(self) -> bytes:
        return _derive(self.secret, b"invite-id", 16)

    def pins(self, node_id: str) -> bool:
        """True when `node_id` (of the peer behind the TLS key) is the inviter's."""
        return hmac.compare_digest(node_pin(node_id), self.node_pin)

    def to_code(self) -> str:
        payload = bytes([CODE_VERSION << 4 | _KINDS[self.kind]]) + self.node_pin + self.secret
        payload += b"".join(_encode_address(h, p) for h, p in self.addresses)
        text = _b32encode(payload + _checksum(payload))
        groups = [text[i : i + GROUP] for i in range(0, len(text), GROUP)]
        return CODE_PREFIX + "-".join(groups)


@dataclass(frozen=True, slots=True)
class InviteRecord:
    """What the inviter keeps until the invite is used or expires (persist with to_json)."""

    code: InviteCode
    node_id: str
    created_at: float
    expires_at: float
    used_at: float | None = None
    failed_attempts: int = 0

    @property
    def invite_id(self) -> bytes:
        return self.code.invite_id

    def to_json(self) -> bytes:
        return canonical.encode(
            {
                "code": self.code.to_code(),
                "node_id": self.node_id,
                "created_ms": round(self.created_at * 1000),
                "expires_ms": round(self.expires_at * 1000),
                "used_ms": None if self.used_at is None else round(self.used_at * 1000),
                "failed": self.failed_attempts,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> "InviteRecord":
        try:
            obj = canonical.decode(data)
            used = obj["used_ms"]
            return cls(
                parse_invite_code(obj["code"]),
                str(obj["node_id"]),
                obj["created_ms"] / 1000,
                obj["expires_ms"] / 1000,
                None if used is None else used / 1000,
                int(obj["failed"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InviteInvalid(f"corrupt invite record: {exc}") from None


class Invite:
    @staticmethod
    def create(
        addresses: list[str] | list[tuple[str, int]],
        inviter_node_id: str,
        kind: InviteKind,
        ttl_seconds: float,
        now: float,
        secret: bytes | None = None,
    ) -> tuple[str, InviteRecord]:
        """A fresh code to hand to the joiner, and the record the inviter keeps."""
        if kind not in _KINDS:
            raise InviteInvalid(f"invite kind must be 'device' or 'node', not {kind!r}")
        if ttl_seconds <= 0:
            raise InviteInvalid("invite lifetime must be positive")
        parsed = tuple(_parse_address(a) if isinstance(a, str) else a for a in addresses)
        if not parsed or len(parsed) > MAX_ADDRESSES:
            raise InviteInvalid(f"an invite needs 1 to {MAX_ADDRESSES} addresses")
        for host, port in parsed:
            _encode_address(host, port)  # validates
        secret = secret if secret is not None else os.urandom(SECRET_BYTES)
        if len(secret) != SECRET_BYTES:
            raise InviteInvalid(f"invite secret must be {SECRET_BYTES} bytes")
        code = InviteCode(kind, parsed, node_pin(inviter_node_id), secret)
        record = InviteRecord(code, inviter_node_id, now, now + ttl_seconds)
        return code.to_code(), record


def node_pin(node_id: str) -> bytes:
    return hashlib.sha256(b"permacloud-invite-pin\x00" + node_id.encode()).digest()[:PIN_BYTES]


# --- parsing ---------------------------------------------------------------------------------


def parse_invite_code(text: str) -> InviteCode:
    """Parse a typed code; raise InviteInvalid naming the problem (typos fail the checksum)."""
    if not isinstance(text, str):
        raise InviteInvalid("invite code must be text")
    cleaned = "".join(text.split()).lower()
    if cleaned.startswith(CODE_PREFIX):
        cleaned = cleaned[len(CODE_PREFIX) :]
    cleaned = cleaned.replace("-", "")
    if not cleaned:
        raise InviteInvalid("empty invite code")
    bad = sorted({c for c in cleaned if c not in _DECODE})
    if bad:
        raise InviteInvalid(f"invite code has invalid characters: {''.join(bad)!r}")
    raw = _b32decode(cleaned)
    minimum = 1 + PIN_BYTES + SECRET_BYTES + 7 + CHECKSUM_BYTES
    if raw is None or len(raw) < minimum:
        raise InviteInvalid("invite code has the wrong length: check for missing characters")
    payload, check = raw[:-CHECKSUM_BYTES], raw[-CHECKSUM_BYTES:]
    if not hmac.compare_digest(_checksum(payload), check):
        raise InviteInvalid("invite code checksum does not match: check for a typo")
    version, kind_bits = payload[0] >> 4, payload[0] & 0x0F
    if version != CODE_VERSION:
        raise InviteInvalid(f"invite code version {version} is not supported by this client")
    kinds = {v: k for k, v in _KINDS.items()}
    if kind_bits not in kinds:
        raise InviteInvalid("invite code has an unknown kind")
    pin = payload[1 : 1 + PIN_BYTES]
    secret = payload[1 + PIN_BYTES : 1 + PIN_BYTES + SECRET_BYTES]
    addresses = _decode_addresses(payload[1 + PIN_BYTES + SECRET_BYTES :])
    kind: InviteKind = "device" if kinds[kind_bits] == "device" else "node"
    return InviteCode(kind, addresses, pin, secret)


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(b"permacloud-invite-check\x00" + payload).digest()[:CHECKSUM_BYTES]


def _b32encode(data: bytes) -> str:
    bits = int.from_bytes(data, "big")
    nbits = len(data) * 8
    nchars = -(-nbits // 5)
    bits <<= nchars * 5 - nbits
    return "".join(_ALPHABET[(bits >> (5 * (nchars - 1 - i))) & 31] for i in range(nchars))


def _b32decode(text: str) -> bytes | None:
    nbits = len(text) * 5
    nbytes = nbits // 8
    pad = nbits - nbytes * 8
    if pad >= 5:
        return None  # a character too many or too few
    value = 0
    for c in text:
        value = value << 5 | _DECODE[c]
    if value & ((1 << pad) - 1):
        return None
    return (value >> pad).to_bytes(nbytes, "big")


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise InviteInvalid(f"address must be host:port, not {text!r}")
    return host.strip("[]"), int(port)


def _encode_address(host: str, port: int) -> bytes:
    if not 0 < port < 65536:
        raise InviteInvalid(f"port out of range: {port}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode("idna") if host.isascii() else b""
        if not 0 < len(raw) <= 253:
            raise InviteInvalid(f"bad host name {host!r}") from None
        return b"h" + bytes([len(raw)]) + raw + port.to_bytes(2, "big")
    tag = b"4" if ip.version == 4 else b"6"
    return tag + ip.packed + port.to_bytes(2, "big")


def _decode_addresses(data: bytes) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    i = 0
    while i < len(data):
        tag = data[i : i + 1]
        if tag in (b"4", b"6"):
            size = 4 if tag == b"4" else 16
            host = str(ipaddress.ip_address(data[i + 1 : i + 1 + size]))
            i += 1 + size
        elif tag == b"h" and i + 1 < len(data):
            size = data[i + 1]
            try:
                host = data[i + 2 : i + 2 + size].decode("ascii")
            except UnicodeDecodeError:
                raise InviteInvalid("invite code has a garbled host name") from None
            i += 2 + size
        else:
            raise InviteInvalid("invite code has a garbled address")
        if i + 2 > len(data):
            raise InviteInvalid("invite code has a truncated address")
        out.append((host, int.from_bytes(data[i : i + 2], "big")))
        i += 2
    if not out:
        raise InviteInvalid("invite code carries no address")
    return tuple(out)


# --- single use and expiry (pure) ------------------------------------------------------------


def check_usable(record: InviteRecord, now: float) -> None:
    if record.used_at is not None:
        raise InviteUsed("this invite code was already used")
    if record.failed_attempts >= MAX_FAILED_ATTEMPTS:
        raise InviteInvalid("this invite code was revoked after too many failed attempts")
    if now >= record.expires_at:
        raise InviteExpired("this invite code has expired: ask for a new one")


def mark_used(record: InviteRecord, now: float) -> InviteRecord:
    check_usable(record, now)
    return replace(record, used_at=now)


def record_failure(record: InviteRecord) -> InviteRecord:
    return replace(record, failed_attempts=record.failed_attempts + 1)


# --- the exchange ----------------------------------------------------------------------------


def _derive(secret: bytes, label: bytes, length: int) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=b"permacloud-invite-v1",
        info=label,
    )
    return hkdf.derive(secret)


def _transcript(
    invite_id: bytes, node_id: str, joiner_key: bytes, nonce: bytes, channel: bytes, name: str
) -> bytes:
    return b"permacloud-invite-transcript-v1\x00" + canonical.encode(
        {
            "invite": canonical.b64(invite_id),
            "inviter": node_id,
            "joiner_key": canonical.b64(joiner_key),
            "joiner_name": name,
            "nonce": canonical.b64(nonce),
            "channel": canonical.b64(channel),
        }
    )


@dataclass(frozen=True, slots=True)
class JoinState:
    """What the joiner keeps between request and response."""

    code: InviteCode
    transcript: bytes


@dataclass(frozen=True, slots=True)
class AcceptedJoin:
    """A verified join request: the inviter may certify `joiner_public_key`."""

    joiner_public_key: bytes
    joiner_name: str
    transcript: bytes


def make_join_request(
    code: InviteCode,
    inviter_node_id: str,
    joiner_key: Ed25519PrivateKey,
    joiner_name: str,
    channel_binding: bytes,
    nonce: bytes | None = None,
) -> tuple[bytes, JoinState]:
    """Joiner's first message; call only after the TLS peer's node id passed `code.pins`."""
    if not code.pins(inviter_node_id):
        raise InviteInvalid("the peer is not the node this invite was issued by")
    nonce = nonce if nonce is not None else os.urandom(16)
    joiner_pub = joiner_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    transcript = _transcript(
        code.invite_id, inviter_node_id, joiner_pub, nonce, channel_binding, joiner_name
    )
    proof = hmac.new(_derive(code.secret, b"join-proof", 32), transcript, "sha256").digest()
    message = canonical.encode(
        {
            "v": 1,
            "invite": canonical.b64(code.invite_id),
            "joiner_key": canonical.b64(joiner_pub),
            "joiner_name": joiner_name,
            "nonce": canonical.b64(nonce),
            "proof": canonical.b64(proof),
            "sig": canonical.b64(joiner_key.sign(transcript)),
        }
    )
    return message, JoinState(code, transcript)


def accept_join_request(
    record: InviteRecord, message: bytes, channel_binding: bytes, now: float
) -> AcceptedJoin:
    """Inviter: verify a join request against its record. On InviteInvalid, count the failure
    (`record_failure`); on success, persist `mark_used` before sending the response."""
    check_usable(record, now)
    fields = {"v", "invite", "joiner_key", "joiner_name", "nonce", "proof", "sig"}
    obj = _parse_message(message, fields)
    if not hmac.compare_digest(_b(obj, "invite"), record.invite_id):
        raise InviteInvalid("join request is for another invite")
    joiner_pub = _b(obj, "joiner_key")
    name = obj["joiner_name"]
    if not isinstance(name, str) or len(name) > 200:
        raise InviteInvalid("join request has a bad device name")
    transcript = _transcript(
        record.invite_id, record.node_id, joiner_pub, _b(obj, "nonce"), channel_binding, name
    )
    expected = hmac.new(
        _derive(record.code.secret, b"join-proof", 32), transcript, "sha256"
    ).digest()
    if not hmac.compare_digest(expected, _b(obj, "proof")):
        raise InviteInvalid("join request does not prove knowledge of the invite secret")
    try:
        Ed25519PublicKey.from_public_bytes(joiner_pub).verify(_b(obj, "sig"), transcript)
    except (InvalidSignature, ValueError):
        raise InviteInvalid("join request signature does not match the joiner's key") from None
    return AcceptedJoin(joiner_pub, name, transcript)


def make_join_response(
    record: InviteRecord, accepted: AcceptedJoin, payload: bytes, nonce: bytes | None = None
) -> bytes:
    """Inviter: the account material (opaque bytes), encrypted to whoever holds the secret."""
    nonce = nonce if nonce is not None else os.urandom(12)
    aead = AESGCM(_derive(record.code.secret, b"response-key", 32))
    sealed = aead.encrypt(nonce, payload, accepted.transcript)
    return canonical.encode(
        {"v": 1, "nonce": canonical.b64(nonce), "sealed": canonical.b64(sealed)}
    )


def open_join_response(state: JoinState, message: bytes) -> bytes:
    """Joiner: decrypt the account material; fails unless the peer knew the secret."""
    obj = _parse_message(message, {"v", "nonce", "sealed"})
    aead = AESGCM(_derive(state.code.secret, b"response-key", 32))
    try:
        return aead.decrypt(_b(obj, "nonce"), _b(obj, "sealed"), state.transcript)
    except (InvalidTag, ValueError):
        raise InviteInvalid("join response does not verify: wrong invite or tampered") from None


def _parse_message(message: bytes, keys: set[str]) -> dict[str, Any]:
    try:
        obj = canonical.decode(message)
    except ValueError as exc:
        raise InviteInvalid(f"malformed invite message: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != keys or obj.get("v") != 1:
        raise InviteInvalid("malformed invite message: unexpected fields or version")
    return obj


def _b(obj: dict[str, Any], name: str) -> bytes:
    try:
        return canonical.unb64(obj[name])
    except (ValueError, TypeError):
        raise InviteInvalid(f"malformed invite message: bad field {name!r}") from None


def code_fingerprint(code: str) -> str:
    """Short non-secret tag for logs (never log the code itself)."""
    digest = hashlib.sha256(code.encode()).digest()[:4]
    return base64.b32encode(digest).decode().rstrip("=").lower()
