"""`permacloud sync add|remove|status`: folders kept in step with the namespace by the daemon."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from desktop.cli.common import call, console, print_json

DEFAULT_LOCAL = "~/PermaCloudSync"
DEFAULT_REMOTE = "/Sync"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sync = subparsers.add_parser("sync", help="keep a local folder in step on every device")
    commands = sync.add_subparsers(dest="sync_command", metavar="SUBCOMMAND", required=True)
    add = commands.add_parser("add", help="start syncing a local folder")
    add.add_argument(
        "local",
        nargs="?",
        help=f"an existing folder (default {DEFAULT_LOCAL}, created if missing)",
    )
    add.add_argument(
        "--as",
        dest="remote",
        default=DEFAULT_REMOTE,
        help=f"the namespace folder to sync with (default {DEFAULT_REMOTE})",
    )
    add.add_argument("--json", action="store_true", help="machine-readable output")
    add.set_defaults(func=cmd_add)
    remove = commands.add_parser(
        "remove", help="stop syncing a folder (its files stay, locally and in the cloud)"
    )
    remove.add_argument("local", help="the synced folder")
    remove.add_argument("--json", action="store_true", help="machine-readable output")
    remove.set_defaults(func=cmd_remove)
    status = commands.add_parser("status", help="per folder: in sync, pending, conflicts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)


def _absolute(text: str) -> Path:
    return Path(text).expanduser().absolute()


def cmd_add(args: argparse.Namespace) -> int:
    if args.local is None:
        local = _absolute(DEFAULT_LOCAL)
        local.mkdir(parents=True, exist_ok=True)
    else:
        local = _absolute(args.local)
    result = call("syncfolder.add", {"local": str(local), "remote": args.remote})
    if args.json:
        print_json(result)
    else:
        console.print(f"Syncing {result['local']} with {result['remote']}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    result = call("syncfolder.remove", {"local": str(_absolute(args.local))})
    if args.json:
        print_json(result)
    else:
        console.print(f"Stopped syncing {result['local']} (files kept)")
    return 0


def _describe(folder: dict[str, Any]) -> str:
    state = str(folder["state"])
    if state == "syncing":
        return f"[yellow]{folder['pending']} pending[/]"
    if state == "in sync":
        return "[green]in sync[/]"
    if state == "error":
        return f"[red]error: {folder['error']}[/]"
    return state


def cmd_status(args: argparse.Namespace) -> int:
    folders = call("syncfolder.status", {})
    if args.json:
        print_json(folders)
        return 0
    if not folders:
        console.print("No sync folders. Add one with: permacloud sync add [FOLDER]")
        return 0
    table = Table(show_edge=False)
    for column in ("Folder", "Cloud path", "State", "Pending", "Conflicts", "Synced"):
        table.add_column(column)
    for folder in folders:
        table.add_row(
            str(folder["local"]),
            str(folder["remote"]),
            _describe(folder),
            str(folder["pending"]),
            f"[red]{folder['conflicts']}[/]" if folder["conflicts"] else "0",
            str(folder["synced"]),
        )
    console.print(table)
    return 0
