"""Identity, certificates and request signing (pure, no network)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest

from desktop.net.identity import (
    DeviceKey,
    IdentityError,
    is_valid_node_id,
    node_id_from_certificate,
    node_id_from_public_key,
)
from desktop.net.signing import (
    H_BODY,
    H_NONCE,
    ReplayCache,
    SignatureError,
    body_hash,
    sign_request,
    verify_request,
)


def test_node_id_is_short_stable_and_url_safe() -> None:
    key = DeviceKey.generate()
    assert key.node_id == node_id_from_public_key(key.public_bytes)
    assert len(key.node_id) == 32 and is_valid_node_id(key.node_id)
    assert key.node_id.isalnum() and key.node_id == key.node_id.lower()
    assert DeviceKey.generate().node_id != key.node_id
    assert not is_valid_node_id(key.node_id.upper())
    assert not is_valid_node_id(key.node_id[:-1])
    with pytest.raises(IdentityError):
        node_id_from_public_key(b"short")


def test_key_file_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "key.pem"
    key = DeviceKey.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert DeviceKey.load_or_create(path).node_id == key.node_id
    path.write_text("not a key")
    with pytest.raises(IdentityError, match="cannot read device key"):
        DeviceKey.load(path)


def test_certificate_carries_the_node_identity() -> None:
    key = DeviceKey.generate()
    der = ssl.PEM_cert_to_DER_cert(key.certificate_pem().decode())
    assert node_id_from_certificate(der) == key.node_id
    with pytest.raises(IdentityError):
        node_id_from_certificate(b"garbage")


def _headers(key: DeviceKey, node: str, now: float, body: bytes = b"{}") -> dict[str, str]:
    return dict(sign_request(key, "POST", "/v1/shares/x/1", body_hash(body), node, now))


def test_signed_request_verifies_once() -> None:
    key, node = DeviceKey.generate(), DeviceKey.generate().node_id
    now = time.time()
    cache = ReplayCache(window=300)
    headers = _headers(key, node, now)
    signed = verify_request(headers, "POST", "/v1/shares/x/1", node, now + 10, cache)
    assert signed.public_key == key.public_bytes and signed.body_hex == body_hash(b"{}")
    with pytest.raises(SignatureError, match="replayed"):
        verify_request(headers, "POST", "/v1/shares/x/1", node, now + 10, cache)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "DELETE"}, "bad request signature"),
        ({"target": "/v1/shares/x/2"}, "bad request signature"),
        ({"node": "other"}, "signed for node"),
        ({"skew": 301}, "off the node clock"),
        ({"skew": -301}, "off the node clock"),
        ({H_BODY: body_hash(b"[]")}, "bad request signature"),
        ({H_NONCE: "0" * 32}, "bad request signature"),
        ({H_NONCE: "../../x"}, "malformed nonce"),
        ({"pc-signature": "!!"}, "bad request signature|malformed"),
        ({"drop": "pc-key"}, "missing signature header"),
    ],
)
def test_tampered_requests_fail(change: dict[str, object], message: str) -> None:
    key, node = DeviceKey.generate(), DeviceKey.generate().node_id
    now = time.time()
    headers = _headers(key, node, now)
    method, target, check_node, at = "POST", "/v1/shares/x/1", node, now
    for name, value in change.items():
        if name == "method":
            method = str(value)
        elif name == "target":
            target = str(value)
        elif name == "node":
            headers["pc-target"] = str(value)
        elif name == "skew":
            at = now + float(str(value))
        elif name == "drop":
            del headers[str(value)]
        else:
            headers[name] = str(value)
    with pytest.raises(SignatureError, match=message):
        verify_request(headers, method, target, check_node, at, ReplayCache(300))


def test_replay_cache_forgets_after_window() -> None:
    cache = ReplayCache(window=10, max_entries=4)
    assert cache.check_and_add("a" * 16, 0)
    assert not cache.check_and_add("a" * 16, 5)
    for index in range(4):
        assert cache.check_and_add(f"{index:016d}", 100)
    assert cache.check_and_add("a" * 16, 100)  # pruned: older than twice the window
