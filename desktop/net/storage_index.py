"""Storage index <-> URL path segment, exactly as the core names it (`desktop.core.caps`).

Wraps the core's functions so the protocol layer deals in ValueError only: lowercase unpadded
base32 of 16 bytes (26 characters), canonical form required.
"""

from __future__ import annotations

from desktop.core import caps
from desktop.core.errors import CapError

STORAGE_INDEX_BYTES = caps.STORAGE_INDEX_SIZE


def storage_index_to_str(si: bytes) -> str:
    try:
        return caps.storage_index_to_str(si)
    except CapError as error:
        raise ValueError(str(error)) from None


def storage_index_from_str(text: str) -> bytes:
    """Parse a path segment; ValueError on anything that is not a canonical storage index."""
    try:
        return caps.storage_index_from_str(text)
    except CapError as error:
        raise ValueError(str(error)) from None
