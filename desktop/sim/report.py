"""Figures of a durability run: one row per setting, metric lines, and the choice of defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from desktop.sim.engine import Setting, SettingStats
from desktop.sim.markov import MarkovEstimate


@dataclass(frozen=True)
class Row:
    """A setting's simulated figures next to its Markov estimate."""

    stats: SettingStats
    markov: MarkovEstimate

    @property
    def setting(self) -> Setting:
        return self.stats.setting


def metric_line(name: str, value: float, unit: str) -> str:
    return f"metric={name} value={value:.4g} unit={unit}"


def setting_lines(row: Row, prefix: str = "") -> list[str]:
    """Per-setting figures; `loss_prob_year_*` is the Markov estimate, `sim_*` are counted."""
    s, name = row.stats, row.setting.name
    return [
        metric_line(f"{prefix}loss_prob_year_{name}", row.markov.annual_loss, "probability"),
        metric_line(f"{prefix}sim_loss_prob_year_{name}", s.annual_loss, "probability"),
        metric_line(f"{prefix}sim_loss_upper95_{name}", s.annual_loss_upper95, "probability"),
        metric_line(f"{prefix}expansion_{name}", row.setting.expansion, "x"),
        metric_line(f"{prefix}stored_expansion_{name}", s.stored_expansion, "x"),
        metric_line(
            f"{prefix}repair_gb_per_tb_month_{name}", s.repair_gb_per_tb_month, "GB_per_TB_month"
        ),
        metric_line(
            f"{prefix}markov_repair_gb_per_tb_month_{name}",
            row.markov.repair_gb_per_tb_month,
            "GB_per_TB_month",
        ),
    ]


def choose(rows: Sequence[Row], max_annual_loss: float) -> Row | None:
    """The cheapest setting whose estimated loss stays under the target.

    Cheapest = least stored bytes per byte of user data (what every donor pays for every
    file, forever), then least repair traffic (what the network pays as nodes churn).
    """
    good = [r for r in rows if r.markov.annual_loss <= max_annual_loss]
    if not good:
        return None
    return min(
        good, key=lambda r: (round(r.stats.stored_expansion, 1), r.stats.repair_gb_per_tb_month)
    )
