"""The checker: walks every file the account keeps, renews leases, verifies a sample, repairs.

One round per `check_interval`: for each referenced cap (current files, conflict copies, kept
old versions), survey the nodes (cheap existence + lease expiry), renew leases due within half
a lease, fully verify a few shares every `verify_every` rounds, record the health, and repair
below the threshold. Rounds are paced by the agent's CPU allowance (a rest after each file in
proportion to the time it took), with a small floor so one's own files are still looked after
while donating is off. `health.check` / `health.repair` run the same steps on demand.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from desktop.client.repair import (
    FileHealth,
    RepairFailed,
    renew_leases,
    repair_file,
    survey,
    verify_sample,
)
from desktop.core.caps import parse_read_cap
from desktop.core.errors import PermaCloudError
from desktop.core.layout import HEADER_SIZE, HeaderError, parse_header
from desktop.core.repair_policy import RepairPolicy
from desktop.daemon.health import (
    DurabilitySettings,
    HealthRow,
    HealthStore,
    placements_of,
    referenced_caps,
    retention_policy,
)
from desktop.daemon.ipc_protocol import IpcProtocolError
from desktop.daemon.ipc_server import CallContext, Handler, NotFound
from desktop.daemon.per_daemon import per_daemon
from desktop.daemon.replication import fetch_records
from desktop.daemon.reputation_store import bad_nodes, discount_bad_nodes
from desktop.net.errors import NodeError
from desktop.net.identity import node_id_from_public_key

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

logger = logging.getLogger(__name__)

MIN_DUTY = 0.05  # checks go on slowly even when the agent donates nothing


@dataclass(frozen=True)
class CheckOutcome:
    row: HealthRow
    renewed: int = 0
    added: int = 0


class Checker:
    def __init__(self, daemon: Daemon, settings: DurabilitySettings | None = None) -> None:
        self.daemon = daemon
        self.settings = settings or DurabilitySettings.from_env()
        self.store = HealthStore(daemon.index)
        self.rounds = 0
        self.last_round: float | None = None
        self.rng = random.Random()
        self._lock = trio.Lock()

    # ---- one file --------------------------------------------------------------------------

    async def _params(self, health: FileHealth) -> tuple[int, int] | None:
        """(k, share numbers) from one share header; None if no holder answers."""
        for node_id, shares in health.holdings.items():
            for shnum in shares:
                try:
                    header = await self.daemon.pool.client(node_id).read(
                        health.storage_index, shnum, 0, HEADER_SIZE
                    )
                    layout, _ = parse_header(header)
                except (NodeError, HeaderError):
                    continue
                return layout.params.k, layout.params.n
        return None

    def policy(self, k: int, total: int) -> RepairPolicy:
        n = min(self.daemon.config.storage.n, total)
        threshold = self.settings.repair_threshold
        if threshold is not None:
            threshold = max(min(threshold, n), min(k + 1, n))
        return RepairPolicy.for_cap(k, n, threshold, total=total)

    async def asleep(self, cap: str, health: FileHealth, bad: set[str]) -> dict[int, str]:
        """Shares (from the index's placements) on nodes offline now but seen within the grace
        period: a sleeping laptop's shares still count, so its naps cause no repair storms.
        "Seen" is this daemon's memory (the pool's last answer), so after a restart an
        offline node counts as lost until it answers again: the cautious side."""
        grace = self.settings.repair_grace
        if grace <= 0:
            return {}
        placements = await self.daemon.db(placements_of, self.daemon.index, cap)
        now = time.monotonic()
        found: dict[int, str] = {}
        for shnum, node_id in sorted(placements):
            stats = self.daemon.pool.stats.get(node_id)
            if stats is None or node_id in health.holdings or node_id in bad:
                continue
            if stats.online and node_id not in health.unreachable:
                continue  # online and answered without this share: it is gone
            if stats.last_seen and now - stats.last_seen <= grace:
                found.setdefault(shnum, node_id)
        return found

    async def check_file(
        self, cap: str, path: str, *, verify: bool, repair: bool, force: bool = False
    ) -> CheckOutcome:
        pool = self.daemon.pool
        read_cap = parse_read_cap(cap)
        health = await survey(pool, read_cap.storage_index)
        discount_bad_nodes(self.daemon, health)  # disqualified: their shares count as lost
        bad = bad_nodes(self.daemon)
        renewed = await renew_leases(pool, health, self.settings.lease_seconds)
        params = await self._params(health)
        now = time.time()
        if params is None:
            row = HealthRow(cap, path, 0, self.daemon.config.storage.n, 0, "lost", now)
            await self.daemon.db(self.store.record, row)
            return CheckOutcome(row, renewed)
        k, total = params
        policy = self.policy(k, total)
        if verify and self.settings.verify_per_round:
            await verify_sample(
                pool, read_cap.verify_cap(), health, self.settings.verify_per_round, self.rng
            )
        added = 0
        repaired: float | None = None
        error: str | None = None
        asleep = await self.asleep(cap, health, bad)
        sleepers = set(asleep.values()) - set(health.held.values())
        healthy = health.healthy + len(sleepers)
        if (
            repair
            and (force or policy.needs_repair(healthy))
            and not policy.is_lost(health.healthy)
        ):
            try:
                result = await repair_file(
                    pool,
                    read_cap.verify_cap(),
                    policy,
                    lease_seconds=self.settings.lease_seconds,
                    health=health,
                    force=force,
                    asleep=asleep,
                )
                if result.added:
                    await self.daemon.db(self.daemon.index.add_placements, cap, result.added)
                added, repaired = len(result.added), time.time()
                healthy = result.after + len(sleepers)
                if result.added:
                    self.daemon.activity.add("repair", f"repaired {path}: {result.after} nodes")
            except (RepairFailed, PermaCloudError) as failure:
                error = str(failure)
                logger.warning("repairing %s: %s", path, failure)
        status = policy.status(healthy)
        row = HealthRow(cap, path, k, policy.n, healthy, status, now, repaired, error)
        await self.daemon.db(self.store.record, row)
        return CheckOutcome(row, renewed, added)

    # ---- rounds ----------------------------------------------------------------------------

    async def _pace(self, spent: float) -> None:
        duty = max(self.daemon.agent.cpu_duty(), MIN_DUTY)
        if duty < 1.0:
            await trio.sleep(min(spent * (1.0 - duty) / duty, 60.0))

    async def check_all(
        self, *, repair: bool = True, only: str | None = None, force: bool = False
    ) -> list[CheckOutcome]:
        async with self._lock:
            caps = await self.daemon.db(referenced_caps, self.daemon.namespace, retention_policy())
            if only is None:
                caps.update(await snapshot_caps(self.daemon))
            if only is None:
                await self.daemon.db(self.store.forget_except, set(caps))
            else:
                caps = {c: p for c, p in caps.items() if p == only or p.startswith(only + "/")}
            if (
                not self.daemon.pool.online()
                or time.monotonic() - self.daemon.pool.last_refresh > 30
            ):
                await self.daemon.refresh_nodes()
            verify = self.rounds % self.settings.verify_every == 0
            outcomes: list[CheckOutcome] = []
            for cap, path in sorted(caps.items(), key=lambda item: item[1]):
                started = trio.current_time()
                try:
                    outcomes.append(
                        await self.check_file(cap, path, verify=verify, repair=repair, force=force)
                    )
                except PermaCloudError as error:
                    logger.warning("checking %s: %s", path, error)
                if only is None:
                    await self._pace(trio.current_time() - started)
            if only is None:
                self.rounds += 1
                self.last_round = time.time()
            return outcomes

    async def run(self) -> None:
        while True:
            await trio.sleep(self.settings.check_interval)
            try:
                await self.check_all()
            except PermaCloudError as error:
                logger.warning("check round: %s", error)
            except Exception:  # a bad round must never take the daemon down
                logger.exception("check round failed")

    def status(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "last_round": self.last_round,
            "interval": self.settings.check_interval,
        }


async def snapshot_caps(daemon: Daemon) -> dict[str, str]:
    """cap -> a label, for the newest namespace snapshot of every device of the account.

    Snapshots are erasure-coded files like any other, but their caps live only in the pointer
    records of each device's log (not in the namespace), so `referenced_caps` cannot see them;
    a device bootstrapping from the network needs the newest one after the entries it covers
    were pruned, so its leases must be renewed too. Older snapshots are superseded and expire.
    """
    from desktop.daemon.service import SNAPSHOT_RECORD_BASE  # the service imports this module

    found: dict[str, str] = {}
    for cert in await daemon.db(daemon.namespace.devices):
        writer = node_id_from_public_key(cert.device_public_key)
        try:
            records = await fetch_records(daemon.pool, daemon.keys, writer, SNAPSHOT_RECORD_BASE)
        except PermaCloudError as error:
            logger.info("snapshot pointers of %s: %s", cert.device_id[:8], error)
            continue
        for _, data in reversed(records):
            try:
                cap = str(json.loads(data)["snapshot"])
                parse_read_cap(cap)
            except (PermaCloudError, KeyError, TypeError, ValueError):
                continue
            found[cap] = f"/.snapshots/{cert.device_id[:16]}"
            break
    return found


@per_daemon
def checker_for(daemon: Daemon) -> Checker:
    """The daemon's one checker (its IPC handlers and its loop share it)."""
    return Checker(daemon)


def build_health_handlers(daemon: Daemon) -> dict[str, Handler]:
    """`health.check`, `health.repair`, `health.status`; starts the checker with the daemon."""
    checker = checker_for(daemon)
    summary: dict[str, Any] = {}

    def status_section() -> dict[str, Any]:
        return {**checker.status(), "files": summary.get("files", {})}

    daemon.extra_status["health"] = status_section

    def _path(params: dict[str, Any]) -> str | None:
        value = params.get("path")
        if value is None:
            return None
        if not isinstance(value, str) or not value.startswith("/"):
            raise IpcProtocolError("parameter 'path' must be an absolute path")
        return value.rstrip("/") or "/"

    async def run(params: dict[str, Any], repair: bool) -> Any:
        only = _path(params)
        force = bool(params.get("force", False))
        outcomes = await checker.check_all(
            repair=repair, only=None if only == "/" else only, force=force
        )
        if only not in (None, "/") and not outcomes:
            raise NotFound(f"no file at or below {only}")
        summary["files"] = await daemon.db(checker.store.summary)
        return {
            "files": [{**o.row.public(), "renewed": o.renewed, "added": o.added} for o in outcomes]
        }

    async def check(params: dict[str, Any], ctx: CallContext) -> Any:
        return await run(params, repair=False)

    async def repair(params: dict[str, Any], ctx: CallContext) -> Any:
        return await run(params, repair=True)

    async def status(params: dict[str, Any], ctx: CallContext) -> Any:
        rows = await daemon.db(checker.store.rows)
        return {**checker.status(), "files": [r.public() for r in rows]}

    return {"health.check": check, "health.repair": repair, "health.status": status}


__all__ = ["Checker", "build_health_handlers", "checker_for"]
