"""Namespace commands through the daemon: ls, mkdir, mv, rm, versions, restore, share, status."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Callable
from typing import Any

from rich.table import Table

from desktop.cli.common import call, console, human_size, print_json


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def cmd_ls(args: argparse.Namespace) -> int:
    rows = call("ls", {"path": args.path})
    if args.json:
        print_json(rows)
        return 0
    table = Table(box=None, show_header=True, header_style="bold")
    for column in ("name", "size", "modified"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for row in rows:
        name = row["name"] + ("/" if row["kind"] == "dir" else "")
        if row["kind"] == "link":
            name += f" -> {row['target']}"
        if row["conflict_of"]:
            name += f"  [yellow](conflict copy of {row['conflict_of']})[/]"
        size = "" if row["kind"] == "dir" else human_size(row["size"])
        modified = _when(row["mtime_ns"] / 1e9) if row["mtime_ns"] else ""
        table.add_row(name, size, modified)
    console.print(table)
    return 0


def _simple(method: str, keys: tuple[str, ...], message: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        params = {key: getattr(args, key) for key in keys}
        result = call(method, params)
        if getattr(args, "json", False):
            print_json(result)
        else:
            console.print(message.format(**result))
        return 0

    return run


def cmd_versions(args: argparse.Namespace) -> int:
    rows = call("versions", {"path": args.path})
    if args.json:
        print_json(rows)
        return 0
    table = Table(title=f"Versions of {args.path}", header_style="bold")
    for column in ("#", "when", "device", "size", "state"):
        table.add_column(column)
    for row in rows:
        state = "deleted" if row["deleted"] else (row["kind"] or "")
        table.add_row(
            str(row["number"]),
            _when(row["time"]),
            row["device"][:8],
            human_size(row["size"]),
            state,
        )
    console.print(table)
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    result = call("share", {"path": args.path})
    if args.json:
        print_json(result)
    else:
        print(result["link"])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = call("status")
    if args.json:
        print_json(status)
        return 0
    nodes = call("nodes")
    storage = status["storage"]
    console.print(
        f"[bold]{status['device']['name']}[/] · account {status['device']['account']} · "
        f"node {status['node']['address']}"
    )
    console.print(
        f"Nodes online: {status['nodes']['online']} of {status['nodes']['known']} · "
        f"stored: {storage['files']} files, {human_size(storage['stored_bytes'])} · "
        f"donating {human_size(storage['donated_bytes'])} "
        f"({human_size(storage['used_donated_bytes'])} used) · "
        f"pending publication: {status['pending']['publish']}"
    )
    console.print(_nodes_table(nodes, short=True, title="Storage nodes"))
    return 0


def cmd_nodes(args: argparse.Namespace) -> int:
    nodes = call("nodes")
    if args.json:
        print_json(nodes)
        return 0
    console.print(_nodes_table(nodes, short=False, title=None))
    return 0


def _nodes_table(nodes: list[dict[str, Any]], *, short: bool, title: str | None) -> Table:
    """`short` (inside `status`) keeps the columns that fit 80 characters without wrapping."""
    table = Table(title=title, header_style="bold")
    wanted = ("node", "address", "online", "audit", "standing")
    columns: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("node", lambda n: n["id"][:12] if short else n["id"]),
        ("address", lambda n: n["address"]),
        ("known from", lambda n: n["source"]),
        ("online", lambda n: "[green]yes[/]" if n["online"] else "[red]no[/]"),
        ("audit", _audit_cell),
        ("uptime", lambda n: f"{n.get('uptime_score', 1.0):.0%}"),
        ("latency", lambda n: "-" if n.get("latency_ms") is None else f"{n['latency_ms']:.0f} ms"),
        ("standing", _standing),
    ]
    if short:
        columns = [column for column in columns if column[0] in wanted]
    for name, _ in columns:
        # Short IDs and addresses never wrap; full IDs fold rather than lose characters.
        table.add_column(name, no_wrap=short and name in ("node", "address"), overflow="fold")
    for node in nodes:
        table.add_row(*(cell(node) for _, cell in columns))
    return table


def _audit_cell(node: dict[str, Any]) -> str:
    """Score with passed/failed audit counts, e.g. `0.98 (12/0)`."""
    passed, failed = node.get("audits_passed", 0), node.get("audits_failed", 0)
    if not passed and not failed:
        return "-"
    return f"{node.get('audit_score', 1.0):.2f} ({passed}/{failed})"


def _standing(node: dict[str, Any]) -> str:
    if node.get("bad"):
        return "[red]bad[/]"
    return "[green]vetted[/]" if node.get("vetted") else "[yellow]new[/]"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def add(name: str, help_text: str, func: Any, *args: str, json_flag: bool = True) -> Any:
        parser = subparsers.add_parser(name, help=help_text)
        for arg in args:
            parser.add_argument(arg)
        if json_flag:
            parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.set_defaults(func=func)
        return parser

    ls = add("ls", "list a folder of the cloud", cmd_ls)
    ls.add_argument("path", nargs="?", default="/")
    mkdir = add(
        "mkdir", "make a folder", _simple("mkdir", ("path", "parents"), "created {path}"), "path"
    )
    mkdir.add_argument("-p", "--parents", action="store_true", help="make parent folders too")
    add("mv", "move or rename", _simple("mv", ("src", "dst"), "moved {src} -> {dst}"), "src", "dst")
    rm = add(
        "rm",
        "remove (kept in history: see versions/restore)",
        _simple("rm", ("path", "recursive"), "removed {path}"),
        "path",
    )
    rm.add_argument(
        "-r", "--recursive", action="store_true", help="remove a folder and its contents"
    )
    add("versions", "list the versions of a path", cmd_versions, "path")
    restore = add(
        "restore",
        "bring back an old version",
        _simple("restore", ("path", "version"), "restored {path} to version {version}"),
        "path",
    )
    restore.add_argument("--version", type=int, required=True, help="version number (see versions)")
    add("share", "print a link anyone on the network can read the file with", cmd_share, "path")
    add("status", "nodes online, space used and donated, pending uploads", cmd_status)
    add("nodes", "the storage nodes this device knows", cmd_nodes)
