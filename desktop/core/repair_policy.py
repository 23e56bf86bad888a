"""When a file needs repair, which share numbers to regenerate, and which nodes get them.

Pure decisions (no I/O) so the checker, the repairer and the durability simulation
(`bench/durability.py`) all run the very same code.

Vocabulary:

* `k` -- shares needed to rebuild the file (the cap's `EncodingParams.k`).
* `n` -- the *target* number of distinct nodes holding a share (upload option `n`, default 10).
  The cap itself commits to `total = n + spare` share numbers (3-of-12 by default): the spares
  are long-tail insurance during upload and are cancelled once `n` are sealed, so a healthy file
  has `n` shares on `n` distinct nodes, not `total`.
* `healthy` -- distinct nodes holding a verified share. Two shares on one node count once: losing
  that node loses both, so the second one adds no durability.
* `threshold` -- repair when `healthy < threshold` (`k < threshold <= n`). Repairing at once on
  every lost share costs much traffic for shares that often come back (a laptop asleep); waiting
  until `k` risks the file. The default sits halfway between.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from desktop.core.errors import ParamsError
from desktop.core.placement import Candidate, choose_nodes


def default_threshold(k: int, n: int) -> int:
    """Halfway between k and n, rounded up: 3-of-10 repairs below 7 healthy nodes."""
    return k + math.ceil((n - k) / 2) if n > k else n


@dataclass(frozen=True)
class RepairPolicy:
    """Repair rules for one file: `k` to rebuild, `n` target nodes, repair below `threshold`.

    `total` is the number of share numbers the cap commits to (n + spare); share numbers are
    drawn from `range(total)`. It defaults to `n`.
    """

    k: int
    n: int
    threshold: int
    total: int = 0

    def __post_init__(self) -> None:
        for name in ("k", "n", "threshold", "total"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ParamsError(f"repair {name} must be an integer, got {value!r}")
        if self.total == 0:
            object.__setattr__(self, "total", self.n)
        if not 1 <= self.k <= self.n <= self.total:
            raise ParamsError(
                f"repair needs 1 <= k <= n <= total, got k={self.k} n={self.n} total={self.total}"
            )
        low = self.k + 1 if self.n > self.k else self.n
        if not low <= self.threshold <= self.n:
            raise ParamsError(
                f"repair threshold must be between {low} and n={self.n}, got {self.threshold}"
            )

    @classmethod
    def for_cap(
        cls, k: int, n: int, threshold: int | None = None, *, total: int | None = None
    ) -> RepairPolicy:
        """Policy for a file of `k` needed shares and `n` target nodes (see `default_threshold`)."""
        chosen = default_threshold(k, n) if threshold is None else threshold
        return cls(k=k, n=n, threshold=chosen, total=n if total is None else total)

    def needs_repair(self, healthy: int) -> bool:
        """True when fewer than `threshold` distinct nodes hold a good share."""
        return healthy < self.threshold

    def is_lost(self, healthy: int) -> bool:
        """Fewer than k distinct shares survive: nothing can rebuild the file."""
        return healthy < self.k

    def status(self, healthy: int) -> str:
        """One word for users: healthy (n nodes), degraded, needs-repair or lost."""
        if self.is_lost(healthy):
            return "lost"
        if self.needs_repair(healthy):
            return "needs-repair"
        return "healthy" if healthy >= self.n else "degraded"

    def shares_to_add(self, held: Mapping[int, str], unseen: Iterable[int] = ()) -> list[int]:
        """Share numbers to regenerate so `n` distinct nodes hold a share again.

        `held` maps each healthy share number to one node holding it (online now). `unseen`:
        share numbers held by nodes that are not online but were seen within the grace period
        (a laptop asleep); they count towards `n`, so fewer shares are added. Numbers nobody
        holds are chosen first (lowest first, so two devices repairing at once pick the same
        ones); then the sleepers' numbers (a second copy of one: the sleeper may not return);
        then numbers that share a node with another share (moving one there makes it count).
        """
        asleep = sorted(set(unseen) - set(held))
        missing = self.n - healthy_count(held) - len(asleep)
        if missing <= 0:
            return []
        free = [s for s in range(self.total) if s not in held and s not in asleep]
        first_on_node: dict[str, int] = {}
        for shnum in sorted(held):
            first_on_node.setdefault(held[shnum], shnum)
        doubled = sorted(s for s, node in held.items() if first_on_node[node] != s)
        return (free + asleep + doubled)[:missing]


def healthy_count(held: Mapping[int, str]) -> int:
    """Distinct nodes among the holders: one node counts once whatever it holds."""
    return len(set(held.values()))


def choose_repair_targets(
    storage_index: bytes,
    candidates: Iterable[Candidate],
    shnums: Iterable[int],
    *,
    holders: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> dict[int, str]:
    """Share number -> node for the regenerated shares, in rendezvous order.

    Nodes already holding a share of the file (`holders`) and bad nodes (`exclude`) are skipped.
    Each share number has its own rendezvous order (keyed by storage index and share number) and
    takes the first node not skipped and not given to a lower wanted number. So the choice for
    one number does not shift when another device's survey saw a different set of missing
    numbers: a node it already filled is now a holder, which skips it exactly as "given to a
    lower number" did. Two devices repairing one file at once therefore write each share number
    to the same node, where the second (identical, idempotent) write is a no-op. Group spreading
    across the new shares is given up for that stability. Share numbers beyond the available
    nodes are left out of the result.
    """
    pool = list(candidates)
    skip = set(holders) | set(exclude)
    chosen: dict[int, str] = {}
    for shnum in sorted(set(shnums)):
        key = storage_index + shnum.to_bytes(2, "big")
        found = choose_nodes(key, pool, 1, exclude=skip | set(chosen.values()))
        if found:
            chosen[shnum] = found[0].node_id
    return chosen


def best_holders(holdings: Mapping[str, Iterable[int]]) -> dict[int, str]:
    """Share number -> node, one share per node, as many nodes as possible.

    `holdings` maps each node to the good share numbers it holds. A node holding shares 1 and 2
    and another holding only 1 give {2: first, 1: second}: two healthy nodes, not one. This is a
    maximum bipartite matching (augmenting paths; files have at most 256 shares), in a fixed
    order so every device computes the same answer.
    """
    owner_of: dict[int, str] = {}

    def assign(node: str, seen: set[int]) -> bool:
        for shnum in sorted(set(holdings[node])):
            if shnum in seen:
                continue
            seen.add(shnum)
            current = owner_of.get(shnum)
            if current is None or assign(current, seen):
                owner_of[shnum] = node
                return True
        return False

    for node in sorted(holdings):
        assign(node, set())
    return dict(sorted(owner_of.items()))


def handoff_targets(
    storage_index: bytes,
    candidates: Iterable[Candidate],
    *,
    exclude: Iterable[str] = (),
    resume: Iterable[str] = (),
    crowded: Iterable[str] = (),
) -> list[str]:
    """Nodes to offer one share of a leaving node, best first.

    `resume`: nodes holding an unfinished copy of this very share (an interrupted handoff),
    tried first so a rerun continues it (even if they are in `exclude`). Then the upload's
    placement order over the storage index (reputation and vetting included) without
    `exclude`: the leaving node itself and nodes already holding a share of the file (one
    share per node). Last, as a fallback, the `crowded` nodes (holding another share of the
    file): a second share on a node adds no durability, but keeps the share number alive
    where the alternative is losing it with the leaving node."""
    pool = list(candidates)
    skip = set(exclude)
    first = list(dict.fromkeys(resume))
    ranked = choose_nodes(storage_index, pool, len(pool), exclude=skip | set(first))
    spare = set(crowded) - set(first)
    last = choose_nodes(storage_index, [c for c in pool if c.node_id in spare], len(spare))
    return first + [c.node_id for c in ranked] + [c.node_id for c in last]
