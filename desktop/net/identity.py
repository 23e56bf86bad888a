"""Device identity: an Ed25519 key, the node ID derived from it, the TLS certificate bound to it.

The node ID is the pin: a client that knows it accepts only a TLS peer whose certificate carries
the matching public key, so no certificate authority is involved.
"""

from __future__ import annotations

import base64
import datetime
import os
import re
from pathlib import Path

import blake3
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import NameOID

from desktop.core.errors import PermaCloudError

NODE_ID_BYTES = 20
NODE_ID_LENGTH = 32  # base32 of 20 bytes, no padding
PUBLIC_KEY_BYTES = 32
_NODE_ID_RE = re.compile(f"[a-z2-7]{{{NODE_ID_LENGTH}}}")


class IdentityError(PermaCloudError):
    """A key file or certificate cannot be used."""


def node_id_from_public_key(public_key: bytes) -> str:
    """Short URL-safe ID: lowercase base32 of a 160-bit BLAKE3 digest of the raw public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise IdentityError(f"an Ed25519 public key has 32 bytes, got {len(public_key)}")
    digest = blake3.blake3(b"permacloud-node-id-v1:" + public_key).digest(length=NODE_ID_BYTES)
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def is_valid_node_id(text: str) -> bool:
    return _NODE_ID_RE.fullmatch(text) is not None


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `data` by `public_key`."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except InvalidSignature:
        return False
    return True


class DeviceKey:
    """An Ed25519 signing key of one device (node and client use the same key)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_bytes: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.node_id: str = node_id_from_public_key(self.public_bytes)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> DeviceKey:
        """Load the PEM key at `path`, or create it with mode 0600 (atomically) if missing."""
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key.private_pem())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return key

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as error:
            raise IdentityError(f"cannot read device key {path}: {error}") from None
        if not isinstance(loaded, Ed25519PrivateKey):
            raise IdentityError(f"device key {path} is not an Ed25519 key")
        return cls(loaded)

    @classmethod
    def from_seed(cls, seed: bytes) -> DeviceKey:
        """From the 32 raw private bytes (as kept in the OS keyring)."""
        if len(seed) != 32:
            raise IdentityError(f"an Ed25519 private key has 32 bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def private_key(self) -> Ed25519PrivateKey:
        return self._private

    def seed(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def certificate_pem(self, *, valid_days: int = 36500) -> bytes:
        """A self-signed certificate for this key; its public key is what clients pin."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.node_id)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .sign(self._private, algorithm=None)
        )
        return cert.public_bytes(serialization.Encoding.PEM)


def node_id_from_certificate(der: bytes) -> str:
    """The node ID a peer certificate (DER) proves, or IdentityError if it has no Ed25519 key."""
    try:
        cert = x509.load_der_x509_certificate(der)
        public = cert.public_key()
    except ValueError as error:
        raise IdentityError(f"unreadable peer certificate: {error}") from None
    if not isinstance(public, Ed25519PublicKey):
        raise IdentityError("peer certificate does not carry an Ed25519 key")
    return node_id_from_public_key(
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
