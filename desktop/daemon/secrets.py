"""Where this device keeps its secrets: the OS keyring, or a private key file on headless boxes.

Secret Service (GNOME Keyring, KWallet) is the right home on a desktop. A headless server has no
keyring backend; rather than pull in `keyrings.alt` (plain text in disguise), we say so and keep
the secrets in a file only this user can read, next to the rest of the device's data.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path
from typing import Protocol

import keyring
import keyring.backend
import keyring.errors

from desktop.core.errors import PermaCloudError

logger = logging.getLogger(__name__)

SERVICE = "permacloud"


class SecretStoreError(PermaCloudError):
    """The keyring refused (locked, denied) or the key file is unreadable."""


class SecretStore(Protocol):
    description: str

    def get(self, name: str) -> bytes | None: ...

    def put(self, name: str, value: bytes) -> None: ...


class KeyringStore:
    """Secrets in the OS keyring, namespaced by this device home's random ID."""

    def __init__(self, home_id: str, backend: keyring.backend.KeyringBackend) -> None:
        self._home_id = home_id
        self._backend = backend
        self.description = f"the system keyring ({type(backend).__name__})"

    def _user(self, name: str) -> str:
        return f"{self._home_id}/{name}"

    def get(self, name: str) -> bytes | None:
        try:
            value = self._backend.get_password(SERVICE, self._user(name))
        except keyring.errors.KeyringError as error:
            raise SecretStoreError(f"cannot read from {self.description}: {error}") from None
        return None if value is None else base64.b64decode(value)

    def put(self, name: str, value: bytes) -> None:
        try:
            self._backend.set_password(
                SERVICE, self._user(name), base64.b64encode(value).decode("ascii")
            )
        except keyring.errors.KeyringError as error:
            raise SecretStoreError(f"cannot write to {self.description}: {error}") from None


class FileStore:
    """Secrets in one JSON file with mode 0600, replaced atomically on every write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"the private key file {path}"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise SecretStoreError(f"cannot read {self.path}: {error}") from None
        if not isinstance(data, dict):
            raise SecretStoreError(f"{self.path} is not a secrets file")
        return {str(k): str(v) for k, v in data.items()}

    def get(self, name: str) -> bytes | None:
        value = self._load().get(name)
        return None if value is None else base64.b64decode(value)

    def put(self, name: str, value: bytes) -> None:
        data = self._load()
        data[name] = base64.b64encode(value).decode("ascii")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(data, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)


def usable_keyring() -> keyring.backend.KeyringBackend | None:
    """The keyring backend if a real one is available; None for the 'fail' and empty chainer."""
    if os.environ.get("PERMACLOUD_NO_KEYRING"):
        return None
    backend = keyring.get_keyring()
    name = type(backend).__module__ + "." + type(backend).__name__
    if name.startswith(("keyring.backends.fail", "keyrings.alt")):
        return None
    if name == "keyring.backends.chainer.ChainerBackend":
        inner = getattr(backend, "backends", [])
        if not inner:
            return None
    return backend


def open_secret_store(home_id: str, fallback_file: Path, *, prefer: str = "auto") -> SecretStore:
    """The store recorded for this device (`prefer` = 'keyring' or 'file'), or the best one."""
    if prefer == "file":
        return FileStore(fallback_file)
    backend = usable_keyring()
    if backend is None:
        if prefer == "keyring":
            raise SecretStoreError(
                "this device's secrets are in the system keyring, but no keyring is available"
                " now (is the desktop session unlocked?)"
            )
        return FileStore(fallback_file)
    return KeyringStore(home_id, backend)
