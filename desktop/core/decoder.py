"""Checking and decoding shares: every block is verified before use, and any failure names
the share it came from (`ShareCorrupt.shnum`) so the caller can take another share instead.

`ShareVerifier` needs only a verify cap (for nodes, checkers, repairers); `Decoder` adds the
key: it decrypts segments and the manifest. `decode_stream` is the high-level reader over
share readers with fallback and a bounded window of segments decoded on both cores.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import zfec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from desktop.core.caps import ReadCap, VerifyCap
from desktop.core.errors import FileCorrupt, NotEnoughShares, ShareCorrupt
from desktop.core.hashing import (
    HASH_SIZE,
    block_hash,
    check_tree,
    roots_hash,
    tree_leaf,
    tree_root,
)
from desktop.core.layout import HEADER_SIZE, TAG_SIZE, HeaderError, ShareLayout, parse_header
from desktop.core.manifest import Manifest
from desktop.core.params import EncodingParams
from desktop.core.segment_cipher import MANIFEST_NONCE, manifest_aad, segment_aad, segment_nonce

logger = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview


class ShareVerifier:
    """Checks share metadata and blocks against a verify cap, without the file key."""

    def __init__(self, verify_cap: VerifyCap) -> None:
        self.verify_cap = verify_cap
        self._layout: ShareLayout | None = None
        self._share_roots: bytes | None = None
        self._manifest_ciphertext: bytes | None = None
        self._trees: dict[int, bytes] = {}

    @property
    def storage_index(self) -> bytes:
        return self.verify_cap.storage_index

    @property
    def layout(self) -> ShareLayout:
        if self._layout is None:
            raise NotEnoughShares("no share metadata has been loaded yet")
        return self._layout

    @property
    def params(self) -> EncodingParams:
        return self.layout.params

    @property
    def plaintext_size(self) -> int:
        return self.layout.plaintext_size

    @property
    def loaded_shares(self) -> frozenset[int]:
        return frozenset(self._trees)

    def load_share_metadata(self, shnum: int, header: Buffer, metadata: Buffer) -> None:
        """Accept share `shnum`'s header and metadata, or raise ShareCorrupt(shnum, why)."""
        try:
            layout, header_shnum = parse_header(header)
        except HeaderError as error:
            raise ShareCorrupt(shnum, str(error)) from None
        if header_shnum != shnum:
            raise ShareCorrupt(shnum, f"header says it is share {header_shnum}")
        if self._layout is not None and layout != self._layout:
            raise ShareCorrupt(shnum, "parameters differ from the other shares")
        if len(metadata) != layout.metadata_size:
            raise ShareCorrupt(
                shnum, f"metadata is {len(metadata)} bytes, expected {layout.metadata_size}"
            )
        meta = bytes(metadata)
        base = layout.metadata_offset
        roots = meta[: layout.tree_offset - base]
        tree = meta[layout.tree_offset - base : layout.manifest_offset - base]
        manifest_ct = meta[layout.manifest_offset - base :]
        expected = roots_hash(layout.params.pack(), layout.plaintext_size, roots, manifest_ct)
        if expected != self.verify_cap.roots_hash:
            raise ShareCorrupt(shnum, "metadata does not match the capability's roots hash")
        problem = check_tree(tree, layout.num_segments)
        if problem:
            raise ShareCorrupt(shnum, problem)
        if tree_root(tree) != roots[shnum * HASH_SIZE : (shnum + 1) * HASH_SIZE]:
            raise ShareCorrupt(shnum, "block hash tree root does not match the roots list")
        self._accept(layout, roots, manifest_ct)
        self._trees[shnum] = tree

    def _accept(self, layout: ShareLayout, roots: bytes, manifest_ct: bytes) -> None:
        # Everything here was checked against the cap, so it is identical for all good shares.
        if self._layout is None:
            self._layout, self._share_roots, self._manifest_ciphertext = layout, roots, manifest_ct

    def verify_block(self, shnum: int, segment_index: int, block: Buffer) -> None:
        """Raise ShareCorrupt unless `block` is exactly share shnum's block of that segment."""
        tree = self._trees.get(shnum)
        if tree is None:
            raise ShareCorrupt(shnum, "its metadata was not loaded (or was rejected)")
        layout = self.layout
        if not 0 <= segment_index < layout.num_segments:
            raise ShareCorrupt(shnum, f"segment {segment_index} does not exist")
        expected_len = layout.block_length(segment_index)
        if len(block) != expected_len:
            raise ShareCorrupt(
                shnum,
                f"block {segment_index} is {len(block)} bytes, expected {expected_len}"
                " (truncated?)",
            )
        leaf = tree_leaf(tree, layout.num_segments, segment_index)
        if block_hash(shnum, segment_index, block) != leaf:
            raise ShareCorrupt(shnum, f"block {segment_index} fails its hash check")

    def block_tree(self, shnum: int) -> bytes:
        """The verified block hash tree of a loaded share (for audits)."""
        tree = self._trees.get(shnum)
        if tree is None:
            raise ShareCorrupt(shnum, "its metadata was not loaded (or was rejected)")
        return tree


class Decoder(ShareVerifier):
    """Verifies, erasure-decodes and decrypts segments of the file named by a read cap."""

    def __init__(self, cap: ReadCap) -> None:
        super().__init__(cap.verify_cap())
        self.cap = cap
        self._aead = AESGCM(cap.key)
        self._zfec: zfec.Decoder | None = None
        self._manifest: Manifest | None = None

    def _accept(self, layout: ShareLayout, roots: bytes, manifest_ct: bytes) -> None:
        if self._layout is not None:
            return
        manifest = self._decrypt_manifest(manifest_ct)
        if (
            manifest.params != layout.params
            or manifest.plaintext_size != layout.plaintext_size
            or manifest.num_segments != layout.num_segments
            or b"".join(manifest.share_roots) != roots
        ):
            raise FileCorrupt("the manifest disagrees with the share headers")
        self._manifest = manifest
        self._zfec = zfec.Decoder(layout.params.k, layout.params.n)
        super()._accept(layout, roots, manifest_ct)

    def _decrypt_manifest(self, manifest_ct: bytes) -> Manifest:
        # The ciphertext matched the cap's roots hash, so failing here is the uploader's fault,
        # not one share's.
        try:
            plain = self._aead.decrypt(
                MANIFEST_NONCE, manifest_ct, manifest_aad(self.storage_index)
            )
            return Manifest.unpack(plain)
        except (InvalidTag, ValueError) as error:
            raise FileCorrupt(f"manifest does not decrypt with this cap: {error}") from None

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            raise NotEnoughShares("no share metadata has been loaded yet")
        return self._manifest

    def segments_for_range(self, offset: int, length: int) -> range:
        return self.layout.segments_for_range(offset, length)

    def choose_shares(self, available: set[int] | frozenset[int]) -> list[int]:
        """k of the available loaded shares, primaries first (they decode for free)."""
        usable = sorted(s for s in available if s in self._trees)
        k = self.params.k
        if len(usable) < k:
            raise NotEnoughShares(
                f"need {k} good shares, only {len(usable)} available ({sorted(usable)})"
            )
        return usable[:k]

    def decode_segment(self, segment_index: int, blocks: Mapping[int, Buffer]) -> bytes:
        """Plaintext of one segment from >= k blocks; each used block is verified first."""
        layout = self.layout
        k = layout.params.k
        if len(blocks) < k:
            raise NotEnoughShares(
                f"segment {segment_index} needs {k} blocks, got {len(blocks)} ({sorted(blocks)})"
            )
        chosen = sorted(blocks)[:k]
        for shnum in chosen:
            self.verify_block(shnum, segment_index, blocks[shnum])
        block_size = layout.block_length(segment_index)
        if chosen == list(range(k)):
            pieces: list[Buffer] = [blocks[s] for s in chosen]
        else:
            assert self._zfec is not None
            pieces = self._zfec.decode(tuple(blocks[s] for s in chosen), tuple(chosen))
        buf = bytearray(k * block_size)
        for i, piece in enumerate(pieces):
            buf[i * block_size : (i + 1) * block_size] = piece
        length = layout.segment_length(segment_index)
        is_last = segment_index == layout.num_segments - 1
        try:
            return self._aead.decrypt(
                segment_nonce(segment_index),
                memoryview(buf)[: length + TAG_SIZE],
                segment_aad(self.storage_index, segment_index, is_last),
            )
        except InvalidTag:
            raise FileCorrupt(
                f"segment {segment_index} does not decrypt although its blocks verified"
            ) from None


ShareReader = Callable[[int, int], Buffer]
"""read(offset, length) of one share; must be safe to call from several threads."""


def load_metadata(verifier: ShareVerifier, shnum: int, read: ShareReader) -> None:
    """Read header and metadata of one share through `read` and load them (ShareCorrupt)."""
    header = read(0, HEADER_SIZE)
    try:
        layout, _ = parse_header(header)
    except HeaderError as error:
        raise ShareCorrupt(shnum, str(error)) from None
    verifier.load_share_metadata(shnum, header, read(layout.metadata_offset, layout.metadata_size))


class DecodeStream:
    """Plaintext chunks of a byte range, in order, falling back to other shares on corruption.

    `.corrupt_shares` maps each share that failed to the reason, `.used_shares` lists
    shares whose blocks went into the output.
    """

    def __init__(
        self,
        cap: ReadCap,
        readers: Mapping[int, ShareReader],
        *,
        offset: int = 0,
        length: int | None = None,
        workers: int = 2,
        window: int | None = None,
    ) -> None:
        self.decoder = Decoder(cap)
        self.corrupt_shares: dict[int, str] = {}
        self.used_shares: set[int] = set()
        self._readers = dict(readers)
        self._lock = threading.Lock()
        self._workers = max(1, workers)
        self._window = window or 2 * self._workers
        for shnum in sorted(self._readers):
            try:
                load_metadata(self.decoder, shnum, self._readers[shnum])
            except ShareCorrupt as error:
                self._mark_corrupt(error)
        if not self.decoder.loaded_shares:
            raise NotEnoughShares(
                f"no usable share among {sorted(self._readers)}: {self.corrupt_shares}"
            )
        self.decoder.choose_shares(self.decoder.loaded_shares)  # NotEnoughShares if < k
        size = self.decoder.plaintext_size
        self.offset = min(offset, size)
        self.length = size - self.offset if length is None else min(length, size - self.offset)
        self.segments = self.decoder.segments_for_range(self.offset, self.length)

    def _mark_corrupt(self, error: ShareCorrupt) -> None:
        logger.warning("%s", error)
        with self._lock:
            self.corrupt_shares.setdefault(error.shnum, error.reason)

    def _good_shares(self) -> set[int]:
        with self._lock:
            return set(self.decoder.loaded_shares) - set(self.corrupt_shares)

    def decode_segment(self, segment_index: int) -> bytes:
        """One segment's plaintext, retrying with other shares until k good blocks are found."""
        layout = self.decoder.layout
        block_offset, block_length = layout.block_range(segment_index)
        while True:
            chosen = self.decoder.choose_shares(self._good_shares())
            blocks = {s: self._readers[s](block_offset, block_length) for s in chosen}
            try:
                plain = self.decoder.decode_segment(segment_index, blocks)
            except ShareCorrupt as error:
                self._mark_corrupt(error)
                continue
            with self._lock:
                self.used_shares.update(chosen)
            return plain

    def _trim(self, segment_index: int, plain: bytes) -> bytes | memoryview:
        seg_start = segment_index * self.decoder.params.segment_size
        start = max(self.offset - seg_start, 0)
        end = min(self.offset + self.length - seg_start, len(plain))
        if start == 0 and end == len(plain):
            return plain
        return memoryview(plain)[start:end]

    def __iter__(self) -> Iterator[bytes | memoryview]:
        if self._workers == 1:
            for index in self.segments:
                yield self._trim(index, self.decode_segment(index))
            return
        pending: deque[tuple[int, Future[bytes]]] = deque()
        with ThreadPoolExecutor(self._workers, thread_name_prefix="pc-decode") as pool:
            try:
                for index in self.segments:
                    if len(pending) >= self._window:
                        done_index, future = pending.popleft()
                        yield self._trim(done_index, future.result())
                    pending.append((index, pool.submit(self.decode_segment, index)))
                while pending:
                    done_index, future = pending.popleft()
                    yield self._trim(done_index, future.result())
            finally:
                for _, future in pending:
                    future.cancel()


def decode_stream(
    cap: ReadCap,
    readers: Mapping[int, ShareReader],
    *,
    offset: int = 0,
    length: int | None = None,
    workers: int = 2,
    window: int | None = None,
) -> DecodeStream:
    return DecodeStream(cap, readers, offset=offset, length=length, workers=workers, window=window)


def memory_reader(share: bytes | bytearray) -> ShareReader:
    """A ShareReader over an in-memory share; short reads past the end like a file."""
    view = memoryview(share)

    def read(offset: int, length: int) -> memoryview:
        return view[offset : offset + length]

    return read
