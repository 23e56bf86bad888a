"""Pure tests of the repair policy: thresholds, share numbers to regenerate, target choice."""

from __future__ import annotations

import pytest

from desktop.core.errors import ParamsError
from desktop.core.placement import Candidate, choose_nodes
from desktop.core.repair_policy import (
    RepairPolicy,
    choose_repair_targets,
    default_threshold,
    healthy_count,
)

SI = bytes(range(16))


def test_default_threshold_is_halfway_between_k_and_n() -> None:
    assert default_threshold(3, 10) == 7
    assert default_threshold(2, 4) == 3
    policy = RepairPolicy.for_cap(3, 10, total=12)
    assert (policy.k, policy.n, policy.threshold, policy.total) == (3, 10, 7, 12)
    assert RepairPolicy.for_cap(1, 1).threshold == 1


def test_needs_repair_and_is_lost() -> None:
    policy = RepairPolicy.for_cap(3, 10, threshold=8)
    assert [policy.needs_repair(h) for h in (10, 8, 7, 3, 2)] == [False, False, True, True, True]
    assert [policy.is_lost(h) for h in (3, 2, 0)] == [False, True, True]


@pytest.mark.parametrize(
    ("k", "n", "threshold", "total"),
    [(3, 10, 3, 12), (3, 10, 11, 12), (0, 10, 5, 12), (3, 10, 7, 9), (3, 2, 3, 3)],
)
def test_bad_policies_are_refused(k: int, n: int, threshold: int, total: int) -> None:
    with pytest.raises(ParamsError):
        RepairPolicy(k=k, n=n, threshold=threshold, total=total)


def test_shares_to_add_prefers_unheld_numbers_then_doubles() -> None:
    policy = RepairPolicy.for_cap(3, 10, total=12)
    held = {0: "a", 1: "b", 2: "c", 3: "d", 4: "e", 5: "f"}
    assert policy.shares_to_add(held) == [6, 7, 8, 9]
    # Two shares on one node count once; the second may be moved to another node.
    held = {0: "a", 1: "a", 2: "a"}
    assert healthy_count(held) == 1
    wanted = policy.shares_to_add(held)
    assert len(wanted) == 9 and wanted[:9] == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    small = RepairPolicy.for_cap(2, 4, total=4)
    assert small.shares_to_add({0: "a", 1: "a", 2: "a"}) == [3, 1, 2]


def test_nothing_to_add_when_healthy() -> None:
    policy = RepairPolicy.for_cap(3, 10, total=12)
    held = {i: f"node{i}" for i in range(11)}
    assert policy.shares_to_add(held) == []


def test_targets_follow_rendezvous_and_skip_holders_and_bad_nodes() -> None:
    candidates = [Candidate(f"node{i:02d}") for i in range(20)]
    holders = ["node00", "node01", "node02"]
    bad = {"node03"}
    targets = choose_repair_targets(SI, candidates, [7, 5, 6], holders=holders, exclude=bad)
    assert sorted(targets) == [5, 6, 7]
    assert len(set(targets.values())) == 3
    assert not set(targets.values()) & {*holders, *bad}
    # Each number takes the first free node of its own rendezvous order, lower numbers first.
    taken: set[str] = set()
    for shnum in (5, 6, 7):
        order = [c.node_id for c in choose_nodes(SI + shnum.to_bytes(2, "big"), candidates, 20)]
        first = next(n for n in order if n not in {*holders, *bad, *taken})
        assert targets[shnum] == first
        taken.add(first)
    # Deterministic whatever the candidate order (two devices pick the same nodes).
    again = choose_repair_targets(
        SI, list(reversed(candidates)), [6, 7, 5], holders=holders, exclude=bad
    )
    assert again == targets


def test_a_later_survey_sends_each_number_to_the_same_node() -> None:
    """Two devices repairing at once: the second surveys after the first already filled some
    numbers. What it still wants must go where the first device sends it (no extra shares)."""
    candidates = [Candidate(f"node{i:02d}") for i in range(20)]
    holders = {"node00", "node01", "node02", "node03", "node04", "node05"}
    first = choose_repair_targets(SI, candidates, [4, 6, 7, 9], holders=holders)
    for filled in ([4], [6], [4, 9], [6, 7], [4, 6, 7]):
        now_held = holders | {first[s] for s in filled}
        rest = [s for s in (4, 6, 7, 9) if s not in filled]
        later = choose_repair_targets(SI, candidates, rest, holders=now_held)
        assert later == {s: first[s] for s in rest}, filled


def test_targets_stop_when_nodes_run_out() -> None:
    candidates = [Candidate(f"n{i}", group=f"house{i % 2}") for i in range(4)]
    few = choose_repair_targets(SI, candidates, range(10), holders=["n0", "n1"])
    assert len(few) == 2 and set(few.values()) == {"n2", "n3"}


def test_sleeping_nodes_count_and_their_numbers_come_last() -> None:
    policy = RepairPolicy.for_cap(3, 10, total=12)
    online = {0: "a", 1: "b", 2: "c", 3: "d"}
    asleep = {4, 5}  # two laptops asleep within the grace period
    wanted = policy.shares_to_add(online, unseen=asleep)
    assert len(wanted) == 4  # 10 - 4 online - 2 asleep
    assert not set(wanted) & asleep and wanted == [6, 7, 8, 9]
    # Free numbers run out: a sleeper's number is regenerated before a node's second share.
    tight = RepairPolicy.for_cap(2, 5, threshold=5)
    assert tight.shares_to_add({0: "a", 1: "a"}, unseen={2}) == [3, 4, 2]
