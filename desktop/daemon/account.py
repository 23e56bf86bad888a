"""The account and this device's keys: creating them, keeping them, and what derives from them.

An account is a person across their devices. Its root key signs device certificates; its secret
encrypts the namespace records that nodes keep (nodes see ciphertext only) and seeds convergent
encryption. Every device of the account holds both: a device joins by invite and receives them
encrypted under the invite's one-time secret. The device key signs this device's log entries and
is the identity of its storage node.
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from desktop.core.errors import PermaCloudError
from desktop.core.namespace import key_id
from desktop.daemon.secrets import SecretStore
from desktop.net.identity import DeviceKey, node_id_from_public_key

ACCOUNT_ROOT = "account-root"
ACCOUNT_SECRET = "account-secret"
DEVICE_KEY = "device-key"


class AccountError(PermaCloudError):
    """Keys are missing or do not fit together."""


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class AccountKeys:
    account_root: Ed25519PrivateKey
    account_secret: bytes
    device_key: DeviceKey

    @classmethod
    def create(cls) -> AccountKeys:
        return cls(Ed25519PrivateKey.generate(), pysecrets.token_bytes(32), DeviceKey.generate())

    @property
    def account_public(self) -> bytes:
        return _raw_public(self.account_root)

    @property
    def account_id(self) -> str:
        return key_id(self.account_public)

    @property
    def device_id(self) -> str:
        return key_id(self.device_key.public_bytes)

    @property
    def account_writer(self) -> str:
        """Record-log ID of the account's own log (certificates, household nodes)."""
        return node_id_from_public_key(self.account_public)

    @property
    def account_signer(self) -> DeviceKey:
        """The root key as a request signer, to append to the account's record log."""
        return DeviceKey(self.account_root)

    def root_seed(self) -> bytes:
        return _raw_private(self.account_root)

    def convergence_secret(self) -> bytes:
        return blake3.blake3(self.account_secret, derive_key_context=_CONVERGENCE).digest()

    def record_cipher(self) -> RecordCipher:
        return RecordCipher(self.account_secret)


_CONVERGENCE = "permacloud 2026 convergence secret v1"
_RECORDS = "permacloud 2026 record encryption v1"
_NONCES = "permacloud 2026 record nonces v1"


class RecordCipher:
    """Encrypts records for the nodes' record logs; the writer ID and seq are bound as AAD."""

    def __init__(self, account_secret: bytes) -> None:
        key = blake3.blake3(account_secret, derive_key_context=_RECORDS).digest()
        self._aead = AESGCM(key)
        self._nonce_key = blake3.blake3(account_secret, derive_key_context=_NONCES).digest()

    def seal(self, writer: str, seq: int, data: bytes) -> bytes:
        """Deterministic (nonce = keyed hash of writer, seq and data): publishing the same
        record twice, after a crash or from two tasks, yields the same bytes, which nodes
        accept as a no-op; a nonce repeats only for identical input, hence identical output."""
        nonce = blake3.blake3(_aad(writer, seq) + data, key=self._nonce_key).digest(12)
        return nonce + self._aead.encrypt(nonce, data, _aad(writer, seq))

    def open(self, writer: str, seq: int, sealed: bytes) -> bytes:
        if len(sealed) < 28:
            raise AccountError(f"record {seq} of {writer} is too short")
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], _aad(writer, seq))
        except InvalidTag:
            raise AccountError(f"record {seq} of {writer} fails authentication") from None


def _aad(writer: str, seq: int) -> bytes:
    return writer.encode() + b"\0" + seq.to_bytes(8, "big")


def save_keys(store: SecretStore, keys: AccountKeys) -> None:
    store.put(ACCOUNT_ROOT, keys.root_seed())
    store.put(ACCOUNT_SECRET, keys.account_secret)
    store.put(DEVICE_KEY, keys.device_key.seed())


def load_keys(store: SecretStore) -> AccountKeys:
    root, secret, device = (store.get(n) for n in (ACCOUNT_ROOT, ACCOUNT_SECRET, DEVICE_KEY))
    if root is None or secret is None or device is None:
        raise AccountError(
            f"this device's keys are missing from {store.description}: run 'permacloud init'"
        )
    return AccountKeys(
        Ed25519PrivateKey.from_private_bytes(root), secret, DeviceKey.from_seed(device)
    )
