"""The daemon's auditor: every PERMACLOUD_AUDIT_INTERVAL seconds (default an hour), challenge a
few of the nodes that hold shares this device placed (PERMACLOUD_AUDIT_NODES, default 2, drawn
at random, weighted to unvetted and recently failing nodes), and feed the outcome into the
node's reputation. The IPC `audit` challenges every node at once.

One audit of a node = `BLOCKS_PER_CHALLENGE` random (share, block) proofs (desktop/core/audit.py)
drawn from the OS's random source; any wrong or missing answer fails the audit. A node that
cannot be reached is an uptime observation, not a failed audit (laptops sleep); a node that
answers with an error, garbage or a proof that does not climb to the cap's roots fails.
Only files still in the namespace view are audited: shares of deleted files may be collected.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

import trio

from desktop.core.audit import BLOCKS_PER_CHALLENGE, AuditFailed, choose_items, verify_answer
from desktop.core.caps import ReadCap, VerifyCap, parse_cap
from desktop.core.errors import CapError, PermaCloudError
from desktop.daemon.reputation_store import book, flush, load, record_observation, table
from desktop.knobs import env_float, env_int
from desktop.net.errors import NodeError, NodeRefused, NodeUnavailable, RateLimited

if TYPE_CHECKING:
    from desktop.daemon.ipc_server import CallContext
    from desktop.daemon.service import Daemon

logger = logging.getLogger(__name__)

# Budget: one round an hour auditing a few nodes drawn at random (weighted to unvetted and
# recently failing ones). One node's audit is BLOCKS_PER_CHALLENGE proofs, each about a block
# (segment / k: ~0.7 MB for 2 MiB segments in 3-of-10), so ~2.7 MB; 2 nodes an hour is
# ~130 MB a day downloaded by the auditing device, and a node among N holders uploads
# ~2.7 MB x 48 / N a day (13 MB for N = 10), instead of ~390 MB a day for every node when all
# of them were audited every 10 minutes. PERMACLOUD_AUDIT_NODES=0 audits every node per round.
AUDIT_INTERVAL = env_float("PERMACLOUD_AUDIT_INTERVAL", 3600.0)
AUDIT_NODES = env_int("PERMACLOUD_AUDIT_NODES", 2)
WEIGHT_UNVETTED = 3.0
WEIGHT_FAILING = 4.0
AUDIT_TIMEOUT = 30.0
PARALLEL_NODES = 4

_RANDOM = random.SystemRandom()


def _verify_cap(text: str) -> VerifyCap:
    cap = parse_cap(text)
    return cap.verify_cap() if isinstance(cap, ReadCap) else cap


async def audit_node(
    daemon: Daemon, node_id: str, rng: random.Random = _RANDOM
) -> dict[str, Any] | None:
    """Challenge one node; its outcome, or None when nothing was concluded (unknown node,
    nothing to audit, rate limited, unreachable: the last one counts against uptime)."""
    if node_id not in daemon.pool.node_ids:
        return None
    store = await table(daemon)
    count = await daemon.db(store.holdings_count, node_id)
    items = choose_items(count, BLOCKS_PER_CHALLENGE, rng)
    checked, failure = 0, ""
    started = time.monotonic()
    for item in items:
        holding = await daemon.db(store.holding_at, node_id, item.holding)
        if holding is None:
            continue  # the placements changed under us; fewer blocks this time
        cap_text, shnum = holding
        try:
            cap = _verify_cap(cap_text)
        except CapError:
            continue
        try:
            with trio.fail_after(AUDIT_TIMEOUT):
                answer = await daemon.pool.client(node_id).proof(
                    cap.storage_index, shnum, item.challenge
                )
            verify_answer(cap, shnum, item.challenge, answer)
        except (trio.TooSlowError, NodeUnavailable) as error:
            logger.info("audit of %s: unreachable (%s)", node_id, error or "timed out")
            await record_observation(daemon, node_id, "uptime", False)
            return None
        except RateLimited:
            return None
        except (NodeRefused, NodeError, AuditFailed) as error:
            failure = f"share {shnum}: {error}"
            break
        checked += 1
    if not checked and not failure:
        return None
    latency_ms = (time.monotonic() - started) * 1000 / max(checked + (1 if failure else 0), 1)
    ok = not failure
    await record_observation(daemon, node_id, "audit", ok, latency_ms, failure)
    if ok:
        logger.info("audit of %s passed (%d blocks)", node_id, checked)
    else:
        logger.warning("audit of %s failed: %s", node_id, failure)
    return {"node": node_id, "ok": ok, "blocks": checked, "failure": failure}


def choose_audited(
    nodes: list[str], weights: dict[str, float], budget: int, rng: random.Random
) -> list[str]:
    """`budget` distinct nodes drawn with probability proportional to their weight (absent: 1);
    all of them when `budget` is 0 or covers them."""
    if budget <= 0 or budget >= len(nodes):
        return list(nodes)
    left = list(nodes)
    chosen: list[str] = []
    while left and len(chosen) < budget:
        pick = rng.choices(left, weights=[weights.get(n, 1.0) for n in left])[0]
        chosen.append(pick)
        left.remove(pick)
    return chosen


def audit_weights(daemon: Daemon) -> dict[str, float]:
    """Unvetted nodes and nodes whose last audit failed are audited more often."""
    ledger = book(daemon)
    weights: dict[str, float] = {}
    for node_id, entry in ledger.nodes.items():
        weight = 1.0
        if not entry.reputation.vetted(ledger.params):
            weight = WEIGHT_UNVETTED
        if entry.last_failure and entry.reputation.audits_failed:
            weight = max(weight, WEIGHT_FAILING)
        weights[node_id] = weight
    return weights


async def audit_round(
    daemon: Daemon, rng: random.Random = _RANDOM, *, budget: int = 0
) -> list[dict[str, Any]]:
    """Audit the nodes holding this device's shares (`budget` of them, 0: all), a few at a time."""
    store = await table(daemon)
    nodes = choose_audited(await daemon.db(store.audited_nodes), audit_weights(daemon), budget, rng)
    results: list[dict[str, Any]] = []
    limiter = trio.CapacityLimiter(PARALLEL_NODES)

    async def one(node_id: str) -> None:
        async with limiter:
            outcome = await audit_node(daemon, node_id, rng)
        if outcome is not None:
            results.append(outcome)

    async with trio.open_nursery() as nursery:
        for node_id in nodes:
            nursery.start_soon(one, node_id)
    await flush(daemon)
    return sorted(results, key=lambda r: str(r["node"]))


async def run_auditor(
    daemon: Daemon, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Load the saved reputations (placement uses them from the first upload), then audit
    forever; a failed round never takes the daemon down."""
    await load(daemon)
    task_status.started()
    while True:
        await trio.sleep(AUDIT_INTERVAL * _RANDOM.uniform(0.8, 1.2))
        try:
            await audit_round(daemon, budget=AUDIT_NODES)
        except PermaCloudError as error:
            logger.warning("audit round: %s", error)
        except Exception:
            logger.exception("audit round failed")


def build_audit_handlers(daemon: Daemon) -> dict[str, Any]:
    async def audit(params: dict[str, Any], ctx: CallContext) -> Any:
        return {"results": await audit_round(daemon)}

    return {"audit": audit}
