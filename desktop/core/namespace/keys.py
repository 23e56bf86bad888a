"""Ed25519 key handling and the short ids derived from public keys."""

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ID_BYTES = 10  # 80 bits: collision-free among an account's devices, short enough to read
SHORT_ID_CHARS = 7  # used in conflict-copy names, like Syncthing's short device id

PrivateKeyLike = Ed25519PrivateKey | bytes


def private_key(key: PrivateKeyLike) -> Ed25519PrivateKey:
    if isinstance(key, Ed25519PrivateKey):
        return key
    return Ed25519PrivateKey.from_private_bytes(key)


def public_bytes(key: PrivateKeyLike | Ed25519PublicKey) -> bytes:
    pub = key if isinstance(key, Ed25519PublicKey) else private_key(key).public_key()
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key: bytes) -> str:
    """Lowercase base32 id of a public key: the device id or account id."""
    digest = hashlib.sha256(b"permacloud-key-id\x00" + public_key).digest()[:ID_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def short_id(device_id: str) -> str:
    return device_id[:SHORT_ID_CHARS].upper()
