"""Signed LAN announcements of a household's nodes (sans-I/O: no sockets, no clock, no disk).

An announcement says "node X, whose public key is P, serves at these addresses", signed by P, with
a timestamp (so an old one cannot be replayed for long) and a household tag. The tag is a keyed
hash (key derived from the account secret) of the account ID, the node ID and the timestamp: a
device of the account recognises its household at once, while strangers on the LAN can neither
tell which account it is nor group the nodes of one household by tag.

A valid signature only proves that the holder of P speaks; whether P is *ours* is the pinned
identity rule: P must be the key of a device certified by the account, or its node ID must be
already known (pinned) in the index. Anything else is ignored.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import blake3

from desktop.core.errors import PermaCloudError
from desktop.net.identity import (
    PUBLIC_KEY_BYTES,
    DeviceKey,
    is_valid_node_id,
    node_id_from_public_key,
    verify_signature,
)
from desktop.net.nodes_file import parse_address

VERSION = "1"
MAX_AGE = 600.0  # seconds an announcement stays acceptable
MAX_SKEW = 120.0  # how far in the future a sender's clock may be
MAX_ADDRESSES = 8
TAG_BYTES = 16
_TAG_CONTEXT = "permacloud 2026 lan discovery tag v1"
_SIGNED_PREFIX = b"permacloud-lan-announce-v1"

# Short reasons, stable enough for logs and tests.
MALFORMED = "malformed"
BAD_SIGNATURE = "bad signature"
ID_MISMATCH = "node ID does not match its key"
STALE = "stale"
FUTURE = "timestamp in the future"
OTHER_HOUSEHOLD = "other household"
UNKNOWN_KEY = "unknown key"


class AnnouncementRejected(PermaCloudError):
    """An announcement that must be ignored; `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Announcement:
    node_id: str
    public_key: bytes
    addresses: tuple[str, ...]  # HOST:PORT, as parse_address reads them
    timestamp: int  # unix seconds
    tag: bytes
    signature: bytes

    def signed_bytes(self) -> bytes:
        return _signed_bytes(
            self.node_id, self.public_key, self.addresses, self.timestamp, self.tag
        )


@dataclass(frozen=True)
class Household:
    """What a device knows to judge an announcement: its account and whom it already trusts."""

    account_id: str
    tag_key: bytes
    device_keys: frozenset[bytes]  # public keys of the account's certified devices
    pinned: frozenset[str]  # node IDs already known to this device


def tag_key(account_secret: bytes) -> bytes:
    """The household tag key: only devices holding the account secret can compute tags."""
    return blake3.blake3(account_secret, derive_key_context=_TAG_CONTEXT).digest()


def household_tag(key: bytes, account_id: str, node_id: str, timestamp: int) -> bytes:
    message = f"{account_id}\0{node_id}\0{timestamp}".encode()
    return blake3.blake3(message, key=key).digest(length=TAG_BYTES)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _signed_bytes(
    node_id: str, public_key: bytes, addresses: Iterable[str], timestamp: int, tag: bytes
) -> bytes:
    parts = (
        node_id.encode(),
        public_key,
        "\n".join(addresses).encode(),
        str(timestamp).encode(),
        tag,
    )
    return _SIGNED_PREFIX + b"".join(_field(p) for p in parts)


def _check_address(text: str) -> str:
    """Only literal IPs: a host name would make the receiver resolve names a stranger chose."""
    host, port = parse_address(text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise AnnouncementRejected(MALFORMED, f"address {text!r} is not an IP:PORT") from None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def make_announcement(
    signer: DeviceKey, addresses: Iterable[str], key: bytes, account_id: str, now: float
) -> Announcement:
    checked = tuple(_check_address(a) for a in addresses)
    if not 1 <= len(checked) <= MAX_ADDRESSES:
        raise AnnouncementRejected(MALFORMED, f"1 to {MAX_ADDRESSES} addresses are needed")
    timestamp = int(now)
    tag = household_tag(key, account_id, signer.node_id, timestamp)
    body = _signed_bytes(signer.node_id, signer.public_bytes, checked, timestamp, tag)
    return Announcement(
        signer.node_id, signer.public_bytes, checked, timestamp, tag, signer.sign(body)
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str, name: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise AnnouncementRejected(MALFORMED, f"'{name}' is not base64") from None


def to_properties(announcement: Announcement) -> dict[str, str]:
    """zeroconf TXT properties; every value stays far below the 255-byte TXT string limit."""
    props = {
        "v": VERSION,
        "id": announcement.node_id,
        "pk": _b64(announcement.public_key),
        "t": str(announcement.timestamp),
        "h": _b64(announcement.tag),
        "s": _b64(announcement.signature),
    }
    for number, address in enumerate(announcement.addresses):
        props[f"a{number}"] = address
    return props


def from_properties(
    props: Mapping[bytes, bytes | None] | Mapping[str, str | None],
) -> Announcement:
    """Parse TXT properties (as zeroconf hands them: bytes keys and values) or reject."""
    text: dict[str, str] = {}
    for key, value in props.items():
        if value is None:
            continue
        try:
            name = key.decode("ascii") if isinstance(key, bytes) else key
            text[name] = value.decode("ascii") if isinstance(value, bytes) else value
        except UnicodeDecodeError:
            raise AnnouncementRejected(MALFORMED, "non-ASCII property") from None
    if text.get("v") != VERSION:
        raise AnnouncementRejected(MALFORMED, f"unknown version {text.get('v')!r}")
    missing = [name for name in ("id", "pk", "t", "h", "s") if name not in text]
    if missing:
        raise AnnouncementRejected(MALFORMED, f"missing {', '.join(missing)}")
    node_id = text["id"]
    if not is_valid_node_id(node_id):
        raise AnnouncementRejected(MALFORMED, "bad node ID")
    public_key = _unb64(text["pk"], "pk")
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise AnnouncementRejected(MALFORMED, "bad public key length")
    if not text["t"].isdigit():
        raise AnnouncementRejected(MALFORMED, "bad timestamp")
    addresses: list[str] = []
    for number in range(MAX_ADDRESSES):
        address = text.get(f"a{number}")
        if address is None:
            break
        try:
            addresses.append(_check_address(address))
        except PermaCloudError as error:
            raise AnnouncementRejected(MALFORMED, str(error)) from None
    if not addresses:
        raise AnnouncementRejected(MALFORMED, "no address")
    return Announcement(
        node_id,
        public_key,
        tuple(addresses),
        int(text["t"]),
        _unb64(text["h"], "h"),
        _unb64(text["s"], "s"),
    )


def check_announcement(announcement: Announcement, household: Household, now: float) -> None:
    """Raise AnnouncementRejected unless the announcement is authentic, fresh, ours and pinned.

    Order matters for what we learn: cheap self-consistency first, the signature before any
    trust decision, the pin last (the only check a well-formed stranger fails).
    """
    if node_id_from_public_key(announcement.public_key) != announcement.node_id:
        raise AnnouncementRejected(ID_MISMATCH, announcement.node_id)
    if not verify_signature(
        announcement.public_key, announcement.signature, announcement.signed_bytes()
    ):
        raise AnnouncementRejected(BAD_SIGNATURE, announcement.node_id)
    age = now - announcement.timestamp
    if age > MAX_AGE:
        raise AnnouncementRejected(STALE, f"{int(age)} s old")
    if age < -MAX_SKEW:
        raise AnnouncementRejected(FUTURE, f"{int(-age)} s ahead")
    expected = household_tag(
        household.tag_key, household.account_id, announcement.node_id, announcement.timestamp
    )
    if expected != announcement.tag:
        raise AnnouncementRejected(OTHER_HOUSEHOLD, announcement.node_id)
    if (
        announcement.public_key not in household.device_keys
        and announcement.node_id not in household.pinned
    ):
        raise AnnouncementRejected(UNKNOWN_KEY, announcement.node_id)
