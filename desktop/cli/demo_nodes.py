"""`permacloud demo nodes`: a local network of real node processes to try put/get against.

Each node is a child `python -m desktop node run` with its own data dir (so its identity
persists: rerunning on the same directory brings back the same node IDs). The command writes
`DIR/nodes.toml`, shows the nodes, and supervises them in the foreground until Ctrl-C or
SIGTERM, then stops them all.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from desktop.core.errors import PermaCloudError
from desktop.net.nodes_file import NodeAddress, write_nodes_file

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class DemoNodesError(PermaCloudError):
    """A demo node could not start."""


@dataclass
class LocalNode:
    name: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    node_id: str = ""
    address: str = ""

    @property
    def node_address(self) -> NodeAddress:
        host, port = self.address.rsplit(":", 1)
        return NodeAddress(self.node_id, host, int(port))


def register_demo(demo_sub: SubParsers) -> None:
    nodes = demo_sub.add_parser("nodes", help="run N local storage nodes until Ctrl-C")
    nodes.add_argument("--count", type=int, default=10, help="how many nodes (default 10)")
    nodes.add_argument("--dir", type=Path, required=True, help="directory for the nodes' data")
    nodes.add_argument(
        "--base-port", type=int, default=0, help="first port (default: any free ports)"
    )
    nodes.add_argument("--quota", default="2G", help="space each node offers (default 2G)")
    nodes.set_defaults(func=run_nodes)


def start_local_nodes(
    count: int, base: Path, *, base_port: int = 0, quota: str = "2G", extra: Sequence[str] = ()
) -> list[LocalNode]:
    """Start `count` node processes under base/nodeNN and wait until all listen (benchmarks
    use this too). Stop them with `stop_local_nodes`."""
    children: list[LocalNode] = []
    try:
        for index in range(count):
            name = f"node{index:02d}"
            port = base_port + index if base_port else 0
            children.append(_start(name, base / name, port, quota, extra))
        _wait_ready(children)
    except BaseException:
        stop_local_nodes(children)
        raise
    return children


def _start(
    name: str, data_dir: Path, port: int, quota: str, extra: Sequence[str] = ()
) -> LocalNode:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "desktop",
                "node",
                "run",
                "--data",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{port}",
                "--quota",
                quota,
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
    finally:
        log.close()
    return LocalNode(name, data_dir, process)


def _wait_ready(children: list[LocalNode]) -> None:
    selector = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {}
    for child in children:
        assert child.process.stdout is not None
        selector.register(child.process.stdout, selectors.EVENT_READ, child)
    waiting = len(children)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while waiting and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                ready: LocalNode = key.data
                fd = key.fileobj.fileno()  # type: ignore[union-attr]
                chunk = os.read(fd, 4096)
                if not chunk:
                    selector.unregister(key.fileobj)
                    raise DemoNodesError(
                        f"node {ready.name} exited during start (see {ready.data_dir}.log)"
                    )
                buffers[fd] = buffers.get(fd, b"") + chunk
                for line in buffers[fd].decode(errors="replace").splitlines():
                    if line.startswith("node_id=") and not ready.node_id:
                        fields = dict(part.split("=", 1) for part in line.split())
                        ready.node_id, ready.address = fields["node_id"], fields["listen"]
                        waiting -= 1
                        selector.unregister(key.fileobj)
                        break
    finally:
        selector.close()
    if waiting:
        raise DemoNodesError(f"{waiting} node(s) did not start within {START_TIMEOUT:.0f} s")


def stop_local_nodes(children: list[LocalNode]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        if child.process.stdout is not None:
            child.process.stdout.close()


def run_nodes(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 200:
        raise DemoNodesError("--count must be between 1 and 200")
    if args.base_port and not 1024 <= args.base_port <= 65535 - args.count:
        raise DemoNodesError("--base-port must leave room for --count ports below 65536")
    base: Path = args.dir
    console = Console(stderr=True)
    stop_requested: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[LocalNode] = []
    try:
        children = start_local_nodes(args.count, base, base_port=args.base_port, quota=args.quota)
        nodes_file = base / "nodes.toml"
        write_nodes_file(nodes_file, [child.node_address for child in children])
        table = Table(title=f"{len(children)} PermaCloud nodes")
        table.add_column("name")
        table.add_column("node id")
        table.add_column("address")
        for child in children:
            table.add_row(child.name, child.node_id, child.address)
        out = Console()
        out.print(table)
        out.print(f"nodes file: [bold]{nodes_file}[/bold]")
        out.print("try:")
        out.print(f"  cap=$(permacloud put FILE --nodes {nodes_file})", soft_wrap=True)
        out.print(f"  permacloud get $cap OUT --nodes {nodes_file}", soft_wrap=True)
        out.print("Ctrl-C stops the nodes.", style="dim")
        sys.stdout.flush()
        while not stop_requested:
            for child in children:
                if child.process.poll() is not None:
                    console.print(
                        f"[red]node {child.name} exited ({child.process.returncode}); "
                        f"see {child.data_dir}.log[/red]"
                    )
                    raise DemoNodesError(f"node {child.name} exited unexpectedly")
            time.sleep(0.2)
        console.print(f"stopping {len(children)} nodes ({signal.Signals(stop_requested[0]).name})")
    finally:
        stop_local_nodes(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
