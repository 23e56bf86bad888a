"""Reputation math (Beta scores with forgetting) and how placement uses it (vetting, exclusion)."""

from __future__ import annotations

import os

import pytest

from desktop.core.placement import Candidate, choose_nodes, rendezvous_order
from desktop.core.reputation import NodeReputation, ReputationParams


def audits(rep: NodeReputation, outcomes: str) -> NodeReputation:
    for outcome in outcomes:
        rep = rep.audited(outcome == "+")
    return rep


def test_new_node_is_trusted_but_unvetted() -> None:
    rep = NodeReputation()
    assert rep.audit_score == 1.0 and rep.uptime_score == 1.0
    assert not rep.vetted() and not rep.disqualified()
    assert audits(rep, "++").vetted() is False
    assert audits(rep, "+++").vetted() is True


def test_one_failure_disqualifies_a_new_node_but_not_a_proven_one() -> None:
    new = audits(NodeReputation(), "-")
    assert new.audit_score == pytest.approx(0.95 / 1.95)
    assert new.disqualified() and new.placement_weight() == 0.0
    proven = audits(NodeReputation(), "+" * 20)
    assert proven.audit_alpha == pytest.approx(0.95**20 + (1 - 0.95**20) / 0.05)
    assert audits(proven, "---").audit_score == pytest.approx(0.7986, abs=1e-3)
    assert not audits(proven, "-------").disqualified()
    assert audits(proven, "--------").disqualified()


def test_forgetting_lets_a_node_recover_and_a_liar_fall() -> None:
    rep = audits(NodeReputation(), "+" * 10 + "-" * 10)
    assert rep.disqualified()
    assert not audits(rep, "+" * 15).disqualified()
    half = audits(NodeReputation(), "+-" * 30)
    assert half.audit_score == pytest.approx(0.5, abs=0.05) and half.disqualified()
    assert half.audits_passed == 30 and half.audits_failed == 30


def test_uptime_and_latency() -> None:
    rep = NodeReputation().observed(True, 10.0).observed(True, 20.0)
    assert rep.latency_ms == pytest.approx(13.0)
    assert rep.reachable == 2 and rep.unreachable == 0
    for _ in range(50):
        rep = rep.observed(False)
    assert rep.latency_ms == pytest.approx(13.0)  # unreachable contacts carry no latency
    assert rep.uptime_score < 0.4 and not rep.disqualified()
    floor = ReputationParams().min_uptime_weight
    assert rep.placement_weight() == pytest.approx(max(rep.uptime_score, floor))
    params = ReputationParams(audit_forget=0.5, vetting_audits=1, disqualify_below=0.9)
    assert NodeReputation().audited(True, params).vetted(params)
    assert NodeReputation().audited(True, params).audited(False, params).disqualified(params)


def nodes(count: int, prefix: str, vetted: bool, group: str = "") -> list[Candidate]:
    return [Candidate(f"{prefix}{i:02d}", 1.0, group, vetted) for i in range(count)]


def test_unvetted_nodes_get_at_most_a_few_shares_per_file() -> None:
    candidates = nodes(12, "vet", True) + nodes(8, "new", False)
    counts = []
    for _ in range(200):
        si = os.urandom(16)
        chosen = choose_nodes(si, candidates, 12)
        assert len(chosen) == 12
        new = [c for c in chosen if not c.vetted]
        assert len(new) <= 2
        counts.append(len(new))
        order = [c.node_id for c in rendezvous_order(si, candidates) if not c.vetted]
        assert [c.node_id for c in new] == order[: len(new)]
    assert sum(counts) > 100  # new nodes do get their few shares (to be audited and vetted)
    si = os.urandom(16)
    assert len(choose_nodes(si, candidates, 12, max_unvetted=0)) == 12
    assert all(c.vetted for c in choose_nodes(si, candidates, 12, max_unvetted=0))


def test_unvetted_nodes_fill_in_when_vetted_ones_run_out() -> None:
    candidates = nodes(4, "vet", True) + nodes(8, "new", False)
    chosen = choose_nodes(os.urandom(16), candidates, 10)
    assert len(chosen) == 10
    assert {c.node_id for c in chosen[:6]} >= {c.node_id for c in candidates[:4]}


def test_all_new_network_and_all_vetted_network_keep_plain_rendezvous() -> None:
    si = os.urandom(16)
    for vetted in (True, False):
        candidates = nodes(10, "n", vetted, group="")
        plain = [c.node_id for c in rendezvous_order(si, candidates)]
        assert [c.node_id for c in choose_nodes(si, candidates, 10)] == plain


def test_vetting_keeps_group_spreading() -> None:
    candidates = nodes(6, "a", True, "house-a") + nodes(6, "b", False, "house-b")
    candidates += nodes(6, "c", True, "house-c")
    chosen = choose_nodes(os.urandom(16), candidates, 9)
    groups = [c.group for c in chosen]
    assert groups.count("house-b") == 2
    assert groups.count("house-a") + groups.count("house-c") == 7
    assert abs(groups.count("house-a") - groups.count("house-c")) <= 1


def test_reputation_weight_biases_and_zero_excludes() -> None:
    good = [Candidate(f"g{i}", 1.0) for i in range(5)]
    weak = [Candidate(f"w{i}", 0.05) for i in range(5)]
    bad = [Candidate(f"b{i}", 0.0) for i in range(5)]
    firsts = [choose_nodes(os.urandom(16), good + weak + bad, 1)[0] for _ in range(400)]
    assert not any(c.node_id.startswith("b") for c in firsts)
    assert sum(c.node_id.startswith("g") for c in firsts) > 300
