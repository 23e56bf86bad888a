"""`permacloud mount [MOUNTPOINT]` and `permacloud unmount`: the FUSE mount, run by the daemon."""

from __future__ import annotations

import argparse
from pathlib import Path

from desktop.cli.common import call, console, human_size, print_json

DEFAULT_MOUNTPOINT = "~/PermaCloud"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mount = subparsers.add_parser(
        "mount",
        help="show PermaCloud as a folder (FUSE; needs root or access to /dev/fuse)",
    )
    mount.add_argument(
        "mountpoint",
        nargs="?",
        default=DEFAULT_MOUNTPOINT,
        help=f"an empty folder (default {DEFAULT_MOUNTPOINT}, created if missing)",
    )
    mount.add_argument("--json", action="store_true", help="machine-readable output")
    mount.set_defaults(func=cmd_mount)
    unmount = subparsers.add_parser(
        "unmount", help="upload what is pending (bounded wait), then unmount the folder"
    )
    unmount.add_argument("--json", action="store_true", help="machine-readable output")
    unmount.set_defaults(func=cmd_unmount)


def cmd_mount(args: argparse.Namespace) -> int:
    path = Path(args.mountpoint).expanduser().absolute()
    result = call("mount", {"path": str(path)})
    if args.json:
        print_json(result)
    else:
        console.print(f"Mounted PermaCloud at {result['path']}")
    return 0


def cmd_unmount(args: argparse.Namespace) -> int:
    result = call("unmount", {})
    if args.json:
        print_json(result)
        return 0
    console.print(f"Unmounted {result['path']}")
    if result["pending_files"]:
        console.print(
            f"[yellow]{result['pending_files']} files ({human_size(result['pending_bytes'])})"
            " are still uploading in the background[/]"
        )
    return 0
