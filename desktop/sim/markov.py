"""Analytic estimate of file loss: a Markov chain on the number of surviving shares.

Losses of good settings are far too rare to count in a simulation (1e-9 per year needs
billions of file-years), so the figure for them comes from this chain, checked against the
simulation where both can measure (aggressive settings, stressed churn).

The chain steps once per checker run (`check_interval_hours`). State: how many distinct shares
survive on nodes that still exist (k..n), or lost. In one step each share is lost for good with
probability 1 - exp(-rate * T), independently (placement spreads households, so shares rarely
share a fate). Then the checker looks: if the real `RepairPolicy.needs_repair` says the
survivors are too few, the repair runs when at least k of them are online -- each counts with
probability `availability` (its node is online, or seen within the grace period) -- and the file
goes back to n shares; the traffic (k downloaded + n - healthy uploaded) is counted.

Simplifications, all on the cautious side for loss: repairs set off only because holders were
asleep are left out (they would only add shares; the simulation counts their traffic), shares
above n are not counted, the few hours a repair takes are ignored (the loss rate over hours is
tiny), and nodes are online independently of each other. So the traffic here is the floor set
by permanent losses; the simulation's measured traffic is the real figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from desktop.core.repair_policy import RepairPolicy
from desktop.sim.churn import HOURS_PER_YEAR, SimError

HOURS_PER_MONTH = HOURS_PER_YEAR / 12.0


@dataclass(frozen=True)
class MarkovEstimate:
    annual_loss: float
    repair_gb_per_tb_month: float
    repairs_per_year: float


def _binomial(count: int, p: float) -> list[float]:
    """P(X = i) for X ~ Binomial(count, p), computed without cancellation for tiny 1 - p."""
    if p >= 1.0:
        return [0.0] * count + [1.0]
    if p <= 0.0:
        return [1.0] + [0.0] * count
    log_p, log_q = math.log(p), math.log1p(-p)
    return [
        math.comb(count, i) * math.exp(i * log_p + (count - i) * log_q) for i in range(count + 1)
    ]


def estimate(
    policy: RepairPolicy,
    *,
    loss_per_hour: float,
    availability: float,
    check_interval_hours: float,
    years: float,
    repair: bool = True,
) -> MarkovEstimate:
    """Loss probability per year (over `years`, from a fresh file with n shares) and traffic."""
    if loss_per_hour < 0 or not 0.0 <= availability <= 1.0:
        raise SimError("loss rate must be >= 0 and availability within [0, 1]")
    if check_interval_hours <= 0 or years <= 0:
        raise SimError("check interval and years must be positive")
    k, n = policy.k, policy.n
    survive = math.exp(-loss_per_hour * check_interval_hours)
    steps = max(1, round(years * HOURS_PER_YEAR / check_interval_hours))

    # After losses leave j' >= k shares: P(repair) and E[shares moved by the repair].
    repair_prob: dict[int, float] = {}
    repair_shares: dict[int, float] = {}
    for alive in range(k, n + 1):
        prob = moved = 0.0
        if repair and policy.needs_repair(alive):
            for healthy, p in enumerate(_binomial(alive, availability)):
                if healthy >= k:
                    prob += p
                    moved += p * (k + n - healthy)
        repair_prob[alive], repair_shares[alive] = prob, moved

    # One step from each state: (P(lost), {next state: probability}, shares moved, repairs).
    steps_from: dict[int, tuple[float, dict[int, float], float, float]] = {}
    for alive in range(k, n + 1):
        lost = moved = repairs = 0.0
        nxt: dict[int, float] = {}
        for left, p in enumerate(_binomial(alive, survive)):
            if left < k:
                lost += p
                continue
            r = repair_prob[left]
            nxt[n] = nxt.get(n, 0.0) + p * r
            nxt[left] = nxt.get(left, 0.0) + p * (1.0 - r)
            moved += p * repair_shares[left]
            repairs += p * r
        steps_from[alive] = (lost, nxt, moved, repairs)

    state = {n: 1.0}
    lost_total = moved_total = repairs_total = alive_steps = 0.0
    for _ in range(steps):
        new: dict[int, float] = {}
        for alive, mass in state.items():
            lost, nxt, moved, repairs = steps_from[alive]
            lost_total += mass * lost
            moved_total += mass * moved
            repairs_total += mass * repairs
            alive_steps += mass
            for target, p in nxt.items():
                new[target] = new.get(target, 0.0) + mass * p
        state = new
    annual_loss = -math.expm1(math.log1p(-min(lost_total, 1.0 - 1e-16)) / years)
    file_months = alive_steps * check_interval_hours / HOURS_PER_MONTH
    if not file_months:
        return MarkovEstimate(annual_loss, 0.0, 0.0)
    return MarkovEstimate(
        annual_loss,
        repair_gb_per_tb_month=1000.0 * moved_total / k / file_months,
        repairs_per_year=repairs_total / (file_months / 12.0),
    )
