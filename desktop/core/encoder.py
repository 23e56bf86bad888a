"""Encoding one file: segments -> AES-256-GCM -> zfec k-of-n blocks -> per-share hash trees.

The layout and storage index are fixed at construction so the caller can create shares and
write blocks while encoding runs; `finish()` yields the metadata writes and the read cap.
`encode_segment_at` is thread-safe (zfec, BLAKE3 and AES-GCM drop the GIL on big buffers),
which `encode_stream` uses to keep both cores busy with a bounded window of segments.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import blake3
import zfec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from desktop.core.caps import KEY_SIZE, ReadCap, storage_index_for_key
from desktop.core.errors import InputSizeError, ParamsError
from desktop.core.hashing import (
    HASH_SIZE,
    block_hash,
    build_tree,
    derive_key,
    roots_hash,
    tree_root,
)
from desktop.core.layout import TAG_SIZE, ShareLayout
from desktop.core.manifest import Manifest
from desktop.core.params import EncodingParams
from desktop.core.segment_cipher import (
    MANIFEST_NONCE,
    manifest_aad,
    segment_aad,
    segment_nonce,
)

logger = logging.getLogger(__name__)

Block = bytes | memoryview


@dataclass(frozen=True)
class EncodedSegment:
    """Block i goes to share i at `layout.block_range(index)`."""

    index: int
    blocks: Sequence[Block]


@dataclass(frozen=True)
class FinishedEncoding:
    cap: ReadCap
    layout: ShareLayout
    share_roots: tuple[bytes, ...]
    _metadata: tuple[bytes, ...]
    _manifest_ciphertext: bytes

    @property
    def storage_index(self) -> bytes:
        return self.cap.storage_index

    def share_metadata(self, shnum: int) -> list[tuple[int, bytes]]:
        """(offset, data) writes that complete share `shnum` once its blocks are written."""
        return [
            (0, self.layout.header(shnum)),
            (self.layout.metadata_offset, self._metadata[shnum]),
        ]


class Encoder:
    """Encodes one file of a size known up front. A caller-supplied key must never be reused
    for different plaintext (use `convergent_key` for deterministic keys)."""

    def __init__(
        self, params: EncodingParams, plaintext_size: int, *, key: bytes | None = None
    ) -> None:
        if key is None:
            key = os.urandom(KEY_SIZE)
        if len(key) != KEY_SIZE:
            raise ParamsError(f"file key must be {KEY_SIZE} bytes, got {len(key)}")
        self.params = params
        self.key = bytes(key)
        self.storage_index = storage_index_for_key(self.key)
        self.layout = ShareLayout.for_file(params, plaintext_size)
        self._aead = AESGCM(self.key)
        self._zfec = zfec.Encoder(params.k, params.n)
        self._parity_nums = tuple(range(params.k, params.n))
        num_segments = self.layout.num_segments
        self._leaves = [bytearray(num_segments * HASH_SIZE) for _ in range(params.n)]
        self._done = bytearray(num_segments)
        self._remaining = num_segments
        self._next_index = 0
        self._lock = threading.Lock()
        self._finished: FinishedEncoding | None = None

    def encode_segment(self, data: bytes | bytearray | memoryview) -> EncodedSegment:
        """Encode the next segment in order."""
        index = self._next_index
        self._next_index += 1
        return self.encode_segment_at(index, data)

    def encode_segment_at(self, index: int, data: bytes | bytearray | memoryview) -> EncodedSegment:
        """Encode segment `index` (thread-safe; each index exactly once)."""
        layout = self.layout
        expected = layout.segment_length(index)
        if len(data) != expected:
            raise InputSizeError(
                f"segment {index} has {len(data)} bytes, expected {expected}"
                " (did the file change while it was read?)"
            )
        k = self.params.k
        block_size = layout.block_length(index)
        buf = bytearray(k * block_size)  # zero tail pads the ciphertext to k equal pieces
        view = memoryview(buf)
        is_last = index == layout.num_segments - 1
        self._aead.encrypt_into(
            segment_nonce(index),
            data,
            segment_aad(self.storage_index, index, is_last),
            view[: expected + TAG_SIZE],
        )
        primaries = tuple(view[i * block_size : (i + 1) * block_size] for i in range(k))
        parity = self._zfec.encode(primaries, self._parity_nums) if self._parity_nums else []
        blocks: list[Block] = [*primaries, *parity]
        pos = index * HASH_SIZE
        for shnum, block in enumerate(blocks):
            self._leaves[shnum][pos : pos + HASH_SIZE] = block_hash(shnum, index, block)
        with self._lock:
            if self._done[index]:
                raise ParamsError(f"segment {index} was encoded twice")
            if self._finished is not None:
                raise ParamsError("encoder already finished")
            self._done[index] = 1
            self._remaining -= 1
        return EncodedSegment(index, blocks)

    def encode_subset(
        self, index: int, data: bytes | bytearray | memoryview, shnums: Sequence[int]
    ) -> dict[int, Block]:
        """Blocks of segment `index` for the chosen share numbers only, without recording
        anything (thread-safe, repeatable): used to re-create one share for another node while
        the source is still at hand. The caller checks the blocks against the finished trees."""
        layout = self.layout
        expected = layout.segment_length(index)
        if len(data) != expected:
            raise InputSizeError(
                f"segment {index} has {len(data)} bytes, expected {expected}"
                " (did the file change while it was read?)"
            )
        k, n = self.params.k, self.params.n
        wanted = sorted(set(shnums))
        if any(not 0 <= s < n for s in wanted):
            raise ParamsError(f"share numbers must be in 0..{n - 1}, got {wanted}")
        block_size = layout.block_length(index)
        buf = bytearray(k * block_size)
        view = memoryview(buf)
        self._aead.encrypt_into(
            segment_nonce(index),
            data,
            segment_aad(self.storage_index, index, index == layout.num_segments - 1),
            view[: expected + TAG_SIZE],
        )
        primaries = tuple(view[i * block_size : (i + 1) * block_size] for i in range(k))
        out: dict[int, Block] = {s: primaries[s] for s in wanted if s < k}
        parity_nums = tuple(s for s in wanted if s >= k)
        if parity_nums:
            for shnum, block in zip(
                parity_nums, self._zfec.encode(primaries, parity_nums), strict=True
            ):
                out[shnum] = block
        return out

    def finish(self) -> FinishedEncoding:
        """Build trees, manifest and cap once every segment is encoded."""
        with self._lock:
            if self._finished is not None:
                return self._finished
            if self._remaining:
                raise InputSizeError(
                    f"{self._remaining} of {self.layout.num_segments} segments were never encoded"
                )
            layout = self.layout
            trees = [build_tree(leaves, layout.num_segments) for leaves in self._leaves]
            roots = tuple(tree_root(tree) for tree in trees)
            manifest = Manifest(self.params, layout.plaintext_size, layout.num_segments, roots)
            manifest_ct = self._aead.encrypt(
                MANIFEST_NONCE, manifest.pack(), manifest_aad(self.storage_index)
            )
            roots_bytes = b"".join(roots)
            cap = ReadCap(
                self.key,
                roots_hash(self.params.pack(), layout.plaintext_size, roots_bytes, manifest_ct),
            )
            metadata = tuple(roots_bytes + tree + manifest_ct for tree in trees)
            assert all(len(m) == layout.metadata_size for m in metadata)
            self._finished = FinishedEncoding(cap, layout, roots, metadata, manifest_ct)
            self._leaves = []
            return self._finished


class ConvergentHasher:
    """First pass for convergent mode: same secret + plaintext + parameters -> same key.

    Parameters and size are hashed in too: the same key over differently cut segments would
    reuse GCM nonces with different data.
    """

    def __init__(self, secret: bytes, params: EncodingParams, plaintext_size: int) -> None:
        if len(secret) < 16:
            raise ParamsError("convergence secret must be at least 16 bytes")
        self._hasher = blake3.blake3(
            params.pack() + plaintext_size.to_bytes(8, "big"),
            key=derive_key("convergence secret", bytes(secret)),
            max_threads=blake3.blake3.AUTO,
        )
        self._expected = plaintext_size
        self._seen = 0

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        self._seen += len(chunk)
        self._hasher.update(chunk)

    def key(self) -> bytes:
        if self._seen != self._expected:
            raise InputSizeError(
                f"convergent hash saw {self._seen} bytes, expected {self._expected}"
                " (did the file change while it was read?)"
            )
        return bytes(self._hasher.digest(KEY_SIZE))


def convergent_key(secret: bytes, params: EncodingParams, plaintext_size: int) -> ConvergentHasher:
    return ConvergentHasher(secret, params, plaintext_size)


def read_exactly(read: Callable[[int], bytes], size: int) -> bytes:
    """Call `read` until `size` bytes arrived; InputSizeError on early end of input."""
    data = read(size)
    if len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        chunk = read(size - got)
        if not chunk:
            raise InputSizeError(
                f"input ended {size - got} bytes early (did the file change while it was read?)"
            )
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class EncodeStream:
    """Iterate for EncodedSegments in order; then `.finish()` gives the FinishedEncoding.

    At most `window` segments are read or being encoded at once, so memory stays bounded
    (about window x segment_size x (1 + n/k)) whatever the file size.
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        params: EncodingParams,
        plaintext_size: int,
        *,
        key: bytes | None = None,
        workers: int = 2,
        window: int | None = None,
    ) -> None:
        self.encoder = Encoder(params, plaintext_size, key=key)
        self._read = read
        self._workers = max(1, workers)
        self._window = window or 2 * self._workers
        self._consumed = False

    @property
    def storage_index(self) -> bytes:
        return self.encoder.storage_index

    @property
    def layout(self) -> ShareLayout:
        return self.encoder.layout

    def __iter__(self) -> Iterator[EncodedSegment]:
        if self._consumed:
            raise ParamsError("an encode stream can be iterated only once")
        self._consumed = True
        layout = self.encoder.layout
        if self._workers == 1:
            for index in range(layout.num_segments):
                data = read_exactly(self._read, layout.segment_length(index))
                yield self.encoder.encode_segment_at(index, data)
        else:
            yield from self._parallel(layout)
        if self._read(1):
            raise InputSizeError(
                f"input is longer than the announced {layout.plaintext_size} bytes"
                " (did the file change while it was read?)"
            )

    def _parallel(self, layout: ShareLayout) -> Iterator[EncodedSegment]:
        pending: deque[Future[EncodedSegment]] = deque()
        with ThreadPoolExecutor(self._workers, thread_name_prefix="pc-encode") as pool:
            try:
                for index in range(layout.num_segments):
                    if len(pending) >= self._window:
                        yield pending.popleft().result()
                    data = read_exactly(self._read, layout.segment_length(index))
                    pending.append(pool.submit(self.encoder.encode_segment_at, index, data))
                while pending:
                    yield pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()

    def finish(self) -> FinishedEncoding:
        return self.encoder.finish()


def encode_stream(
    read: Callable[[int], bytes],
    params: EncodingParams,
    plaintext_size: int,
    *,
    key: bytes | None = None,
    workers: int = 2,
    window: int | None = None,
) -> EncodeStream:
    return EncodeStream(read, params, plaintext_size, key=key, workers=workers, window=window)
