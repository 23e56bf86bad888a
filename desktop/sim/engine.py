"""Discrete-event simulation of files living on a churning network of amateur nodes.

The decisions are the product's own code, not copies: uploads place shares with
`desktop.core.placement.choose_nodes` (as `desktop.client.upload` does), and the checker asks
`desktop.core.repair_policy.RepairPolicy` whether to repair, which share numbers to regenerate,
and `choose_repair_targets` where they go.

What the simulation assumes (and why):

* Each account's checker runs every `check_interval_hours`, at a time of day when its owner's
  device is on (8:00-22:00), and sees only nodes online at that moment -- or, with
  `grace_hours` > 0, nodes seen within that many hours (a checker that remembers last contact).
* Repair needs k distinct share numbers on nodes it can see; it downloads k shares and uploads
  the regenerated ones, which exist `repair_hours` later on the targets (if those still exist).
  Traffic is counted in shares; one share is 1/k of the file.
* Shares on an offline node are not lost: when the node comes back the file simply holds more
  shares. Nothing trims them (the product has no such step), so the stored expansion is measured.
* A file is lost when fewer than k distinct share numbers remain on nodes that still exist.
* Times are hours. Everything is driven by one `random.Random(seed)`: same seed, same run.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from desktop.core.placement import Candidate, choose_nodes
from desktop.core.repair_policy import RepairPolicy, choose_repair_targets, healthy_count
from desktop.sim.churn import HOURS_PER_YEAR, ChurnModel, SimError, next_session
from desktop.sim.network import Network

HOURS_PER_MONTH = HOURS_PER_YEAR / 12.0

_ONLINE, _OFFLINE, _DEVICE_LOSS, _HOUSEHOLD_LEAVE, _UPLOAD, _CHECK, _REPAIR_DONE = range(7)


@dataclass(frozen=True)
class Setting:
    """One erasure-coding and repair setting: k-of-n, repair below `threshold` healthy nodes."""

    k: int
    n: int
    threshold: int
    spare: int = 2

    @property
    def name(self) -> str:
        return f"k{self.k}_n{self.n}_t{self.threshold}"

    def policy(self) -> RepairPolicy:
        return RepairPolicy.for_cap(self.k, self.n, self.threshold, total=self.n + self.spare)

    @property
    def expansion(self) -> float:
        return self.n / self.k


@dataclass(frozen=True)
class SimConfig:
    devices: int = 1000
    years: float = 2.0
    files_per_setting: int = 200
    accounts: int = 100
    pool_size: int = 150
    check_interval_hours: float = 24.0
    grace_hours: float = 0.0
    repair_hours: float = 2.0
    repair: bool = True
    upload_window_hours: float = 7 * 24.0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.devices < 2 or self.accounts < 1 or self.files_per_setting < 1:
            raise SimError("need at least 2 devices, 1 account and 1 file per setting")
        if self.years <= 0 or self.check_interval_hours <= 0 or self.pool_size < 1:
            raise SimError("years, check interval and pool size must be positive")
        if self.grace_hours < 0 or self.repair_hours < 0:
            raise SimError("grace and repair hours must not be negative")

    @property
    def end_hours(self) -> float:
        return self.years * HOURS_PER_YEAR


@dataclass
class SettingStats:
    """What happened to the files of one setting."""

    setting: Setting
    files: int = 0
    lost: int = 0
    file_hours: float = 0.0
    checks: int = 0
    repairs: int = 0
    deferred: int = 0
    shares_downloaded: int = 0
    shares_uploaded: int = 0
    holders_alive: int = 0
    holders_healthy: int = 0
    stored_shares_end: int = 0
    files_alive_end: int = 0

    @property
    def file_years(self) -> float:
        return self.file_hours / HOURS_PER_YEAR

    @property
    def annual_loss(self) -> float:
        """Loss probability per file-year from the observed loss rate (Poisson)."""
        if self.file_hours <= 0:
            return 0.0
        return -math.expm1(-self.lost / self.file_years) + 0.0  # never -0.0

    @property
    def annual_loss_upper95(self) -> float:
        """One-sided 95 % upper bound (Wilson-Hilferty); about 3/file-years when none was lost."""
        if self.file_hours <= 0:
            return 1.0
        x = self.lost + 1
        upper = x * (1 - 1 / (9 * x) + 1.645 / (3 * math.sqrt(x))) ** 3
        return -math.expm1(-upper / self.file_years)

    @property
    def repair_gb_per_tb_month(self) -> float:
        """Repair traffic (downloads + uploads) per TB of user data stored, per month."""
        if self.file_hours <= 0:
            return 0.0
        shares = self.shares_downloaded + self.shares_uploaded
        file_months = self.file_hours / HOURS_PER_MONTH
        return 1000.0 * shares / self.setting.k / file_months

    @property
    def availability(self) -> float:
        """Share of a file's surviving holders the checker counted healthy."""
        return self.holders_healthy / self.holders_alive if self.holders_alive else 0.0

    @property
    def stored_expansion(self) -> float:
        """Bytes stored per byte of user data at the end (duplicates from repairs included)."""
        if not self.files_alive_end:
            return 0.0
        return self.stored_shares_end / self.files_alive_end / self.setting.k


@dataclass(eq=False)
class _File:
    index: int
    setting: int
    account: int
    storage_index: bytes
    placed: list[tuple[int, int]] = field(default_factory=list)  # (share number, device)
    uploaded_at: float = math.nan
    lost: bool = False
    repairing: bool = False


class Simulation:
    def __init__(self, config: SimConfig, settings: list[Setting], churn: ChurnModel) -> None:
        if not settings:
            raise SimError("need at least one setting")
        self.config = config
        self.churn = churn
        self.settings = settings
        self.policies = [s.policy() for s in settings]
        self.stats = [SettingStats(s) for s in settings]
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self._events: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._pending: dict[int, dict[int, int]] = {}
        self._next_off: dict[int, float] = {}
        self.network = Network(
            churn,
            self.rng,
            devices=config.devices,
            accounts=config.accounts,
            pool_size=config.pool_size,
        )
        for index in range(len(self.network.devices)):
            self._start_device(index)
        for household in list(self.network.households):
            self._schedule_household(household)
        self.files: list[_File] = []
        self._by_account: list[list[int]] = [[] for _ in range(config.accounts)]
        for setting_index in range(len(settings)):
            for _ in range(config.files_per_setting):
                self._new_file(setting_index)
        for account in range(config.accounts):
            first = 24.0 + config.upload_window_hours + self.rng.uniform(8.0, 22.0)
            self._push(first, _CHECK, account)

    # ---- scheduling ------------------------------------------------------------------------

    def _push(self, time: float, kind: int, subject: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (time, self._seq, kind, subject))

    def _start_device(self, index: int) -> None:
        loss_at = self.now + self.rng.expovariate(self.churn.device_loss_per_hour)
        self._push(loss_at, _DEVICE_LOSS, index)
        self._schedule_session(index)

    def _schedule_session(self, index: int) -> None:
        device = self.network.devices[index]
        on_at, off_at = next_session(
            device.device_class, device.preferred_start, self.now, self.rng
        )
        self._next_off[index] = off_at
        self._push(on_at, _ONLINE, index)

    def _schedule_household(self, household: int) -> None:
        rate = self.churn.household_leave_per_hour
        if rate > 0:
            self._push(self.now + self.rng.expovariate(rate), _HOUSEHOLD_LEAVE, household)

    def _new_file(self, setting_index: int) -> None:
        file = _File(
            index=len(self.files),
            setting=setting_index,
            account=self.rng.randrange(self.config.accounts),
            storage_index=self.rng.randbytes(16),
        )
        self.files.append(file)
        self._by_account[file.account].append(file.index)
        self.stats[setting_index].files += 1
        self._push(24.0 + self.rng.uniform(0, self.config.upload_window_hours), _UPLOAD, file.index)

    # ---- the run ---------------------------------------------------------------------------

    def run(self) -> list[SettingStats]:
        end = self.config.end_hours
        handlers = {
            _ONLINE: self._on_online,
            _OFFLINE: self._on_offline,
            _DEVICE_LOSS: self._on_device_loss,
            _HOUSEHOLD_LEAVE: self._on_household_leave,
            _UPLOAD: self._on_upload,
            _CHECK: self._on_check,
            _REPAIR_DONE: self._on_repair_done,
        }
        events = self._events
        while events and events[0][0] <= end:
            time, _, kind, subject = heapq.heappop(events)
            self.now = time
            handlers[kind](subject)
        self.now = end
        self._finish()
        return self.stats

    def _finish(self) -> None:
        for file in self.files:
            if file.lost or math.isnan(file.uploaded_at):
                continue
            stats = self.stats[file.setting]
            stats.file_hours += self.now - file.uploaded_at
            stats.files_alive_end += 1
            stats.stored_shares_end += len(file.placed)

    # ---- devices ---------------------------------------------------------------------------

    def _on_online(self, index: int) -> None:
        device = self.network.devices[index]
        if not device.alive:
            return
        device.online = True
        device.last_seen = self.now
        self._push(self._next_off[index], _OFFLINE, index)

    def _on_offline(self, index: int) -> None:
        device = self.network.devices[index]
        if not device.alive:
            return
        device.online = False
        device.last_seen = self.now
        self._schedule_session(index)

    def _on_device_loss(self, index: int) -> None:
        if not self.network.devices[index].alive:
            return
        self._drop_shares(index)
        self._start_device(self.network.replace_device(index))

    def _on_household_leave(self, household: int) -> None:
        if household not in self.network.households:
            return
        gone = list(self.network.households[household])
        for index in gone:
            self._drop_shares(index)
        pairs = self.network.leave_household(household)
        new_household = self.network.devices[pairs[0][1]].household
        for index in self.network.households[new_household]:
            self._start_device(index)
        self._schedule_household(new_household)

    def _drop_shares(self, index: int) -> None:
        """The device's shares are gone for good; files below k distinct shares are lost."""
        device = self.network.devices[index]
        for file_index in sorted(device.shares):
            file = self.files[file_index]
            file.placed = [(s, d) for s, d in file.placed if d != index]
            if not file.lost and len({s for s, _ in file.placed}) < self.settings[file.setting].k:
                self._lose(file)
        device.shares.clear()

    def _lose(self, file: _File) -> None:
        file.lost = True
        stats = self.stats[file.setting]
        stats.lost += 1
        stats.file_hours += self.now - file.uploaded_at

    # ---- files -----------------------------------------------------------------------------

    def _on_upload(self, file_index: int) -> None:
        """Like the client's upload: rendezvous order over online known nodes, first n win."""
        file = self.files[file_index]
        setting = self.settings[file.setting]
        candidates = self.network.candidates(file.account)
        chosen = choose_nodes(file.storage_index, candidates, setting.n)
        file.uploaded_at = self.now
        for shnum, candidate in enumerate(chosen):
            self._place(file, shnum, self.network.by_node_id[candidate.node_id])
        if len({s for s, _ in file.placed}) < setting.k:
            self._lose(file)

    def _place(self, file: _File, shnum: int, index: int) -> None:
        file.placed.append((shnum, index))
        self.network.devices[index].shares.add(file.index)

    def _healthy(self, index: int) -> bool:
        device = self.network.devices[index]
        return device.online or self.now - device.last_seen <= self.config.grace_hours

    def _on_check(self, account: int) -> None:
        self._push(self.now + self.config.check_interval_hours, _CHECK, account)
        candidates: list[Candidate] | None = None
        devices = self.network.devices
        for file_index in self._by_account[account]:
            file = self.files[file_index]
            if file.lost or file.repairing or math.isnan(file.uploaded_at):
                continue
            policy = self.policies[file.setting]
            stats = self.stats[file.setting]
            held: dict[int, str] = {}
            online: dict[int, str] = {}  # held by a node online now (the rest are asleep)
            holders: set[str] = set()
            for shnum, index in file.placed:
                node_id = devices[index].node_id
                holders.add(node_id)
                if self._healthy(index):
                    held.setdefault(shnum, node_id)
                    if devices[index].online:
                        online.setdefault(shnum, node_id)
            healthy = healthy_count(held)
            stats.checks += 1
            stats.holders_alive += len(holders)
            stats.holders_healthy += len(set(held.values()))
            if not self.config.repair or not policy.needs_repair(healthy):
                continue
            if len(held) < policy.k:
                stats.deferred += 1
                continue
            wanted = policy.shares_to_add(online, unseen=set(held) - set(online))
            if candidates is None:
                candidates = self.network.candidates(account)
            targets = choose_repair_targets(file.storage_index, candidates, wanted, holders=holders)
            stats.repairs += 1
            stats.shares_downloaded += policy.k
            stats.shares_uploaded += len(targets)
            if targets:
                by_id = self.network.by_node_id
                self._pending[file_index] = {s: by_id[node] for s, node in targets.items()}
                file.repairing = True
                self._push(self.now + self.config.repair_hours, _REPAIR_DONE, file_index)

    def _on_repair_done(self, file_index: int) -> None:
        file = self.files[file_index]
        file.repairing = False
        targets = self._pending.pop(file_index)
        if file.lost:
            return
        for shnum, index in sorted(targets.items()):
            if self.network.devices[index].alive:
                self._place(file, shnum, index)


def simulate(config: SimConfig, settings: list[Setting], churn: ChurnModel) -> list[SettingStats]:
    """Run one simulation; every setting's files live on the same network and churn."""
    return Simulation(config, settings, churn).run()
