"""Deterministic byte encoding for signed objects: sorted-key compact JSON, ints only.

Chosen over CBOR because it needs no extra dependency and stays debuggable; bytes fields are
base64url without padding. `decode` re-encodes and insists on byte equality, so one object has one
encoding and a signature can never be carried over to a differently-spelled twin.
"""

import base64
import json
from typing import Any


def encode(obj: Any) -> bytes:
    _check_types(obj)
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def decode(data: bytes) -> Any:
    """Parse canonical bytes; raise ValueError when the bytes are not exactly canonical."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not canonical JSON: {exc}") from None
    if encode(obj) != data:
        raise ValueError("not in canonical form")
    return obj


def _check_types(obj: Any) -> None:
    if obj is None or isinstance(obj, bool | int | str):
        return
    if isinstance(obj, list):
        for item in obj:
            _check_types(item)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError("canonical objects have string keys only")
            _check_types(value)
        return
    raise ValueError(f"type {type(obj).__name__} is not allowed in canonical objects")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise ValueError("bad base64 field")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64(raw) != text:
        raise ValueError("non-canonical base64 field")
    return raw
