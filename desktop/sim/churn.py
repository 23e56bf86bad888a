"""How amateur storage nodes come, go and sleep: the churn model of the durability simulation.

Two kinds of events matter and they are kept apart on purpose:

* Permanent losses take a node's shares away for good: a disk dies, a device is retired (sold,
  reinstalled with a new device key), or a whole household stops taking part.
* Offline periods take a node away for hours or days but its shares come back: home desktops and
  laptops are on for part of the day, some days not at all, and away on holiday now and then.

The checker cannot tell the two apart at first, which is what makes repair cost traffic.

Default figures and where they come from (rough public numbers, chosen on the cautious side):

* `disk_afr` 1.5 %/year: Backblaze Drive Stats 2021-2024 report annualized failure rates of
  about 1.4-1.7 % over their whole HDD fleet; consumer disks in home machines are not better.
* `device_lifetime_years` 4: consumer PCs and laptops are replaced after about 4-5 years
  (e.g. Gartner/IDC replacement-cycle surveys); a replaced device comes back as a new, empty node.
* `household_leave_per_year` 0.15: volunteer networks lose many participants (BOINC host
  statistics show most hosts gone within a couple of years); for a storage network where people
  keep their own data, 15 %/year of households quitting for good is a pessimistic middle.
* Device mix and hours online: about a fifth always-on boxes (NAS, mini-PC, desktop left on),
  two fifths home desktops on ~10 h on most days, two fifths laptops on ~5 h on fewer days, and
  one or two week-long absences a year. Hours start around a preferred time of day per device,
  so devices of one time zone sleep together at night, as real ones do.

Everything here is pure: sampling takes an explicit `random.Random`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

from desktop.core.errors import PermaCloudError

HOURS_PER_YEAR = 24.0 * 365.0


class SimError(PermaCloudError):
    """A simulation setting is out of range."""


@dataclass(frozen=True)
class DeviceClass:
    """One kind of device and its online habits.

    Always-on devices are up except for rare outages (`outages_per_month`, `outage_hours`).
    Others are on for one window a day (`window_hours` +- `window_jitter_hours`) starting near
    their preferred hour, skip whole days with `skip_day_prob`, and go away for 3-14 days
    `absences_per_year` times a year.
    """

    name: str
    fraction: float
    always_on: bool = False
    window_hours: float = 8.0
    window_jitter_hours: float = 2.0
    skip_day_prob: float = 0.1
    absences_per_year: float = 1.5
    outages_per_month: float = 1.0
    outage_hours: float = 6.0


DEFAULT_CLASSES: tuple[DeviceClass, ...] = (
    DeviceClass("always_on", 0.2, always_on=True, outages_per_month=1.0, outage_hours=6.0),
    DeviceClass("desktop", 0.4, window_hours=10.0, window_jitter_hours=2.0, skip_day_prob=0.15),
    DeviceClass("laptop", 0.4, window_hours=5.0, window_jitter_hours=2.0, skip_day_prob=0.3),
)


@dataclass(frozen=True)
class ChurnModel:
    """Rates of permanent loss, the device mix and sizes of households and disks."""

    disk_afr: float = 0.015
    device_lifetime_years: float = 4.0
    household_leave_per_year: float = 0.15
    household_sizes: tuple[int, ...] = (1, 1, 2, 2, 3)
    classes: tuple[DeviceClass, ...] = DEFAULT_CLASSES
    free_gib_min: float = 50.0
    free_gib_max: float = 2000.0
    preferred_start_min_hour: float = 7.0
    preferred_start_max_hour: float = 19.0

    def __post_init__(self) -> None:
        if self.disk_afr < 0 or self.household_leave_per_year < 0:
            raise SimError("loss rates must not be negative")
        if self.device_lifetime_years <= 0:
            raise SimError("device lifetime must be positive")
        if not self.classes or sum(c.fraction for c in self.classes) <= 0:
            raise SimError("need at least one device class with a positive fraction")
        if not self.household_sizes or min(self.household_sizes) < 1:
            raise SimError("household sizes must be at least 1")

    @property
    def device_loss_per_hour(self) -> float:
        """Disk failure or retirement of one device: its shares are gone, it comes back empty.

        A disk failure with AFR p is a Poisson rate of -ln(1 - p) per year.
        """
        disk = -math.log1p(-min(self.disk_afr, 0.999999))
        return (disk + 1.0 / self.device_lifetime_years) / HOURS_PER_YEAR

    @property
    def household_leave_per_hour(self) -> float:
        return self.household_leave_per_year / HOURS_PER_YEAR

    @property
    def share_loss_per_hour(self) -> float:
        """Rate at which one share on one device is lost for good (device or household)."""
        return self.device_loss_per_hour + self.household_leave_per_hour

    def stressed(self, factor: float) -> ChurnModel:
        """The same model with every permanent-loss rate multiplied by `factor`.

        Used to make file losses frequent enough to count, to validate the Markov estimate.
        """
        if factor <= 0:
            raise SimError("stress factor must be positive")
        return replace(
            self,
            disk_afr=-math.expm1(factor * math.log1p(-min(self.disk_afr, 0.999999))),
            device_lifetime_years=self.device_lifetime_years / factor,
            household_leave_per_year=self.household_leave_per_year * factor,
        )

    def pick_class(self, rng: random.Random) -> DeviceClass:
        weights = [c.fraction for c in self.classes]
        return rng.choices(self.classes, weights=weights, k=1)[0]

    def free_bytes(self, rng: random.Random) -> int:
        """Free space is log-uniform: many small donations, a few big disks."""
        low, high = math.log(self.free_gib_min), math.log(self.free_gib_max)
        return int(math.exp(rng.uniform(low, high)) * (1 << 30))

    def preferred_start(self, rng: random.Random) -> float:
        return rng.uniform(self.preferred_start_min_hour, self.preferred_start_max_hour)


def next_session(
    cls: DeviceClass, preferred_start: float, after: float, rng: random.Random
) -> tuple[float, float]:
    """The next (online_at, offline_at) of a device that is offline at time `after` (hours)."""
    if cls.always_on:
        outage_rate = cls.outages_per_month / (24.0 * 30.0)
        on_at = after + rng.expovariate(1.0 / max(cls.outage_hours, 1e-6))
        up = rng.expovariate(outage_rate) if outage_rate > 0 else math.inf
        return on_at, on_at + up
    absence_per_day = cls.absences_per_year / 365.0
    day = math.floor(after / 24.0)
    while True:
        if rng.random() < absence_per_day:
            day += rng.randint(3, 14)
            continue
        start = day * 24.0 + preferred_start + rng.gauss(0.0, 1.0)
        if start < after or rng.random() < cls.skip_day_prob:
            day += 1
            continue
        length = max(0.5, rng.gauss(cls.window_hours, cls.window_jitter_hours))
        return start, start + length
