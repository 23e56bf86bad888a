"""Start real `permacloud node run` processes on 127.0.0.1 for tests.

Importable from any test as `from helpers_nodes import start_node, start_nodes` (pytest puts
`tests/` on sys.path because `tests/conftest.py` has no package). The `node_factory` fixture in
`tests/conftest.py` wraps these and stops every node it started.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from desktop.net.identity import DeviceKey
from desktop.net.node_client import NodeClient
from desktop.net.nodes_file import NodeAddress, write_nodes_file

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


@dataclass
class NodeProcess:
    """One running node process; `restart()` reuses its data dir and port."""

    data_dir: Path
    node_id: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def node_address(self) -> NodeAddress:
        return NodeAddress(self.node_id, self.host, self.port)

    def client(self, key: DeviceKey, **kwargs: object) -> NodeClient:
        return NodeClient(self.node_id, self.address, key, **kwargs)  # type: ignore[arg-type]

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a crash."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        _close_pipe(self.process)

    def restart(self) -> NodeProcess:
        if self.alive():
            self.terminate()
        _close_pipe(self.process)
        return _launch(self.data_dir, self.args, self.log_path, port=self.port)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _close_pipe(process: subprocess.Popen[bytes]) -> None:
    if process.stdout is not None and not process.stdout.closed:
        process.stdout.close()


def _launch(data_dir: Path, args: list[str], log_path: Path, port: int = 0) -> NodeProcess:
    command = [sys.executable, "-m", "desktop", "-v", "node", "run", "--data", str(data_dir)]
    command += ["--listen", f"127.0.0.1:{port}", *args]
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed right after
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, cwd=REPO_ROOT, env=dict(os.environ)
        )
    finally:
        log.close()
    try:
        node_id, host, bound = _read_ready_line(process, log_path)
    except BaseException:
        process.kill()
        process.wait()
        _close_pipe(process)
        raise
    return NodeProcess(data_dir, node_id, host, bound, process, log_path, args)


def _read_ready_line(process: subprocess.Popen[bytes], log_path: Path) -> tuple[str, str, int]:
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_TIMEOUT
    buffered = b""
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.2):
                if process.poll() is not None:
                    break
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffered += chunk
            for line in buffered.decode(errors="replace").splitlines():
                if line.startswith("node_id="):
                    fields = dict(part.split("=", 1) for part in line.split())
                    host, port = fields["listen"].rsplit(":", 1)
                    return fields["node_id"], host, int(port)
    finally:
        selector.close()
    log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise RuntimeError(f"node did not start (exit {process.poll()}); log tail:\n{log}")


def start_node(
    data_dir: Path,
    *,
    quota: str = "1G",
    sweep_interval: float | None = None,
    extra_args: list[str] | None = None,
    port: int = 0,
) -> NodeProcess:
    """Start `permacloud node run` on 127.0.0.1 (free port) and wait until it listens."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = ["--quota", quota, *(extra_args or [])]
    if sweep_interval is not None:
        args += ["--sweep-interval", str(sweep_interval)]
    return _launch(data_dir, args, data_dir.with_suffix(".log"), port=port)


def start_nodes(count: int, base_dir: Path, **kwargs: object) -> list[NodeProcess]:
    """Start `count` nodes under base_dir/node-00, node-01, ... (their logs next to them)."""
    nodes: list[NodeProcess] = []
    try:
        for index in range(count):
            nodes.append(start_node(base_dir / f"node-{index:02d}", **kwargs))  # type: ignore[arg-type]
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        if node.alive():
            node.process.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            node.process.wait(15)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
        _close_pipe(node.process)


def write_nodes_toml(path: Path, nodes: list[NodeProcess]) -> Path:
    """A nodes file listing `nodes`, for commands that take one."""
    write_nodes_file(path, [node.node_address for node in nodes])
    return path


class NodeFactory:
    """Starts nodes under one directory and remembers them, so one call stops them all."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.started: list[NodeProcess] = []

    def start(
        self,
        name: str = "node",
        *,
        quota: str = "1G",
        sweep_interval: float | None = None,
        extra_args: list[str] | None = None,
    ) -> NodeProcess:
        node = start_node(
            self.base_dir / name, quota=quota, sweep_interval=sweep_interval, extra_args=extra_args
        )
        self.started.append(node)
        return node

    def start_many(self, count: int, *, quota: str = "1G") -> list[NodeProcess]:
        return [self.start(f"node-{index:02d}", quota=quota) for index in range(count)]

    def restart(self, node: NodeProcess) -> NodeProcess:
        """Restart on the same data dir and port (after a kill or a clean stop)."""
        fresh = node.restart()
        self.started.append(fresh)
        return fresh

    def stop_all(self) -> None:
        stop_nodes(self.started)
