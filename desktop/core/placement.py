"""Where a file's shares go: weighted rendezvous hashing of the storage index over known nodes.

Every device computes the same order from the same node list, so a reader finds shares by asking
nodes in that order, and adding or removing a node moves only the shares it wins or held.
Weights (free space, later reputation) bias the order; groups (a household, a network) are
spread so that one house fire or one ISP outage cannot take more than its share of a file.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import blake3

_SCORE_CONTEXT = "permacloud 2026 placement score v1"
_TWO_64 = float(1 << 64)


@dataclass(frozen=True)
class Candidate:
    """A node that may receive shares; `weight` > 0, `group` is its household or network.

    `vetted` is False for a node that has not yet passed enough audits (see
    `core.reputation`): such nodes get at most `max_unvetted` shares of a file."""

    node_id: str
    weight: float = 1.0
    group: str = ""
    vetted: bool = True


def weight_for(free_bytes: int, reputation: float = 1.0) -> float:
    """Weight grows with free space but slowly (log), so one huge disk cannot win every share."""
    free_gib = max(free_bytes, 0) / (1 << 30)
    return max(reputation, 0.0) * math.log2(2.0 + free_gib)


def score(storage_index: bytes, candidate: Candidate) -> float:
    """Weighted HRW score: -w / ln(u) with u uniform in (0, 1) from hash(SI, node)."""
    if candidate.weight <= 0:
        return -math.inf
    hasher = blake3.blake3(derive_key_context=_SCORE_CONTEXT)
    hasher.update(storage_index)
    hasher.update(candidate.node_id.encode())
    value = int.from_bytes(hasher.digest(8), "big")
    uniform = (value + 0.5) / _TWO_64
    return -candidate.weight / math.log(uniform)


def rendezvous_order(storage_index: bytes, candidates: Iterable[Candidate]) -> list[Candidate]:
    """All distinct candidates, best first; ties broken by node ID so the order is total."""
    unique = {c.node_id: c for c in candidates}
    return sorted(
        unique.values(),
        key=lambda c: (-score(storage_index, c), c.node_id),
    )


DEFAULT_MAX_UNVETTED = 2


def choose_nodes(
    storage_index: bytes,
    candidates: Iterable[Candidate],
    count: int,
    *,
    exclude: Iterable[str] = (),
    max_unvetted: int = DEFAULT_MAX_UNVETTED,
) -> list[Candidate]:
    """Up to `count` distinct nodes in rendezvous order, spreading evenly across groups.

    A node never appears twice (one share per device). Groups are filled level by level: every
    group gets its first node before any group gets a second, always in rendezvous order.
    Unvetted nodes beyond the first `max_unvetted` come only after every vetted node (they are
    not dropped: when vetted nodes run out, new nodes still take shares rather than failing the
    upload). When no candidate is vetted yet (a new network) plain rendezvous order applies.
    """
    excluded = set(exclude)
    ordered = [c for c in rendezvous_order(storage_index, candidates) if c.node_id not in excluded]
    ordered = [c for c in ordered if c.weight > 0]
    if all(c.vetted for c in ordered) or not any(c.vetted for c in ordered):
        return _spread(ordered, count, Counter())
    unvetted = [c.node_id for c in ordered if not c.vetted]
    admitted = set(unvetted[: max(max_unvetted, 0)])
    preferred = [c for c in ordered if c.vetted or c.node_id in admitted]
    deferred = [c for c in ordered if not c.vetted and c.node_id not in admitted]
    per_group: Counter[str] = Counter()
    chosen = _spread(preferred, count, per_group)
    return chosen + _spread(deferred, count - len(chosen), per_group)


def _spread(ordered: list[Candidate], count: int, per_group: Counter[str]) -> list[Candidate]:
    """Level-by-level group filling; `per_group` counts nodes already taken per group."""
    chosen: list[Candidate] = []
    taken: set[str] = set()
    level = min((per_group[c.group] for c in ordered), default=0)
    while len(chosen) < count and len(taken) < len(ordered):
        for candidate in ordered:
            if len(chosen) >= count:
                break
            if candidate.node_id in taken or per_group[candidate.group] != level:
                continue
            chosen.append(candidate)
            taken.add(candidate.node_id)
            per_group[candidate.group] += 1
        level += 1
    return chosen
