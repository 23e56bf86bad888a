"""Upload tracker and download planner decisions, without sockets."""

from __future__ import annotations

import pytest

from desktop.client.download_plan import DownloadPlanner
from desktop.client.upload_plan import NotEnoughNodes, ShareState, UploadTracker
from desktop.core.errors import NotEnoughShares

NODES = [f"node{i:02d}" for i in range(14)]


def tracker(nodes: int = 14, total: int = 12, target: int = 10, happy: int = 7) -> UploadTracker:
    return UploadTracker(NODES[:nodes], total=total, target=target, happy=happy, reachable=nodes)


def test_initial_assignment_is_one_share_per_node_in_order() -> None:
    plan = tracker()
    assert plan.initial() == {s: NODES[s] for s in range(12)}
    assert len(set(plan.initial().values())) == 12


def test_too_few_nodes_is_a_clear_error() -> None:
    with pytest.raises(NotEnoughNodes, match="need 7, reachable 5"):
        tracker(nodes=5)


def test_fewer_nodes_than_shares_leaves_the_rest_unplaced() -> None:
    plan = tracker(nodes=8)
    assert len(plan.initial()) == 8
    assert plan.count(ShareState.UNPLACED) == 4


def test_spares_absorb_failures_before_any_replacement() -> None:
    plan = tracker()
    assert plan.on_failed(0, "down") is None  # 11 alive >= 10
    assert plan.on_failed(1, "quota") is None  # 10 alive
    replacement = plan.on_failed(2, "down")  # 9 alive: needs another node
    assert replacement is not None and replacement.shnum == 2
    assert replacement.node_id == "node12"
    assert plan.slots[2].node_id == "node12" and plan.slots[2].attempts == 2
    assert set(plan.bad_nodes) == {"node00", "node01", "node02"}


def test_replacement_skips_bad_and_used_nodes_and_gives_up_when_none_left() -> None:
    plan = tracker(nodes=13, total=12, target=12, happy=7)
    first = plan.on_failed(5, "down")
    assert first is not None and first.node_id == "node12"
    assert plan.on_failed(5, "down again") is None  # node05 and node12 are bad, none left
    assert plan.slots[5].state is ShareState.FAILED


def test_lagging_share_may_be_dropped_only_while_slack_remains() -> None:
    plan = tracker()
    assert plan.may_drop(3)
    plan.on_dropped(3, "slow")
    assert plan.may_drop(4)
    plan.on_dropped(4, "slow")
    assert not plan.may_drop(5)  # 10 alive == target: no slack left


def test_reaching_target_cancels_the_rest_and_counts_as_success() -> None:
    plan = tracker()
    cancel: list[int] = []
    for shnum in range(10):
        cancel = plan.on_sealed(shnum)
    assert cancel == [10, 11]
    for shnum in cancel:
        plan.on_dropped(shnum, "not needed")
    assert plan.finished and plan.outcome_error() is None
    assert plan.placements() == {s: NODES[s] for s in range(10)}


def test_below_happy_is_an_error_naming_nodes() -> None:
    plan = tracker(nodes=8)
    for shnum in range(6):
        plan.on_sealed(shnum)
    plan.on_failed(6, "quota exceeded")
    plan.on_failed(7, "down")
    assert plan.finished
    error = plan.outcome_error()
    assert error is not None
    assert "need 7, only 6 stored a share" in str(error) and "node06" in str(error)


def test_happy_above_n_is_refused() -> None:
    with pytest.raises(NotEnoughNodes):
        tracker(target=5, happy=7)


def planner() -> DownloadPlanner:
    plan = DownloadPlanner(3, latency={"fast": 0.01, "mid": 0.1, "slow": 1.0, "p0": 0.5})
    plan.add_locations("p0", [0])
    plan.add_locations("p1", [1])
    plan.add_locations("p2", [2])
    plan.add_locations("fast", [7])
    plan.add_locations("mid", [5])
    plan.add_locations("slow", [9])
    return plan


def test_primaries_are_preferred_even_on_slower_nodes() -> None:
    assert planner().choose() == {0: "p0", 1: "p1", 2: "p2"}


def test_a_failed_node_is_replaced_by_the_fastest_other() -> None:
    plan = planner()
    plan.node_failed("p1", "timed out")
    assert plan.choose() == {0: "p0", 2: "p2", 7: "fast"}
    assert plan.spare({0: "p0", 2: "p2", 7: "fast"}) == (5, "mid")


def test_a_corrupt_share_is_dropped_on_that_node_only() -> None:
    plan = planner()
    plan.add_location(0, "mid")
    plan.share_failed(0, "p0", "block 3 fails its hash check")
    assert plan.choose()[0] == "mid"


def test_not_enough_shares_names_the_culprits() -> None:
    plan = planner()
    for node in ("p0", "p1", "fast", "mid"):
        plan.node_failed(node, "unreachable")
    plan.share_failed(9, "slow", "truncated")
    with pytest.raises(NotEnoughShares, match="need 3 good shares, found 1") as info:
        plan.choose()
    assert "fast" in str(info.value) and "truncated" in str(info.value)


def test_distinct_nodes_preferred_but_one_node_with_two_shares_still_serves() -> None:
    plan = DownloadPlanner(2)
    plan.add_locations("a", [0, 1])
    plan.add_locations("b", [4])
    assert plan.choose() == {0: "a", 4: "b"}
    plan.node_failed("b", "down")
    assert plan.choose() == {0: "a", 1: "a"}
