"""Where everything lies inside one share, fixed before encoding starts.

A share is one byte string: `[header][block of segment 0]...[block of last segment][metadata]`.
Blocks come first so their offsets depend only on the parameters and the plaintext size; the
client can write them as soon as each segment is encoded, in any order, and the metadata
(share roots, this share's block hash tree, encrypted manifest) last. A reader that knows
nothing learns the whole layout from the fixed-size header at offset 0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from desktop.core.errors import ParamsError, PermaCloudError
from desktop.core.hashing import HASH_SIZE, tree_size
from desktop.core.params import EncodingParams

MAGIC = b"PCSHARE1"
FORMAT_VERSION = 1
HEADER_SIZE = 64
TAG_SIZE = 16  # AES-GCM tag appended to every ciphertext
MAX_PLAINTEXT_SIZE = 1 << 50
MAX_METADATA_SIZE = (
    (1 << 32) - 1
)  # the header stores it in 32 bits  # 1 PiB: keeps every offset far from the header's field widths

_HEADER = struct.Struct(">8sBxHHHIQQIQI")
MANIFEST_FIXED_SIZE = struct.calcsize(">BHHIQQ")


class HeaderError(PermaCloudError):
    """A share header is unreadable; the decoder turns this into ShareCorrupt for that share."""


def manifest_plain_size(n: int) -> int:
    return MANIFEST_FIXED_SIZE + n * HASH_SIZE


@dataclass(frozen=True)
class ShareLayout:
    """Byte layout shared by all n shares of one file (only the header's share number differs)."""

    params: EncodingParams
    plaintext_size: int
    num_segments: int
    block_size: int
    last_segment_size: int
    last_block_size: int
    roots_offset: int
    tree_offset: int
    manifest_offset: int
    share_size: int

    @classmethod
    def for_file(cls, params: EncodingParams, plaintext_size: int) -> ShareLayout:
        if not isinstance(plaintext_size, int) or not 0 <= plaintext_size <= MAX_PLAINTEXT_SIZE:
            raise ParamsError(
                f"plaintext size must be 0..{MAX_PLAINTEXT_SIZE}, got {plaintext_size}"
            )
        seg = params.segment_size
        # An empty file still has one (empty) segment so its emptiness is authenticated too.
        num_segments = max(1, -(-plaintext_size // seg))
        last_segment_size = plaintext_size - (num_segments - 1) * seg
        block_size = -(-(seg + TAG_SIZE) // params.k) if num_segments > 1 else 0
        last_block_size = -(-(last_segment_size + TAG_SIZE) // params.k)
        if num_segments == 1:
            block_size = last_block_size
        blocks_end = HEADER_SIZE + (num_segments - 1) * block_size + last_block_size
        roots_offset = blocks_end
        tree_offset = roots_offset + params.n * HASH_SIZE
        manifest_offset = tree_offset + tree_size(num_segments)
        share_size = manifest_offset + manifest_plain_size(params.n) + TAG_SIZE
        if share_size - roots_offset > MAX_METADATA_SIZE:
            raise ParamsError(
                f"{plaintext_size} bytes need too many segments of {seg} bytes;"
                " use a larger segment size"
            )
        return cls(
            params=params,
            plaintext_size=plaintext_size,
            num_segments=num_segments,
            block_size=block_size,
            last_segment_size=last_segment_size,
            last_block_size=last_block_size,
            roots_offset=roots_offset,
            tree_offset=tree_offset,
            manifest_offset=manifest_offset,
            share_size=share_size,
        )

    def _check_segment(self, segment_index: int) -> None:
        if not 0 <= segment_index < self.num_segments:
            raise ParamsError(
                f"segment {segment_index} out of range (file has {self.num_segments} segments)"
            )

    def segment_length(self, segment_index: int) -> int:
        """Plaintext bytes in that segment."""
        self._check_segment(segment_index)
        if segment_index == self.num_segments - 1:
            return self.last_segment_size
        return self.params.segment_size

    def segment_range(self, segment_index: int) -> tuple[int, int]:
        """(offset, length) of that segment in the plaintext."""
        return segment_index * self.params.segment_size, self.segment_length(segment_index)

    def block_length(self, segment_index: int) -> int:
        self._check_segment(segment_index)
        if segment_index == self.num_segments - 1:
            return self.last_block_size
        return self.block_size

    def block_range(self, segment_index: int) -> tuple[int, int]:
        """(offset, length) of that segment's block inside every share."""
        return HEADER_SIZE + segment_index * self.block_size, self.block_length(segment_index)

    @property
    def metadata_offset(self) -> int:
        return self.roots_offset

    @property
    def metadata_size(self) -> int:
        return self.share_size - self.roots_offset

    @property
    def tree_size(self) -> int:
        return self.manifest_offset - self.tree_offset

    @property
    def manifest_size(self) -> int:
        return self.share_size - self.manifest_offset

    def segments_for_range(self, offset: int, length: int) -> range:
        """Segments covering plaintext bytes [offset, offset+length), clipped to the file."""
        if offset < 0 or length < 0:
            raise ParamsError(f"byte range must be non-negative, got offset={offset} len={length}")
        end = min(offset + length, self.plaintext_size)
        if end <= offset:
            return range(0)
        seg = self.params.segment_size
        return range(offset // seg, -(-end // seg))

    def header(self, shnum: int) -> bytes:
        if not 0 <= shnum < self.params.n:
            raise ParamsError(f"share number {shnum} out of range for n={self.params.n}")
        packed = _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            self.params.k,
            self.params.n,
            shnum,
            self.params.segment_size,
            self.plaintext_size,
            self.num_segments,
            self.block_size,
            self.metadata_offset,
            self.metadata_size,
        )
        return packed.ljust(HEADER_SIZE, b"\0")


def parse_header(header: bytes | bytearray | memoryview) -> tuple[ShareLayout, int]:
    """(layout, share number) from a share header; HeaderError if it is not self-consistent."""
    if len(header) < HEADER_SIZE:
        raise HeaderError(f"share header is {len(header)} bytes, expected {HEADER_SIZE}")
    header = bytes(header[:HEADER_SIZE])
    fields = _HEADER.unpack_from(header)
    magic, version, k, n, shnum, segment_size, plaintext_size = fields[:7]
    if magic != MAGIC:
        raise HeaderError("not a PermaCloud share (bad magic)")
    if version != FORMAT_VERSION:
        raise HeaderError(f"unsupported share format version {version}")
    try:
        layout = ShareLayout.for_file(EncodingParams(k, n, segment_size), plaintext_size)
    except ParamsError as error:
        raise HeaderError(f"share header has invalid parameters: {error}") from None
    if shnum >= n:
        raise HeaderError(f"share number {shnum} out of range for n={n}")
    if header != layout.header(shnum):
        # Derived fields (segment count, offsets, padding) must match what the parameters imply.
        raise HeaderError("share header is inconsistent with its own parameters")
    return layout, shnum


def metadata_range_from_header(header: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(offset, length) of the metadata, learnt from the header alone."""
    layout, _ = parse_header(header)
    return layout.metadata_offset, layout.metadata_size
