"""`permacloud tray`: the tray icon process (talks to the daemon over IPC only)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console

from desktop.core.errors import PermaCloudError
from desktop.daemon.ipc_client import IpcClient
from desktop.daemon.paths import app_paths


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tray", help="show the PermaCloud icon in the system tray")
    _add_arguments(parser)
    parser.set_defaults(func=run_command)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--open-folder",
        action="store_true",
        help="also open the sync folder (what the application launcher does)",
    )
    parser.add_argument(
        "--notify-interval",
        type=float,
        default=30.0,
        help="at most one notification per kind this often, in seconds (default 30)",
    )
    parser.add_argument(
        "--wait-for-tray",
        type=float,
        default=15.0,
        help="seconds to wait for a system tray to appear before giving up (default 15)",
    )


def _open_sync_folder(console: Console) -> None:
    from desktop.tray.launcher import open_path

    paths = app_paths()
    try:
        with IpcClient(paths.socket_path, timeout=5.0) as client:
            status = client.call("status")
    except PermaCloudError as error:
        console.print(f"[yellow]cannot open the sync folder:[/] {error}")
        return
    sync = status.get("sync") if isinstance(status, dict) else None
    folder = sync.get("folder") if isinstance(sync, dict) else None
    if not isinstance(folder, str) or not folder:
        console.print("[yellow]no sync folder is configured yet[/]")
        return
    open_path(folder)


def run_command(args: argparse.Namespace) -> int:
    # Imported here so `permacloud --help` does not pay for Pillow.
    from desktop.tray.app import TrayApp
    from desktop.tray.single import InstanceLock

    console = Console(stderr=True)
    if args.notify_interval < 0 or args.wait_for_tray < 0:
        raise PermaCloudError("--notify-interval and --wait-for-tray must not be negative")
    if args.open_folder:
        _open_sync_folder(console)
    paths = app_paths().ensure()
    lock = InstanceLock(paths.runtime_dir / "tray.lock")
    if not lock.acquire():
        console.print("The PermaCloud tray is already running.")
        return 0
    try:
        TrayApp(
            paths.socket_path,
            notify_interval=args.notify_interval,
            tray_wait=args.wait_for_tray,
        ).run()
    finally:
        lock.release()
    return 0


def main(argv: Sequence[str]) -> int:
    """Entry point of `python -m desktop.tray`, with the same error handling as the CLI."""
    parser = argparse.ArgumentParser(prog="permacloud tray")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return run_command(args)
    except PermaCloudError as error:
        print(f"permacloud: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130
