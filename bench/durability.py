"""Durability model: annual loss probability and repair traffic of k-of-n repair settings.

Three parts, each printed with what it is:

1. Realistic churn (`desktop.sim.churn.ChurnModel` defaults: disk AFR 1.5 %, devices replaced
   after ~4 years, 15 %/year of households quitting, home desktops and laptops online part of
   the day). The discrete-event simulation (real placement, real `RepairPolicy`) measures repair
   traffic, stored expansion and how often the checker sees a holder (availability); losses are
   far too rare to count, so `loss_prob_year_*` is the Markov-chain estimate (10-year horizon)
   fed with the simulated availability, and `sim_loss_*` are the counted ones (with a 95 % bound).
2. Validation: the same under churn stressed `--stress` times, where the simulation counts
   losses, next to the Markov estimate for the same setting.
3. The checker that only counts nodes online at that very moment (`--grace-hours 0`) for the
   default setting: what it costs in traffic and stored bytes.

Prints `metric=NAME value=NUMBER unit=UNIT`; traffic is GB moved (downloaded + uploaded) per TB
of user data stored, per month. Run under `flock /tmp/team/cpu.lock`; bigger run:
`--devices 10000 --years 5`.
"""

from __future__ import annotations

import argparse
import sys
import time

from desktop.client.upload import UploadOptions
from desktop.core.params import EncodingParams
from desktop.core.repair_policy import default_threshold
from desktop.sim.churn import ChurnModel
from desktop.sim.engine import Setting, SimConfig, simulate
from desktop.sim.markov import estimate
from desktop.sim.report import Row, choose, metric_line, setting_lines

SETTINGS = [
    (2, 4, 3),
    (2, 4, 4),
    (3, 6, 4),
    (3, 6, 5),
    (3, 10, 5),
    (3, 10, 7),
    (4, 8, 5),
    (4, 8, 6),
    (4, 10, 7),
    (6, 14, 10),
    (6, 12, 8),
    (6, 12, 9),
    (10, 16, 12),
    (10, 16, 13),
]
STRESS_SETTINGS = [(2, 4, 3), (2, 4, 4), (3, 6, 4), (3, 6, 5)]
MARKOV_YEARS = 10.0


def rows_for(
    settings: list[Setting], config: SimConfig, churn: ChurnModel, markov_years: float | None
) -> list[Row]:
    rows = []
    for stats in simulate(config, settings, churn):
        years = markov_years if markov_years is not None else stats.file_years / stats.files
        markov = estimate(
            stats.setting.policy(),
            loss_per_hour=churn.share_loss_per_hour,
            availability=stats.availability,
            check_interval_hours=config.check_interval_hours,
            years=years,
        )
        rows.append(Row(stats, markov))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--years", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=150, help="files per setting")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--check-hours", type=float, default=24.0)
    parser.add_argument("--grace-hours", type=float, default=72.0)
    parser.add_argument("--stress", type=float, default=10.0, help="churn factor for validation")
    parser.add_argument("--target", type=float, default=1e-9, help="max annual loss for defaults")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    churn = ChurnModel()
    params, upload = EncodingParams(), UploadOptions()
    default = Setting(params.k, params.n, default_threshold(params.k, params.n), spare=upload.spare)
    settings = [Setting(k, n, t, spare=upload.spare) for k, n, t in SETTINGS]
    if default not in settings:
        settings.append(default)
    config = SimConfig(
        devices=args.devices,
        years=args.years,
        files_per_setting=args.files,
        accounts=args.accounts,
        check_interval_hours=args.check_hours,
        grace_hours=args.grace_hours,
        seed=args.seed,
    )
    print(
        f"# realistic churn: {args.devices} devices, {args.years} years, {args.files} files per"
        f" setting, checker every {args.check_hours} h counting nodes seen within"
        f" {args.grace_hours} h; loss_prob_year_* = Markov estimate ({MARKOV_YEARS:g}-year"
        " horizon), sim_* = counted in the simulation",
        flush=True,
    )
    rows = rows_for(settings, config, churn, MARKOV_YEARS)
    for row in rows:
        print("\n".join(setting_lines(row)), flush=True)

    print(f"# validation: churn x{args.stress:g}; stress_sim_* counted, stress_markov_* estimated")
    stressed = churn.stressed(args.stress)
    stress_config = SimConfig(
        devices=max(200, args.devices // 2),
        years=1.0,
        files_per_setting=max(args.files, 400),
        accounts=max(20, args.accounts // 2),
        check_interval_hours=args.check_hours,
        grace_hours=args.grace_hours,
        seed=args.seed,
    )
    stress_settings = [Setting(k, n, t, spare=upload.spare) for k, n, t in STRESS_SETTINGS]
    for row in rows_for(stress_settings, stress_config, stressed, None):
        name = row.setting.name
        for line in (
            metric_line(f"stress_sim_loss_prob_year_{name}", row.stats.annual_loss, "probability"),
            metric_line(
                f"stress_markov_loss_prob_year_{name}", row.markov.annual_loss, "probability"
            ),
            metric_line(f"stress_sim_lost_files_{name}", row.stats.lost, "files"),
        ):
            print(line, flush=True)

    print("# checker counting only nodes online at that moment (grace 0), default setting")
    online_only = SimConfig(
        devices=args.devices,
        years=args.years,
        files_per_setting=args.files,
        accounts=args.accounts,
        check_interval_hours=args.check_hours,
        grace_hours=0.0,
        seed=args.seed,
    )
    (strict,) = rows_for([default], online_only, churn, MARKOV_YEARS)
    print("\n".join(setting_lines(strict, prefix="online_only_")), flush=True)

    (current,) = [r for r in rows if r.setting == default]
    print(metric_line("default_annual_loss_probability", current.markov.annual_loss, "probability"))
    print(metric_line("default_expansion", default.expansion, "x"))
    print(metric_line("default_stored_expansion", current.stats.stored_expansion, "x"))
    print(
        metric_line(
            "default_repair_gb_per_tb_month",
            current.stats.repair_gb_per_tb_month,
            "GB_per_TB_month",
        )
    )
    best = choose(rows, args.target)
    if best is None:
        print(f"# recommendation: no setting reaches an annual loss below {args.target:g}")
    else:
        print(
            f"# recommendation (annual loss <= {args.target:g}, then least stored bytes, then"
            f" least traffic): {best.setting.k}-of-{best.setting.n}, repair below"
            f" {best.setting.threshold} healthy nodes: loss {best.markov.annual_loss:.2g}/year,"
            f" stored {best.stats.stored_expansion:.2f}x, repair"
            f" {best.stats.repair_gb_per_tb_month:.0f} GB/TB/month; current default"
            f" {default.k}-of-{default.n} t{default.threshold}: loss"
            f" {current.markov.annual_loss:.2g}/year, stored {current.stats.stored_expansion:.2f}x,"
            f" repair {current.stats.repair_gb_per_tb_month:.0f} GB/TB/month"
        )
    print(f"# ran in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
