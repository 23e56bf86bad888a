"""`permacloud daemon`: this device's background process, in the foreground."""

from __future__ import annotations

import argparse
import sys

import trio

from desktop.daemon.paths import app_paths
from desktop.daemon.service import Daemon, run_daemon


def cmd_daemon(args: argparse.Namespace) -> int:
    paths = app_paths()

    def ready(daemon: Daemon) -> None:
        print(
            f"daemon ready device={daemon.config.device_name} node={daemon.node_address()} "
            f"socket={paths.socket_path}",
            flush=True,
        )

    trio.run(run_daemon, paths, ready)
    print("daemon stopped", file=sys.stderr, flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    daemon = subparsers.add_parser("daemon", help="run this device's daemon in the foreground")
    daemon.set_defaults(func=cmd_daemon)
