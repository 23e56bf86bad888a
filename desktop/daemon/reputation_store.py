"""Node reputations of one device: kept in memory for placement, persisted in the index.

The scores are this device's own view (what its audits and contacts showed), like a Storj
satellite's: no node can talk another's score down. The in-memory book is the truth while the
daemon runs (placement and the repairer read it without touching the disk); every change is
written to the `reputation` table of the index, audits at once, contact observations (one per
node every refresh) in batches by the auditor's loop.

Public API for other daemon parts (e.g. the checker and repairer):

* `await record_observation(daemon, node_id, kind, ok, latency_ms)`: `kind` is "audit" (a
  storage proof passed or failed) or "uptime" (the node answered or could not be reached).
* `bad_nodes(daemon) -> set[str]`: disqualified nodes; their shares count as unhealthy.
* `discount_bad_nodes(daemon, health)`: the checker's hook: marks a surveyed file's shares on
  disqualified nodes as corrupt, so they do not count as healthy, are not used as repair
  sources, and their nodes get none of the regenerated shares.
* `book(daemon)`: the `ReputationBook` itself (scores for `permacloud nodes`).
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from desktop.core.errors import PermaCloudError
from desktop.core.reputation import DEFAULT_PARAMS, NodeReputation, ReputationParams
from desktop.daemon.per_daemon import per_daemon

if TYPE_CHECKING:
    from desktop.client.pool import NodePool
    from desktop.client.repair import FileHealth
    from desktop.daemon.index import Index
    from desktop.daemon.service import Daemon

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS reputation (
    node TEXT PRIMARY KEY, audit_alpha REAL NOT NULL, audit_beta REAL NOT NULL,
    audits_passed INTEGER NOT NULL, audits_failed INTEGER NOT NULL,
    uptime_alpha REAL NOT NULL, uptime_beta REAL NOT NULL,
    reachable INTEGER NOT NULL, unreachable INTEGER NOT NULL, latency_ms REAL,
    last_audit REAL, last_failure TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS placements_by_node ON placements (node);
"""
KINDS = ("audit", "uptime")


class UnknownObservation(PermaCloudError):
    """An observation kind other than those in KINDS."""


@dataclass
class NodeRecord:
    reputation: NodeReputation = field(default_factory=NodeReputation)
    last_audit: float | None = None
    last_failure: str = ""


@dataclass
class ReputationBook:
    params: ReputationParams = DEFAULT_PARAMS
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    loaded: bool = False

    def record(self, node_id: str) -> NodeRecord:
        return self.nodes.setdefault(node_id, NodeRecord())

    def audited(self, node_id: str, ok: bool, latency_ms: float | None, reason: str = "") -> None:
        entry = self.record(node_id)
        entry.reputation = entry.reputation.audited(ok, self.params)
        if latency_ms is not None:
            entry.reputation = entry.reputation.observed(True, latency_ms, self.params)
        entry.last_audit = time.time()
        if not ok:
            entry.last_failure = reason
        self.dirty.add(node_id)

    def observed(self, node_id: str, reachable: bool, latency_ms: float | None) -> None:
        entry = self.record(node_id)
        entry.reputation = entry.reputation.observed(reachable, latency_ms, self.params)
        self.dirty.add(node_id)

    def bad_nodes(self) -> set[str]:
        return {n for n, e in self.nodes.items() if e.reputation.disqualified(self.params)}

    def apply(self, pool: NodePool) -> None:
        """Push weights and vetting into the pool, whose candidates feed placement."""
        pool.reputation_weight = {
            n: e.reputation.placement_weight(self.params) for n, e in self.nodes.items()
        }
        pool.vetted = {n for n, e in self.nodes.items() if e.reputation.vetted(self.params)}

    def describe(self, node_id: str) -> dict[str, Any]:
        """The scores `permacloud nodes` shows."""
        entry = self.nodes.get(node_id, NodeRecord())
        rep = entry.reputation
        return {
            "audit_score": round(rep.audit_score, 4),
            "audits_passed": rep.audits_passed,
            "audits_failed": rep.audits_failed,
            "uptime_score": round(rep.uptime_score, 4),
            "latency_ms": None if rep.latency_ms is None else round(rep.latency_ms, 1),
            "vetted": rep.vetted(self.params),
            "bad": rep.disqualified(self.params),
            "last_audit": entry.last_audit,
            "last_failure": entry.last_failure,
        }


class ReputationTable:
    """The `reputation` table and the audit queries; blocking, run through `daemon.db`."""

    def __init__(self, index: Index) -> None:
        self.index = index
        with index.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def load(self) -> dict[str, NodeRecord]:
        with self.index.transaction() as db:
            rows = db.execute(
                "SELECT node, audit_alpha, audit_beta, audits_passed, audits_failed, uptime_alpha,"
                " uptime_beta, reachable, unreachable, latency_ms, last_audit, last_failure"
                " FROM reputation"
            ).fetchall()
        return {
            str(row[0]): NodeRecord(NodeReputation(*row[1:10]), row[10], str(row[11]))
            for row in rows
        }

    def save(self, records: dict[str, NodeRecord]) -> None:
        with self.index.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO reputation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (node, *asdict(r.reputation).values(), r.last_audit, r.last_failure)
                    for node, r in records.items()
                ),
            )

    def audited_nodes(self) -> list[str]:
        """Nodes holding shares this device placed of files still in its namespace view."""
        with self.index.transaction() as db:
            rows = db.execute(
                "SELECT DISTINCT node FROM placements"
                " WHERE cap IN (SELECT cap FROM view WHERE kind = 'file') ORDER BY node"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def holdings_count(self, node_id: str) -> int:
        with self.index.transaction() as db:
            row = db.execute(
                "SELECT COUNT(*) FROM placements WHERE node = ?"
                " AND cap IN (SELECT cap FROM view WHERE kind = 'file')",
                (node_id,),
            ).fetchone()
        return int(row[0])

    def holding_at(self, node_id: str, position: int) -> tuple[str, int] | None:
        """The (cap, shnum) at `position` in this node's holdings, in a fixed order."""
        with self.index.transaction() as db:
            row = db.execute(
                "SELECT cap, shnum FROM placements WHERE node = ?"
                " AND cap IN (SELECT cap FROM view WHERE kind = 'file')"
                " ORDER BY cap, shnum LIMIT 1 OFFSET ?",
                (node_id, position),
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))


_TABLES: weakref.WeakKeyDictionary[Daemon, ReputationTable] = weakref.WeakKeyDictionary()


@per_daemon
def book(daemon: Daemon) -> ReputationBook:
    return ReputationBook()


async def table(daemon: Daemon) -> ReputationTable:
    found = _TABLES.get(daemon)
    if found is None:
        found = _TABLES[daemon] = await daemon.db(ReputationTable, daemon.index)
    return found


async def load(daemon: Daemon) -> ReputationBook:
    """Read the saved scores once and hook the pool's contact observations."""
    reputations = book(daemon)
    if not reputations.loaded:
        stored = await daemon.db((await table(daemon)).load)
        for node_id, record in stored.items():
            reputations.nodes.setdefault(node_id, record)
        reputations.loaded = True
        daemon.pool.observer = reputations.observed
        reputations.apply(daemon.pool)
    return reputations


async def flush(daemon: Daemon) -> None:
    """Write the scores that changed since the last flush."""
    reputations = book(daemon)
    if not reputations.dirty:
        return
    changed = {n: reputations.nodes[n] for n in reputations.dirty if n in reputations.nodes}
    reputations.dirty.clear()
    await daemon.db((await table(daemon)).save, changed)
    reputations.apply(daemon.pool)


async def record_observation(
    daemon: Daemon,
    node_id: str,
    kind: str,
    ok: bool,
    latency_ms: float | None = None,
    reason: str = "",
) -> None:
    """One observation of a node, saved at once; placement sees it from the next upload on."""
    if kind not in KINDS:
        raise UnknownObservation(f"observation kind must be one of {', '.join(KINDS)}")
    reputations = await load(daemon)
    was_bad = node_id in reputations.bad_nodes()
    if kind == "audit":
        reputations.audited(node_id, ok, latency_ms, reason)
    else:
        reputations.observed(node_id, ok, latency_ms)
    await flush(daemon)
    if not was_bad and node_id in reputations.bad_nodes():
        logger.warning("node %s disqualified: audit score below threshold (%s)", node_id, reason)
        daemon.activity.add("error", f"node {node_id[:8]} disqualified: failed audits")


def bad_nodes(daemon: Daemon) -> set[str]:
    """Disqualified nodes: no new shares, and their shares count as unhealthy for repair."""
    return book(daemon).bad_nodes()


def discount_bad_nodes(daemon: Daemon, health: FileHealth) -> set[str]:
    """Treat every share a disqualified node claims as lost; the bad holders of this file."""
    bad = bad_nodes(daemon) & set(health.holdings)
    for node_id in bad:
        health.corrupt.update((node_id, shnum) for shnum in health.holdings[node_id])
    return bad
