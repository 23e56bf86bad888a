"""AES-256-GCM nonces and associated data for segments and the manifest.

The key is unique per file (random, or convergent: then the same key means the same plaintext
under the same parameters), so nonce = segment index never repeats under one key with different
data. The AAD binds storage index, segment index and "is last" so a block set moved to another
position, another file, or a file cut short after a segment boundary fails authentication.
The manifest uses a nonce from a range segment indices can never reach.
"""

from __future__ import annotations

import struct

_SEGMENT_AAD = struct.Struct(">16sQB")
MANIFEST_NONCE = b"\xff" * 4 + bytes(8)


def segment_nonce(segment_index: int) -> bytes:
    return bytes(4) + segment_index.to_bytes(8, "big")


def segment_aad(storage_index: bytes, segment_index: int, is_last: bool) -> bytes:
    return b"PC1seg" + _SEGMENT_AAD.pack(storage_index, segment_index, is_last)


def manifest_aad(storage_index: bytes) -> bytes:
    return b"PC1manifest" + storage_index
