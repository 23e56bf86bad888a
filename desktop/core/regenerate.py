"""Rebuilding lost shares from k good ones, without the file key (a verify cap is enough).

Share blocks are zfec codewords of the encrypted segment, so the repairer decodes k verified
blocks back to the k primary blocks and re-encodes only the share numbers it needs. Each new
share gets the same header, share roots and encrypted manifest as every other share; its own
block hash tree is built from the regenerated blocks and must hash to the root the cap already
commits to, so a bug here can never seal a share that readers would accept as different data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import zfec

from desktop.core.decoder import ShareVerifier
from desktop.core.errors import NotEnoughShares, ParamsError, ShareCorrupt
from desktop.core.hashing import HASH_SIZE, block_hash, build_tree, tree_root

Buffer = bytes | bytearray | memoryview


class ShareRegenerator:
    """Regenerates blocks of `shnums` segment by segment; `metadata(shnum)` completes a share.

    `verifier` must have loaded the metadata of the source shares (it checks every source
    block); `source_metadata` is the metadata of any one of them (all share it but the tree).
    """

    def __init__(self, verifier: ShareVerifier, source_metadata: Buffer, shnums: Iterable[int]):
        layout = verifier.layout
        self.verifier = verifier
        self.layout = layout
        self.k = layout.params.k
        self.total = layout.params.n
        self.shnums = sorted(set(shnums))
        if any(not 0 <= s < self.total for s in self.shnums):
            raise ParamsError(f"share numbers must be in 0..{self.total - 1}, got {self.shnums}")
        meta = bytes(source_metadata)
        if len(meta) != layout.metadata_size:
            raise ParamsError("source metadata has the wrong size")
        base = layout.metadata_offset
        self._roots = meta[: layout.tree_offset - base]
        self._manifest_ct = meta[layout.manifest_offset - base :]
        self._decoder = zfec.Decoder(self.k, self.total)
        self._encoder = zfec.Encoder(self.k, self.total)
        self._leaves = {s: bytearray(layout.num_segments * HASH_SIZE) for s in self.shnums}

    def regenerate(self, segment_index: int, blocks: Mapping[int, Buffer]) -> dict[int, bytes]:
        """Blocks of the wanted shares for one segment, from >= k source blocks (verified)."""
        if len(blocks) < self.k:
            raise NotEnoughShares(f"segment {segment_index} needs {self.k} blocks")
        chosen = sorted(blocks)[: self.k]
        for shnum in chosen:
            self.verifier.verify_block(shnum, segment_index, blocks[shnum])
        if chosen == list(range(self.k)):
            primaries = [bytes(blocks[s]) for s in chosen]
        else:
            decoded = self._decoder.decode([bytes(blocks[s]) for s in chosen], chosen)
            primaries = [bytes(b) for b in decoded]
        out: dict[int, bytes] = {s: primaries[s] for s in self.shnums if s < self.k}
        parity = [s for s in self.shnums if s >= self.k]
        if parity:
            for shnum, block in zip(parity, self._encoder.encode(primaries, parity), strict=True):
                out[shnum] = bytes(block)
        for shnum, block in out.items():
            at = segment_index * HASH_SIZE
            self._leaves[shnum][at : at + HASH_SIZE] = block_hash(shnum, segment_index, block)
        return out

    def header(self, shnum: int) -> bytes:
        return self.layout.header(shnum)

    def metadata(self, shnum: int) -> bytes:
        """Roots + this share's tree + manifest; ShareCorrupt if the blocks do not match the cap."""
        tree = build_tree(self._leaves[shnum], self.layout.num_segments)
        expected = self._roots[shnum * HASH_SIZE : (shnum + 1) * HASH_SIZE]
        if tree_root(tree) != expected:
            raise ShareCorrupt(shnum, "regenerated blocks do not match the cap's share root")
        return self._roots + tree + self._manifest_ct
