"""`permacloud check [PATH]` and `permacloud repair [PATH]`: file health through the daemon."""

from __future__ import annotations

import argparse

from rich.table import Table

from desktop.cli.common import call, console, print_json

_STYLE = {"healthy": "green", "degraded": "yellow", "needs-repair": "red", "lost": "bold red"}


def _run(method: str, args: argparse.Namespace) -> int:
    params: dict[str, object] = {"path": args.path}
    if getattr(args, "force", False):
        params["force"] = True
    result = call(method, params)
    files = result["files"]
    if args.json:
        print_json(result)
    else:
        table = Table(header_style="bold")
        for column in ("path", "k/n", "healthy", "status", "renewed", "added"):
            table.add_column(column)
        for row in files:
            style = _STYLE.get(row["status"], "")
            status = f"[{style}]{row['status']}[/]" if style else row["status"]
            if row.get("error"):
                status += f" ({row['error']})"
            table.add_row(
                row["path"],
                f"{row['k']}/{row['n']}",
                str(row["healthy"]),
                status,
                str(row["renewed"]),
                str(row["added"]),
            )
        console.print(table)
    bad = [row for row in files if row["status"] in ("lost", "needs-repair")]
    return 1 if bad else 0


def cmd_check(args: argparse.Namespace) -> int:
    return _run("health.check", args)


def cmd_repair(args: argparse.Namespace) -> int:
    return _run("health.repair", args)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = subparsers.add_parser(
        "check", help="count the nodes holding each file's shares, renew leases"
    )
    repair = subparsers.add_parser(
        "repair", help="check, then repair files below the repair threshold"
    )
    repair.add_argument(
        "--force", action="store_true", help="bring files back to n nodes even above threshold"
    )
    for parser, func in ((check, cmd_check), (repair, cmd_repair)):
        parser.add_argument("path", nargs="?", default="/", help="a file or folder (default /)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(func=func)
