"""Storage index <-> URL path segment.

Uses the core's `storage_index_to_str`/`storage_index_from_str` when `desktop.core.caps` provides
them, so a path segment is always what the core calls a storage index; otherwise the same format
locally: lowercase unpadded base32 of 16 bytes (26 characters).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

STORAGE_INDEX_BYTES = 16
_SEGMENT_RE = re.compile(r"[a-z2-7]{26}")


def _local_to_str(si: bytes) -> str:
    if len(si) != STORAGE_INDEX_BYTES:
        raise ValueError(f"a storage index has {STORAGE_INDEX_BYTES} bytes, got {len(si)}")
    return base64.b32encode(si).decode("ascii").rstrip("=").lower()


def _local_from_str(text: str) -> bytes:
    if not _SEGMENT_RE.fullmatch(text):
        raise ValueError("a storage index is 26 characters of lowercase base32")
    raw = base64.b32decode(text.upper() + "======")
    if _local_to_str(raw) != text:  # non-canonical trailing bits
        raise ValueError("non-canonical storage index")
    return raw


def _core_functions() -> tuple[Callable[[bytes], str], Callable[[str], bytes]] | None:
    try:
        from desktop.core import caps
    except ImportError:
        return None
    to_str = getattr(caps, "storage_index_to_str", None)
    from_str = getattr(caps, "storage_index_from_str", None)
    if callable(to_str) and callable(from_str):
        return to_str, from_str
    return None


_core = _core_functions()


def storage_index_to_str(si: bytes) -> str:
    if _core is not None:
        return _core[0](si)
    return _local_to_str(si)


def storage_index_from_str(text: str) -> bytes:
    """Parse a path segment; ValueError on anything that is not a canonical storage index."""
    if _core is not None:
        try:
            return _core[1](text)
        except Exception as error:
            raise ValueError(str(error)) from None
    return _local_from_str(text)
