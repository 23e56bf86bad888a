"""The simulated population: devices grouped in households, and the nodes each account knows.

No clock and no events here: the engine decides when things happen, the network keeps who
exists. An account does not know every node of a big network, only a pool of them (as the
client's `NodePool` does); pools are refreshed as nodes die, by the devices that replace them.
That also keeps the real placement code affordable at 10,000 devices.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from desktop.core.placement import Candidate, weight_for
from desktop.sim.churn import ChurnModel, DeviceClass


@dataclass(eq=False)
class Device:
    """One storage node. `shares` holds the indices of files with a share here."""

    index: int
    node_id: str
    household: int
    device_class: DeviceClass
    preferred_start: float
    weight: float
    alive: bool = True
    online: bool = False
    last_seen: float = -math.inf
    shares: set[int] = field(default_factory=set)

    def candidate(self) -> Candidate:
        return Candidate(self.node_id, self.weight, f"h{self.household}")


class Network:
    def __init__(
        self, churn: ChurnModel, rng: random.Random, *, devices: int, accounts: int, pool_size: int
    ) -> None:
        self.churn = churn
        self.rng = rng
        self.devices: list[Device] = []
        self.households: dict[int, list[int]] = {}
        self.by_node_id: dict[str, int] = {}
        self._next_household = 0
        while len(self.devices) < devices:
            self.add_household()
        size = min(pool_size, len(self.devices))
        everyone = list(range(len(self.devices)))
        self.pools: list[list[int]] = [rng.sample(everyone, size) for _ in range(accounts)]
        self._in_pools: dict[int, set[int]] = {}
        for account, pool in enumerate(self.pools):
            for index in pool:
                self._in_pools.setdefault(index, set()).add(account)

    def add_household(self) -> list[int]:
        """A new household joins with 1-3 fresh, empty devices; returns their indices."""
        household = self._next_household
        self._next_household += 1
        size = self.rng.choice(self.churn.household_sizes)
        members = [self._new_device(household) for _ in range(size)]
        self.households[household] = members
        return members

    def _new_device(self, household: int) -> int:
        index = len(self.devices)
        device = Device(
            index=index,
            node_id=f"node{index:06d}",
            household=household,
            device_class=self.churn.pick_class(self.rng),
            preferred_start=self.churn.preferred_start(self.rng),
            weight=weight_for(self.churn.free_bytes(self.rng)),
        )
        self.devices.append(device)
        self.by_node_id[device.node_id] = index
        return index

    def replace_device(self, index: int) -> int:
        """Device `index` is gone for good; its household gets a new empty device instead."""
        old = self.devices[index]
        old.alive = False
        old.online = False
        new = self._new_device(old.household)
        members = self.households[old.household]
        members[members.index(index)] = new
        self._hand_over(index, new)
        return new

    def leave_household(self, household: int) -> list[tuple[int, int]]:
        """The household quits; a new one joins. Returns (gone device, new device) pairs."""
        gone = self.households.pop(household)
        fresh = self.add_household()
        pairs = []
        for position, index in enumerate(gone):
            device = self.devices[index]
            device.alive = False
            device.online = False
            self._hand_over(index, fresh[position % len(fresh)])
            pairs.append((index, fresh[position % len(fresh)]))
        return pairs

    def _hand_over(self, old: int, new: int) -> None:
        """Accounts that knew the old node learn of the new one (keeps pools full)."""
        for account in self._in_pools.pop(old, set()):
            pool = self.pools[account]
            substitute = new if new not in pool else self._random_alive(pool)
            if substitute is None:
                pool.remove(old)
            else:
                pool[pool.index(old)] = substitute
                self._in_pools.setdefault(substitute, set()).add(account)

    def _random_alive(self, pool: list[int]) -> int | None:
        for _ in range(50):
            index = self.rng.randrange(len(self.devices))
            if self.devices[index].alive and index not in pool:
                return index
        return None

    def candidates(self, account: int) -> list[Candidate]:
        """Nodes this account can place shares on now: known, alive and online."""
        devices = self.devices
        return [devices[i].candidate() for i in self.pools[account] if devices[i].online]
