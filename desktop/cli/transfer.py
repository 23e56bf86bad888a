"""`permacloud put` and `get`: through the daemon, or one-shot against a nodes file.

`put LOCAL PATH` / `get PATH LOCAL` (or `get LINK LOCAL`) go through this device's daemon and its
namespace. With `--nodes` the command is a one-shot client that talks to the listed nodes itself
(`put_with_nodes` / `get_with_nodes`): `put FILE --nodes N` prints only the read cap on stdout,
so `cap=$(permacloud put f --nodes n.toml)` works; `get CAP OUT --nodes N` reads it back.
Progress goes to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from desktop.cli.common import call_with_progress, console, human_size, print_json
from desktop.client.download import download_to_file
from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions, upload_file
from desktop.core.errors import PermaCloudError
from desktop.daemon.links import parse_link
from desktop.daemon.paths import app_paths
from desktop.net.identity import DeviceKey
from desktop.net.nodes_file import load_nodes_file

CLIENT_KEY_FILE = "client_key.pem"
ProgressCallback = Callable[[int, int], None]


class TransferUsageError(PermaCloudError):
    exit_code = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    put = subparsers.add_parser(
        "put", help="store a file in the cloud (PATH), or print its read cap (--nodes)"
    )
    put.add_argument("file", type=Path, help="file to upload")
    put.add_argument("path", nargs="?", help="where in the cloud (through the daemon)")
    put.add_argument("--nodes", type=Path, help="one-shot: upload to these nodes (TOML)")
    put.add_argument("--json", action="store_true", help="machine-readable output")
    put.add_argument("--k", type=int, default=3, help="shares needed to read (default 3)")
    put.add_argument("--n", type=int, default=10, help="shares stored (default 10)")
    put.add_argument(
        "--happy", type=int, default=7, help="nodes that must hold a share (default 7)"
    )
    put.add_argument(
        "--spare", type=int, default=2, help="extra uploads started, slowest cancelled"
    )
    put.set_defaults(func=run_put)
    get = subparsers.add_parser("get", help="download a file (cloud PATH, share link or cap)")
    get.add_argument("cap", help="cloud path, share link (permacloud:...) or read cap (pc1r:...)")
    get.add_argument("out", type=Path, help="output file (written atomically)")
    get.add_argument("--nodes", type=Path, help="one-shot: read from these nodes (TOML)")
    get.add_argument("--json", action="store_true", help="machine-readable output")
    get.set_defaults(func=run_get)


def client_key() -> DeviceKey:
    """This device's signing key for shares it uploads (it owns them: renew, delete)."""
    paths = app_paths().ensure()
    return DeviceKey.load_or_create(paths.data_dir / CLIENT_KEY_FILE)


@contextmanager
def _progress(description: str) -> Iterator[ProgressCallback | None]:
    if not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def put_with_nodes(
    path: Path, nodes_file: Path, options: UploadOptions, progress: ProgressCallback | None = None
) -> str:
    """Upload `path` to the nodes listed in `nodes_file`; returns the read cap string."""
    nodes = load_nodes_file(nodes_file)
    if not path.exists():
        raise TransferUsageError(f"{path} does not exist")
    if not path.is_file():
        raise TransferUsageError(f"{path} is not a regular file")
    key = client_key()

    async def main() -> str:
        async with NodePool(key, nodes) as pool:
            result = await upload_file(pool, path, options, progress=progress)
            return result.cap.to_string()

    return trio.run(main)


def get_with_nodes(
    cap_text: str, out: Path, nodes_file: Path, progress: ProgressCallback | None = None
) -> int:
    """Download the file named by `cap_text` to `out` (atomically); returns its size."""
    cap = parse_link(cap_text)
    nodes = load_nodes_file(nodes_file)
    if out.is_dir():
        raise TransferUsageError(f"{out} is a directory; give the output file name")
    key = client_key()

    async def main() -> int:
        async with NodePool(key, nodes) as pool:
            return await download_to_file(pool, cap, out, progress=progress)

    return trio.run(main)


def run_put(args: argparse.Namespace) -> int:
    if args.nodes is None:
        if args.path is None:
            raise TransferUsageError("give the cloud PATH to store to, or --nodes NODES_FILE")
        local = args.file.resolve()
        if not local.is_file():
            raise TransferUsageError(f"{args.file} is not a regular file")
        result = call_with_progress(
            "put", {"local": str(local), "path": args.path}, f"put {local.name}"
        )
        if args.json:
            print_json(result)
        else:
            console.print(f"stored {result['path']} ({human_size(result['size'])})")
        return 0
    if args.path is not None:
        raise TransferUsageError("with --nodes, put takes only the FILE (it prints a read cap)")
    options = UploadOptions(k=args.k, n=args.n, happy=args.happy, spare=args.spare)
    with _progress(f"put {args.file.name}") as progress:
        cap = put_with_nodes(args.file, args.nodes, options, progress)
    print(cap, flush=True)
    return 0


def run_get(args: argparse.Namespace) -> int:
    if args.nodes is None:
        local = args.out.resolve()
        result = call_with_progress(
            "get", {"path": args.cap, "local": str(local)}, f"get {args.out.name}"
        )
        if args.json:
            print_json(result)
        else:
            console.print(f"wrote {result['local']} ({human_size(result['size'])})")
        return 0
    with _progress(f"get {args.out.name}") as progress:
        get_with_nodes(args.cap, args.out, args.nodes, progress)
    return 0
