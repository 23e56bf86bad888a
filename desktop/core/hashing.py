"""Domain-separated BLAKE3 hashes and the per-share block hash tree.

Every use gets its own key derived from a context string, so a hash made for one purpose can
never be passed off as another (a leaf as an inner node, a block of share 1 as one of share 2).
The tree is stored whole in each share (level order, root first) so a node can later answer an
audit with one block and its sibling path without rehashing the share.
"""

from __future__ import annotations

import struct

import blake3

HASH_SIZE = 32
_CONTEXT_PREFIX = "PermaCloud v1 2025-01 "


def purpose_key(purpose: str) -> bytes:
    """32-byte key for keyed BLAKE3, unique to `purpose`."""
    return bytes(blake3.blake3(derive_key_context=_CONTEXT_PREFIX + purpose).digest())


def derive_key(purpose: str, material: bytes, length: int = HASH_SIZE) -> bytes:
    """Key derivation (BLAKE3 derive_key mode) of `material` for one purpose."""
    return bytes(
        blake3.blake3(material, derive_key_context=_CONTEXT_PREFIX + purpose).digest(length)
    )


_LEAF_KEY = purpose_key("block leaf")
_NODE_KEY = purpose_key("tree node")
_LEAF_PREFIX = struct.Struct(">HQ")
EMPTY_LEAF = bytes(HASH_SIZE)


def block_hash(shnum: int, segment_index: int, block: bytes | bytearray | memoryview) -> bytes:
    """Leaf hash of one block, bound to its share number and segment index."""
    hasher = blake3.blake3(_LEAF_PREFIX.pack(shnum, segment_index), key=_LEAF_KEY)
    hasher.update(block)
    return bytes(hasher.digest())


def _node(left: bytes | memoryview, right: bytes | memoryview) -> bytes:
    hasher = blake3.blake3(left, key=_NODE_KEY)
    hasher.update(right)
    return bytes(hasher.digest())


def leaf_capacity(num_leaves: int) -> int:
    """Leaves of the complete binary tree holding `num_leaves` (next power of two)."""
    return 1 << max(0, num_leaves - 1).bit_length()


def tree_size(num_leaves: int) -> int:
    """Bytes of a stored tree over `num_leaves` leaves."""
    return (2 * leaf_capacity(num_leaves) - 1) * HASH_SIZE


def build_tree(leaves: bytes | bytearray | memoryview, num_leaves: int) -> bytes:
    """Whole tree in level order (root first) from concatenated leaf hashes."""
    capacity = leaf_capacity(num_leaves)
    nodes = bytearray(tree_size(num_leaves))
    first_leaf = (capacity - 1) * HASH_SIZE
    nodes[first_leaf : first_leaf + num_leaves * HASH_SIZE] = leaves[: num_leaves * HASH_SIZE]
    view = memoryview(nodes)
    for i in range(capacity - 2, -1, -1):
        left = (2 * i + 1) * HASH_SIZE
        view[i * HASH_SIZE : (i + 1) * HASH_SIZE] = _node(
            view[left : left + HASH_SIZE], view[left + HASH_SIZE : left + 2 * HASH_SIZE]
        )
    return bytes(nodes)


def check_tree(tree: bytes | memoryview, num_leaves: int) -> str | None:
    """None if every inner node matches its children and padding leaves are empty, else why not."""
    capacity = leaf_capacity(num_leaves)
    if len(tree) != tree_size(num_leaves):
        return f"hash tree has {len(tree)} bytes, expected {tree_size(num_leaves)}"
    view = memoryview(tree)
    for leaf in range(num_leaves, capacity):
        pos = (capacity - 1 + leaf) * HASH_SIZE
        if view[pos : pos + HASH_SIZE] != EMPTY_LEAF:
            return f"padding leaf {leaf} of the hash tree is not empty"
    for i in range(capacity - 1):
        left = (2 * i + 1) * HASH_SIZE
        expected = _node(
            view[left : left + HASH_SIZE], view[left + HASH_SIZE : left + 2 * HASH_SIZE]
        )
        if view[i * HASH_SIZE : (i + 1) * HASH_SIZE] != expected:
            return f"hash tree node {i} does not match its children"
    return None


def tree_root(tree: bytes | memoryview) -> bytes:
    return bytes(tree[:HASH_SIZE])


def tree_leaf(tree: bytes | memoryview, num_leaves: int, index: int) -> bytes:
    pos = (leaf_capacity(num_leaves) - 1 + index) * HASH_SIZE
    return bytes(tree[pos : pos + HASH_SIZE])


def tree_proof(tree: bytes | memoryview, num_leaves: int, index: int) -> list[bytes]:
    """Sibling hashes from leaf `index` up to the root (for audits)."""
    node = leaf_capacity(num_leaves) - 1 + index
    proof = []
    while node > 0:
        sibling = node + 1 if node % 2 else node - 1
        proof.append(bytes(tree[sibling * HASH_SIZE : (sibling + 1) * HASH_SIZE]))
        node = (node - 1) // 2
    return proof


def verify_proof(root: bytes, num_leaves: int, index: int, leaf: bytes, proof: list[bytes]) -> bool:
    """True if `leaf` at `index` with sibling path `proof` hashes up to `root`."""
    node = leaf_capacity(num_leaves) - 1 + index
    if not 0 <= index < num_leaves or len(proof) != (node + 1).bit_length() - 1:
        return False
    current = leaf
    for sibling in proof:
        current = _node(current, sibling) if node % 2 else _node(sibling, current)
        node = (node - 1) // 2
    return current == root


_ROOTS_KEY = purpose_key("roots hash")
_MANIFEST_KEY = purpose_key("manifest ciphertext")


def roots_hash(
    packed_params: bytes, plaintext_size: int, share_roots: bytes, manifest_ciphertext: bytes
) -> bytes:
    """What caps commit to: parameters, size, every share's tree root and the manifest."""
    hasher = blake3.blake3(packed_params + plaintext_size.to_bytes(8, "big"), key=_ROOTS_KEY)
    hasher.update(share_roots)
    hasher.update(blake3.blake3(manifest_ciphertext, key=_MANIFEST_KEY).digest())
    return bytes(hasher.digest())
