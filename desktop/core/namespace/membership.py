"""Account membership: which device keys may write to the account's namespace.

A device certificate is signed by the account root key or by an already-authorized device (so a
laptop can admit a phone without the root key at hand). Certificates may arrive in any order: one
whose issuer is not yet known waits until the issuer's own certificate arrives.
"""

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from desktop.core.namespace import canonical
from desktop.core.namespace.errors import UnauthorizedDevice
from desktop.core.namespace.keys import PrivateKeyLike, key_id, private_key, public_bytes

CERT_DOMAIN = b"permacloud-device-certificate-v1\x00"


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    account_id: str
    device_public_key: bytes
    device_name: str
    issuer_public_key: bytes
    issued_at_ms: int
    signature: bytes

    @property
    def device_id(self) -> str:
        return key_id(self.device_public_key)

    @property
    def issuer_id(self) -> str:
        return key_id(self.issuer_public_key)

    def unsigned_wire(self) -> dict[str, Any]:
        return {
            "v": 1,
            "acct": self.account_id,
            "device_key": canonical.b64(self.device_public_key),
            "name": self.device_name,
            "issuer_key": canonical.b64(self.issuer_public_key),
            "issued": self.issued_at_ms,
        }

    def to_bytes(self) -> bytes:
        wire = self.unsigned_wire()
        wire["sig"] = canonical.b64(self.signature)
        return canonical.encode(wire)

    @classmethod
    def from_bytes(cls, data: bytes) -> "DeviceCertificate":
        try:
            obj = canonical.decode(data)
            keys = {"v", "acct", "device_key", "name", "issuer_key", "issued", "sig"}
            if not isinstance(obj, dict) or set(obj) != keys or obj["v"] != 1:
                raise ValueError("unexpected fields or version")
            if not isinstance(obj["issued"], int) or not isinstance(obj["name"], str):
                raise ValueError("bad field types")
            return cls(
                obj["acct"],
                canonical.unb64(obj["device_key"]),
                obj["name"],
                canonical.unb64(obj["issuer_key"]),
                obj["issued"],
                canonical.unb64(obj["sig"]),
            )
        except (ValueError, TypeError) as exc:
            raise UnauthorizedDevice("?", None, f"malformed device certificate: {exc}") from None

    def verify_signature(self) -> None:
        message = CERT_DOMAIN + canonical.encode(self.unsigned_wire())
        try:
            Ed25519PublicKey.from_public_bytes(self.issuer_public_key).verify(
                self.signature, message
            )
        except (InvalidSignature, ValueError):
            raise UnauthorizedDevice(
                self.device_id, None, "device certificate has a bad signature"
            ) from None


def issue_certificate(
    issuer_key: PrivateKeyLike,
    account_public_key: bytes,
    device_public_key: bytes,
    device_name: str,
    issued_at_ms: int,
) -> DeviceCertificate:
    """Sign a certificate admitting `device_public_key` to the account."""
    issuer = private_key(issuer_key)
    unsigned = DeviceCertificate(
        key_id(account_public_key),
        device_public_key,
        device_name,
        public_bytes(issuer),
        issued_at_ms,
        b"",
    )
    sig = issuer.sign(CERT_DOMAIN + canonical.encode(unsigned.unsigned_wire()))
    return DeviceCertificate(
        unsigned.account_id,
        device_public_key,
        device_name,
        unsigned.issuer_public_key,
        issued_at_ms,
        sig,
    )


class Membership:
    """The set of authorized devices of one account, fed with certificates in any order."""

    def __init__(self, account_public_key: bytes) -> None:
        self.account_public_key = account_public_key
        self.account_id = key_id(account_public_key)
        self._devices: dict[str, DeviceCertificate] = {}
        self._waiting: dict[str, list[DeviceCertificate]] = {}  # issuer id -> certificates

    def add(self, cert: DeviceCertificate) -> list[str]:
        """Verify and record a certificate; return the device ids it newly authorized.

        Raises UnauthorizedDevice for a bad signature or another account's certificate; a
        certificate from a not-yet-known issuer is kept until that issuer is authorized.
        """
        if cert.account_id != self.account_id:
            raise UnauthorizedDevice(
                cert.device_id, None, f"certificate is for another account {cert.account_id}"
            )
        cert.verify_signature()
        if cert.device_id in self._devices:
            return []
        issuer = cert.issuer_public_key
        if issuer != self.account_public_key and cert.issuer_id not in self._devices:
            self._waiting.setdefault(cert.issuer_id, []).append(cert)
            return []
        newly: list[str] = []
        queue = [cert]
        while queue:
            current = queue.pop()
            if current.device_id in self._devices:
                continue
            self._devices[current.device_id] = current
            newly.append(current.device_id)
            queue.extend(self._waiting.pop(current.device_id, []))
        return newly

    def is_authorized(self, device_id: str) -> bool:
        return device_id in self._devices

    def public_key(self, device_id: str, seq: int | None = None) -> bytes:
        cert = self._devices.get(device_id)
        if cert is None:
            raise UnauthorizedDevice(device_id, seq, "no certificate chain to the account root")
        return cert.device_public_key

    def device_name(self, device_id: str) -> str:
        cert = self._devices.get(device_id)
        return cert.device_name if cert else device_id

    def devices(self) -> list[DeviceCertificate]:
        return sorted(self._devices.values(), key=lambda c: c.device_id)
