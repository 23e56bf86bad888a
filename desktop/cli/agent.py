"""`permacloud agent ...`: what the storage node may take from this machine, and why.

Talks to the daemon (`agent.*` IPC methods); every change applies at once, without a restart.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.table import Table

from desktop.agent.human_values import format_rate, format_size, parse_duration
from desktop.cli.common import call, call_with_progress, console, print_json


def _rate(value: Any) -> str:
    return format_rate(value if isinstance(value, int) else None)


def _print_status(status: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("mode", f"{status['mode']} ({status['reason'] or 'no reason given'})")
    sharing = status["sharing"]
    until = status.get("paused_until")
    if isinstance(until, int | float):
        sharing += f", paused until {time.strftime('%a %H:%M', time.localtime(until))}"
    table.add_row("sharing", sharing)
    table.add_row(
        "allowance",
        f"up {_rate(status['upload_bps'])}, down {_rate(status['download_bps'])}, "
        f"background CPU {status['cpu_duty']:.0%}",
    )
    table.add_row(
        "new shares",
        f"accepting ({format_size(status['new_share_room'])} room)"
        if status["accepting_new_shares"]
        else "not accepting",
    )
    table.add_row(
        "today",
        f"served {format_size(status['served_today'])}, "
        f"received {format_size(status['received_today'])}",
    )
    table.add_row(
        "disk",
        f"donated {format_size(status['donated'])}, used {format_size(status['used'])} "
        f"in {status['shares']} shares, {format_size(status['disk_free'])} free "
        f"(keeping {format_size(status['min_free'])})",
    )
    if not status.get("node_running", True):
        table.add_row("node", "not running on this device")
    if status.get("settings_problem"):
        table.add_row("settings", f"[red]{status['settings_problem']}[/red]")
    console.print(table)


def cmd_status(args: argparse.Namespace) -> int:
    status = call("agent.status")
    if args.json:
        print_json(status)
    else:
        _print_status(status)
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    status = call("agent.set", {"key": args.key, "value": args.value})
    key = args.key.strip().lower().replace("-", "_")
    shown = status["sharing"] if key == "sharing" else status["settings"].get(key, args.value)
    console.print(f"{key} = {shown} (now {status['mode']}: {status['reason']})")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    seconds = parse_duration(args.duration) if args.duration is not None else None
    status = call("agent.pause", {"seconds": seconds})
    console.print(f"sharing paused: {status['reason']}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    status = call("agent.resume")
    console.print(f"sharing resumed: {status['mode']} ({status['reason']})")
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    result = call_with_progress("agent.leave", {}, "handing shares to other nodes")
    if args.json:
        print_json(result)
        return 0
    console.print(
        f"left: {result['moved']} share(s) handed to other nodes, {result['already']} already "
        f"held elsewhere, {result['dropped']} expired or unfinished dropped "
        f"({format_size(result['total'])}); sharing is off and the node is stopped"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = subparsers.add_parser(
        "agent", help="the storage node's share of this machine (bandwidth, disk, pause)"
    )
    commands = agent.add_subparsers(dest="agent_command", metavar="ACTION", required=True)
    status = commands.add_parser("status", help="current mode and why, allowances, disk use")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    set_parser = commands.add_parser(
        "set",
        help="change a setting (e.g. up_idle 20MB/s, donated 50G, sharing idle)",
    )
    set_parser.add_argument("key")
    set_parser.add_argument("value")
    set_parser.set_defaults(func=cmd_set)
    pause = commands.add_parser("pause", help="stop taking new shares; serve at the floor rate")
    pause.add_argument(
        "--for", dest="duration", metavar="DURATION", help="e.g. 1h, 30m (default: until resumed)"
    )
    pause.set_defaults(func=cmd_pause)
    resume = commands.add_parser("resume", help="end a pause")
    resume.set_defaults(func=cmd_resume)
    leave = commands.add_parser(
        "leave",
        help="hand every share this node keeps to other nodes, then stop donating "
        "(rerun to continue after an interruption)",
    )
    leave.add_argument("--json", action="store_true", help="machine-readable output")
    leave.set_defaults(func=cmd_leave)
