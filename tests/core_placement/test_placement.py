"""Placement by weighted rendezvous hashing: deterministic, distinct, spread, stable."""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from desktop.core.placement import Candidate, choose_nodes, rendezvous_order, weight_for


def _nodes(count: int, groups: int = 1) -> list[Candidate]:
    return [Candidate(f"node{i:03d}", 1.0, f"house{i % groups}") for i in range(count)]


@given(st.binary(min_size=16, max_size=16), st.integers(1, 30), st.integers(1, 40))
def test_choice_is_distinct_deterministic_and_bounded(si: bytes, nodes: int, count: int) -> None:
    candidates = _nodes(nodes)
    chosen = choose_nodes(si, candidates, count)
    assert len(chosen) == min(nodes, count)
    assert len({c.node_id for c in chosen}) == len(chosen)
    assert chosen == choose_nodes(si, list(reversed(candidates)), count)


def test_groups_are_filled_evenly() -> None:
    candidates = _nodes(30, groups=3)
    for seed in range(50):
        si = seed.to_bytes(16, "big")
        per_group = Counter(c.group for c in choose_nodes(si, candidates, 10))
        assert sorted(per_group.values()) in ([3, 3, 4],)


def test_removing_a_node_only_moves_its_own_shares() -> None:
    candidates = _nodes(20)
    moved = 0
    for seed in range(200):
        si = os.urandom(16)
        before = choose_nodes(si, candidates, 10)
        gone = candidates[seed % 20]
        after = choose_nodes(si, [c for c in candidates if c != gone], 10)
        kept_before = [c for c in before if c != gone]
        assert after[: len(kept_before)] == kept_before
        moved += len(before) != len(kept_before)
    assert moved > 0


def test_weight_biases_the_choice() -> None:
    heavy = Candidate("heavy", 4.0)
    light = [Candidate(f"light{i}", 1.0) for i in range(9)]
    wins: Counter[str] = Counter()
    for seed in range(2000):
        first = rendezvous_order(seed.to_bytes(16, "big"), [heavy, *light])[0]
        wins[first.node_id] += 1
    # Expected share of first places for weight 4 among total 13 is 4/13 (about 615 of 2000).
    assert 450 < wins["heavy"] < 800


def test_zero_weight_and_excluded_nodes_get_nothing() -> None:
    candidates = [*_nodes(5), Candidate("full", 0.0)]
    chosen = choose_nodes(b"\x01" * 16, candidates, 10, exclude={"node000"})
    ids = {c.node_id for c in chosen}
    assert "full" not in ids and "node000" not in ids
    assert len(ids) == 4


def test_weight_grows_slowly_with_free_space() -> None:
    assert weight_for(0) == 1.0
    assert weight_for(1 << 40) < 12 * weight_for(1 << 30)
    assert weight_for(1 << 30, reputation=0.0) == 0.0
