"""Storage audits, sans-I/O: which blocks to challenge, what a node answers, and its check.

A challenger (the daemon of the account that placed the shares) picks a share the node should
hold and a random 40-bit challenge number; the node answers for segment `challenge mod
num_segments` with one *proof*: the share's header, the roots list, the encrypted manifest, the
block's sibling path in the share's hash tree and the block itself. The challenger needs only
the file's cap (its roots hash): the header, roots and manifest must hash to the cap's roots
hash, the block's leaf hash and path must climb to this share's root in that list.

Why a dedicated answer instead of ranged reads of the share (which holds the tree): a ranged
read carries one range, so checking one block from plain reads costs either the whole tree
(64 bytes per segment: 8 MiB for a 256 GiB file, per challenged block) or one request per tree
level. The proof is one request of O(n + log segments) hashes plus the block, and the node does
no hashing at all (it copies stored bytes), so answering costs it only the reads.

The node learns the segment only from the challenge, which it cannot predict (the challenger
draws it from the OS's random source), so a node keeping a fraction f of a share's blocks passes
one challenged block with probability f and a challenge of c blocks with f**c.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from desktop.core.caps import VerifyCap
from desktop.core.errors import PermaCloudError
from desktop.core.hashing import (
    HASH_SIZE,
    block_hash,
    leaf_capacity,
    roots_hash,
    verify_proof,
)
from desktop.core.layout import HEADER_SIZE, HeaderError, ShareLayout, parse_header

CHALLENGE_LIMIT = 10**12  # the protocol's decimal path numbers have at most 12 digits
BLOCKS_PER_CHALLENGE = 4


class AuditFailed(PermaCloudError):
    """A node's answer to an audit is wrong; the message says how."""


@dataclass(frozen=True)
class AuditItem:
    """One block to challenge: `holding` indexes the challenger's list of (cap, shnum)."""

    holding: int
    challenge: int


def choose_items(holdings: int, blocks: int, rng: random.Random) -> list[AuditItem]:
    """`blocks` random (share, challenge) pairs over a node's `holdings` shares.

    Shares are drawn with replacement, so a node that dropped whole shares is caught at the same
    rate as one that dropped the same fraction of blocks. Pass a `random.SystemRandom` in
    production: a node that could predict the challenge could keep just those blocks.
    """
    if holdings <= 0 or blocks <= 0:
        return []
    return [
        AuditItem(rng.randrange(holdings), rng.randrange(CHALLENGE_LIMIT)) for _ in range(blocks)
    ]


def pass_probability(kept_fraction: float, blocks: int, challenges: int = 1) -> float:
    """Chance that a node keeping `kept_fraction` of the blocks (chosen by it, unknown to us)
    passes `challenges` audits of `blocks` blocks each: every block must be one it kept."""
    kept = min(max(kept_fraction, 0.0), 1.0)
    return float(kept ** (blocks * challenges))


def tree_depth(num_segments: int) -> int:
    """Sibling hashes on a leaf's path to the root."""
    return leaf_capacity(num_segments).bit_length() - 1


def challenged_segment(layout: ShareLayout, challenge: int) -> int:
    return challenge % layout.num_segments


def proof_ranges(layout: ShareLayout, shnum: int, challenge: int) -> list[tuple[int, int]]:
    """(offset, length) of the share bytes a node sends, in order, to answer `challenge`.

    Header, roots list, encrypted manifest, the sibling hashes leaf to root, then the block.
    """
    segment = challenged_segment(layout, challenge)
    ranges = [
        (0, HEADER_SIZE),
        (layout.roots_offset, layout.params.n * HASH_SIZE),
        (layout.manifest_offset, layout.manifest_size),
    ]
    node = leaf_capacity(layout.num_segments) - 1 + segment
    while node > 0:
        sibling = node + 1 if node % 2 else node - 1
        ranges.append((layout.tree_offset + sibling * HASH_SIZE, HASH_SIZE))
        node = (node - 1) // 2
    ranges.append(layout.block_range(segment))
    return ranges


def proof_size(layout: ShareLayout, shnum: int, challenge: int) -> int:
    return sum(length for _, length in proof_ranges(layout, shnum, challenge))


def layout_of_share(header: bytes | bytearray | memoryview) -> tuple[ShareLayout, int]:
    """Node side: the layout from a stored share's first bytes; AuditFailed if unreadable."""
    try:
        return parse_header(header)
    except HeaderError as error:
        raise AuditFailed(f"stored share is not a PermaCloud share: {error}") from None


def verify_answer(cap: VerifyCap, shnum: int, challenge: int, answer: bytes) -> int:
    """Check a node's proof for (cap, shnum, challenge); the segment proven, or AuditFailed."""
    if len(answer) < HEADER_SIZE:
        raise AuditFailed(f"answer is {len(answer)} bytes, shorter than a share header")
    try:
        layout, header_shnum = parse_header(answer[:HEADER_SIZE])
    except HeaderError as error:
        raise AuditFailed(f"bad share header: {error}") from None
    if header_shnum != shnum:
        raise AuditFailed(f"answered for share {header_shnum}, asked for share {shnum}")
    ranges = proof_ranges(layout, shnum, challenge)
    expected = sum(length for _, length in ranges)
    if len(answer) != expected:
        raise AuditFailed(f"answer is {len(answer)} bytes, a proof here is {expected}")
    parts = _split(answer, [length for _, length in ranges])
    _, roots, manifest_ct = parts[0], parts[1], parts[2]
    path, block = parts[3:-1], parts[-1]
    if roots_hash(layout.params.pack(), layout.plaintext_size, roots, manifest_ct) != (
        cap.roots_hash
    ):
        raise AuditFailed("header, roots or manifest do not match the cap")
    segment = challenged_segment(layout, challenge)
    root = roots[shnum * HASH_SIZE : (shnum + 1) * HASH_SIZE]
    leaf = block_hash(shnum, segment, block)
    if not verify_proof(root, layout.num_segments, segment, leaf, list(path)):
        raise AuditFailed(f"block {segment} of share {shnum} does not match its hash tree")
    return segment


def _split(data: bytes, lengths: Sequence[int]) -> list[bytes]:
    parts, position = [], 0
    for length in lengths:
        parts.append(data[position : position + length])
        position += length
    return parts
