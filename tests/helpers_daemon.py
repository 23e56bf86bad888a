"""Real devices for tests: `permacloud init`/`join` in their own PERMACLOUD_HOME and a real
`permacloud daemon` process each, talking to real node processes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desktop.daemon.ipc_client import DaemonError, DaemonNotRunning, IpcClient

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PERMACLOUD_HOME"] = str(home)
    env["PERMACLOUD_NO_KEYRING"] = "1"
    env["PERMACLOUD_REPLICATION_INTERVAL"] = "0.5"
    env["PERMACLOUD_ZEROCONF_INTERFACES"] = "127.0.0.1"  # LAN discovery stays on loopback
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def run_cli(
    home: Path, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "desktop", *args],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"permacloud {' '.join(args)} failed: {result.stderr}")
    return result


@dataclass
class Device:
    name: str
    home: Path
    process: subprocess.Popen[bytes] | None = None
    log_files: list[Path] = field(default_factory=list)

    @property
    def socket_path(self) -> Path:
        return self.home / "run" / "daemon.sock"

    def start(self) -> Device:
        log_path = self.home / f"daemon-{len(self.log_files)}.log"
        self.log_files.append(log_path)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "desktop", "-v", "daemon"],
                env=cli_env(self.home),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon {self.name} exited: {self.log()}")
            if "daemon ready" in log_path.read_text(errors="replace"):
                return self
            time.sleep(0.05)
        raise AssertionError(f"daemon {self.name} did not start: {self.log()}")

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.log_files if p.exists())

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 120) -> Any:
        with IpcClient(self.socket_path, timeout=timeout) as client:
            return client.call(method, params or {})

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(self.home, *args, check=check)

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def stop(self, timeout: float = 20.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"daemon {self.name} did not stop on SIGTERM") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def wait_until(self, predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except (DaemonNotRunning, AssertionError, KeyError):
                last = None
            except DaemonError as error:  # a path that has not arrived yet is "not yet"
                if error.code != "not_found":
                    raise
                last = None
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: timed out waiting for {what} (last: {last!r})")


class DeviceFactory:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.devices: list[Device] = []

    def init(self, name: str, nodes_file: Path) -> Device:
        device = Device(name, self.base / name)
        run_cli(device.home, "init", "--name", name, "--nodes", str(nodes_file))
        self.devices.append(device)
        return device

    def join(self, name: str, code: str) -> Device:
        device = Device(name, self.base / name)
        run_cli(device.home, "join", code, "--name", name)
        self.devices.append(device)
        return device

    def stop_all(self) -> None:
        for device in self.devices:
            try:
                device.stop()
            except AssertionError:
                device.kill()


@contextmanager
def env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the daemons started inside (they inherit os.environ)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
