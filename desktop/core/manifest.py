"""The per-file manifest: sizes, parameters and share roots, stored encrypted in every share.

The header and the clear roots list already let a key-less verifier check shares; the manifest
is the reader's authenticated copy (AES-GCM under the file key) and the place for future
reader-only fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from desktop.core.hashing import HASH_SIZE
from desktop.core.params import EncodingParams

MANIFEST_VERSION = 1
_FIXED = struct.Struct(">BHHIQQ")


@dataclass(frozen=True)
class Manifest:
    params: EncodingParams
    plaintext_size: int
    num_segments: int
    share_roots: tuple[bytes, ...]

    def pack(self) -> bytes:
        fixed = _FIXED.pack(
            MANIFEST_VERSION,
            self.params.k,
            self.params.n,
            self.params.segment_size,
            self.plaintext_size,
            self.num_segments,
        )
        return fixed + b"".join(self.share_roots)

    @classmethod
    def unpack(cls, data: bytes) -> Manifest:
        """Parse; ValueError if malformed (only reachable with a key that authenticated it)."""
        if len(data) < _FIXED.size:
            raise ValueError("manifest too short")
        version, k, n, segment_size, plaintext_size, num_segments = _FIXED.unpack_from(data)
        if version != MANIFEST_VERSION:
            raise ValueError(f"unsupported manifest version {version}")
        roots = data[_FIXED.size :]
        if len(roots) != n * HASH_SIZE:
            raise ValueError("manifest roots list has the wrong length")
        return cls(
            params=EncodingParams(k, n, segment_size),
            plaintext_size=plaintext_size,
            num_segments=num_segments,
            share_roots=tuple(roots[i : i + HASH_SIZE] for i in range(0, len(roots), HASH_SIZE)),
        )
