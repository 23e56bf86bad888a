"""`permacloud node run`: run a storage node in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import re
import signal
import sys
from pathlib import Path

import trio
from rich.console import Console

from desktop.agent.node import NodeConfig, RunningNode, serve_node
from desktop.core.errors import PermaCloudError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class UsageError(PermaCloudError):
    exit_code = 2


class NodeStartError(PermaCloudError):
    """The node could not start (address in use, unreadable data dir...)."""


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1.5T`, `123` (bytes); binary units, an optional trailing `B`/`iB`."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if match is None:
        raise UsageError(f"invalid size {text!r}: use bytes or a number with K, M, G or T")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"invalid listen address {text!r}: use HOST:PORT, e.g. 127.0.0.1:8443")
    return host.strip("[]"), int(port)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = subparsers.add_parser("node", help="run or inspect a storage node")
    node_sub = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    run = node_sub.add_parser("run", help="run a storage node in the foreground")
    run.add_argument("--data", required=True, type=Path, help="node data directory")
    run.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free port)")
    run.add_argument("--quota", default="10G", help="space offered, e.g. 500M, 2G (default 10G)")
    run.add_argument(
        "--sweep-interval", type=float, default=3600.0, help="seconds between lease sweeps"
    )
    run.add_argument(
        "--read-rate", type=float, default=500.0, help="unsigned requests per second per peer"
    )
    run.add_argument(
        "--no-fsync",
        action="store_true",
        help="skip fsync (benchmarks of the HTTP layer only: not crash-safe)",
    )
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    host, port = parse_listen(args.listen)
    quota = parse_size(args.quota)
    if args.sweep_interval <= 0:
        raise UsageError("--sweep-interval must be positive")
    config = NodeConfig(
        data_dir=args.data,
        quota=quota,
        host=host,
        port=port,
        sweep_interval=args.sweep_interval,
        fsync=not args.no_fsync,
    )
    config.limits.read_rate = args.read_rate
    config.limits.read_burst = max(args.read_rate * 4, 1.0)
    try:
        trio.run(_run, config)
    except BaseExceptionGroup as group:
        leaf = _first_leaf(group)
        if isinstance(leaf, PermaCloudError):
            raise leaf from None
        if isinstance(leaf, OSError):
            raise NodeStartError(
                f"cannot start node on {host}:{port}: {leaf.strerror or leaf}"
            ) from None
        raise
    return 0


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _run(config: NodeConfig) -> None:
    console = Console(stderr=True)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            running: RunningNode = await nursery.start(serve_node, config)
            console.print(
                f"PermaCloud node [bold]{running.node_id}[/bold] listening on "
                f"https://{running.host}:{running.port} (quota {config.quota} bytes)",
                soft_wrap=True,
            )
            print(f"node_id={running.node_id} listen={running.host}:{running.port}", flush=True)
            async for signum in signals:
                console.print(f"stopping node ({signal.Signals(signum).name})")
                nursery.cancel_scope.cancel()
                break
    sys.stdout.flush()
