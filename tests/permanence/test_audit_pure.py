"""Storage proofs without I/O: honest answers pass, lies of every kind fail, and a node keeping a
fraction of its blocks passes only as often as `pass_probability` says (seeded, so exact)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from permanence_kit import encode_in_memory

from desktop.agent.server import read_proof
from desktop.core.audit import (
    BLOCKS_PER_CHALLENGE,
    CHALLENGE_LIMIT,
    AuditFailed,
    challenged_segment,
    choose_items,
    pass_probability,
    proof_ranges,
    proof_size,
    tree_depth,
    verify_answer,
)
from desktop.core.caps import VerifyCap
from desktop.core.hashing import HASH_SIZE
from desktop.core.layout import ShareLayout, parse_header
from desktop.core.params import EncodingParams
from desktop.net.protocol import RequestError, Route, parse_target, share_path


def encode(data: bytes, params: EncodingParams) -> tuple[VerifyCap, list[bytearray]]:
    cap, shares = encode_in_memory(data, params)
    return cap.verify_cap(), shares


def answer_from(share: bytes | bytearray, shnum: int, challenge: int) -> bytes:
    """What an honest node sends: the bytes `proof_ranges` names, copied from its share."""
    layout, _ = parse_header(share[:64])
    return b"".join(bytes(share[o : o + n]) for o, n in proof_ranges(layout, shnum, challenge))


PARAMS = EncodingParams(3, 10, 4096)
DATA = os.urandom(4096 * 37 + 1000)  # 38 segments: a tree of 64 leaves, depth 6


@pytest.fixture(scope="module")
def encoded() -> tuple[VerifyCap, list[bytearray]]:
    return encode(DATA, PARAMS)


def test_honest_answers_pass_for_every_segment(encoded: tuple[VerifyCap, list[bytearray]]) -> None:
    cap, shares = encoded
    layout, _ = parse_header(shares[0][:64])
    assert layout.num_segments == 38 and tree_depth(38) == 6
    for shnum in (0, 4, 9):
        proven = {
            verify_answer(cap, shnum, c, answer_from(shares[shnum], shnum, c)) for c in range(38)
        }
        assert proven == set(range(38))
    big = CHALLENGE_LIMIT - 1
    assert verify_answer(cap, 2, big, answer_from(shares[2], 2, big)) == big % 38


def test_proof_is_small_and_log_sized(encoded: tuple[VerifyCap, list[bytearray]]) -> None:
    _, shares = encoded
    layout, _ = parse_header(shares[0][:64])
    overhead = proof_size(layout, 0, 5) - layout.block_length(5)
    assert overhead == 64 + 10 * HASH_SIZE + layout.manifest_size + 6 * HASH_SIZE
    huge = ShareLayout.for_file(EncodingParams(3, 10), 256 * 1024**3)  # 131072 segments
    assert proof_size(huge, 0, 7) - huge.block_length(7) < 2000  # the tree alone is 8 MiB
    assert huge.tree_size == 8 * 1024 * 1024 - HASH_SIZE


def test_single_segment_file(tmp_path: Path) -> None:
    cap, shares = encode(b"tiny file", PARAMS)
    for challenge in (0, 1, 123456789):
        assert verify_answer(cap, 1, challenge, answer_from(shares[1], 1, challenge)) == 0


@pytest.mark.parametrize(
    "lie",
    [
        "flipped block byte",
        "flipped path hash",
        "other share's answer",
        "other segment's block",
        "truncated",
        "random bytes",
        "empty",
        "other file",
    ],
)
def test_lies_fail(encoded: tuple[VerifyCap, list[bytearray]], lie: str) -> None:
    cap, shares = encoded
    honest = answer_from(shares[3], 3, 17)
    if lie == "flipped block byte":
        answer = honest[:-1] + bytes([honest[-1] ^ 1])
    elif lie == "flipped path hash":
        layout, _ = parse_header(shares[3][:64])
        at = 64 + 10 * HASH_SIZE + layout.manifest_size + 5
        answer = honest[:at] + bytes([honest[at] ^ 0x80]) + honest[at + 1 :]
    elif lie == "other share's answer":
        answer = answer_from(shares[4], 4, 17)
    elif lie == "other segment's block":
        answer = answer_from(shares[3], 3, 18)
    elif lie == "truncated":
        answer = honest[:-10]
    elif lie == "random bytes":
        answer = os.urandom(len(honest))
    elif lie == "empty":
        answer = b""
    else:
        _, other = encode(os.urandom(len(DATA)), PARAMS)
        answer = answer_from(other[3], 3, 17)
    with pytest.raises(AuditFailed):
        verify_answer(cap, 3, 17, answer)


def test_truncated_share_on_disk_fails(
    encoded: tuple[VerifyCap, list[bytearray]], tmp_path: Path
) -> None:
    """The node side reads the proof from its file: a share cut short cannot answer late
    segments, and a share overwritten with random bytes cannot answer at all."""
    cap, shares = encoded
    path = tmp_path / "data"
    path.write_bytes(bytes(shares[5]))
    assert verify_answer(cap, 5, 30, read_proof(path, 5, 30)) == 30
    path.write_bytes(bytes(shares[5][: len(shares[5]) // 2]))
    with pytest.raises(AuditFailed, match="shorter"):
        read_proof(path, 5, 30)
    path.write_bytes(os.urandom(len(shares[5])))
    with pytest.raises(AuditFailed, match="not a PermaCloud share"):
        read_proof(path, 5, 30)
    path.write_bytes(bytes(shares[5]))
    with pytest.raises(AuditFailed, match="says it is share 5"):
        read_proof(path, 6, 30)


def test_choose_items_uses_all_holdings_and_challenges() -> None:
    rng = random.Random(7)
    items = choose_items(3, 3000, rng)
    assert {i.holding for i in items} == {0, 1, 2}
    assert all(0 <= i.challenge < CHALLENGE_LIMIT for i in items)
    assert len({i.challenge for i in items}) == 3000
    assert choose_items(0, 4, rng) == [] and choose_items(5, 0, rng) == []


def test_node_keeping_half_the_blocks_is_caught(
    encoded: tuple[VerifyCap, list[bytearray]],
) -> None:
    """A node keeps a random half of every share's blocks (zeroing the rest, which keeps its
    proofs well-formed). One block passes with probability 1/2, a challenge of 4 with 1/16;
    three audits in a row pass with 1/4096. Measured over 2000 seeded challenges."""
    cap, shares = encoded
    layout, _ = parse_header(shares[0][:64])
    rng = random.Random(2024)
    cheat = [bytearray(s) for s in shares]
    kept: set[tuple[int, int]] = set()
    for shnum, share in enumerate(cheat):
        for segment in rng.sample(range(layout.num_segments), layout.num_segments // 2):
            kept.add((shnum, segment))
        for segment in range(layout.num_segments):
            if (shnum, segment) not in kept:
                offset, length = layout.block_range(segment)
                share[offset : offset + length] = bytes(length)
    fraction = len(kept) / (layout.num_segments * PARAMS.n)
    assert fraction == pytest.approx(0.5, abs=0.02)
    passes = 0
    challenges = 2000
    for _ in range(challenges):
        ok = True
        for item in choose_items(PARAMS.n, BLOCKS_PER_CHALLENGE, rng):
            try:
                verify_answer(
                    cap,
                    item.holding,
                    item.challenge,
                    answer_from(cheat[item.holding], item.holding, item.challenge),
                )
            except AuditFailed:
                ok = False
            else:
                assert (item.holding, challenged_segment(layout, item.challenge)) in kept
        passes += ok
    expected = pass_probability(fraction, BLOCKS_PER_CHALLENGE)
    assert expected == pytest.approx(1 / 16, rel=0.1)
    assert passes / challenges == pytest.approx(expected, abs=0.02)
    assert pass_probability(0.5, BLOCKS_PER_CHALLENGE, challenges=3) == 0.5**12
    assert pass_probability(0.9, BLOCKS_PER_CHALLENGE, challenges=10) < 0.015
    assert pass_probability(1.0, BLOCKS_PER_CHALLENGE) == 1.0


def test_proof_route() -> None:
    si = os.urandom(16)
    path = share_path(si, 3, "/proof/999999999999")
    assert parse_target("GET", path.encode()) == Route("proof", si, 3, 999999999999)
    with pytest.raises(RequestError) as refused:
        parse_target("POST", path.encode())
    assert refused.value.status == 405
    with pytest.raises(RequestError):
        parse_target("GET", share_path(si, 3, "/proof/1000000000000").encode())


def test_audit_budget_draws_few_nodes_weighted_to_suspects() -> None:
    from desktop.daemon.auditor import choose_audited

    nodes = [f"node-{i}" for i in range(10)]
    rng = random.Random(5)
    assert choose_audited(nodes, {}, 0, rng) == nodes  # 0: every node
    counts = {n: 0 for n in nodes}
    for _ in range(2000):
        picked = choose_audited(nodes, {"node-3": 4.0}, 2, rng)
        assert len(set(picked)) == 2
        for node in picked:
            counts[node] += 1
    assert counts["node-3"] > 2 * max(c for n, c in counts.items() if n != "node-3")
