"""What the daemon-talking commands share: the IPC client, JSON output, progress bars."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from desktop.daemon.ipc_client import IpcClient
from desktop.daemon.ipc_protocol import Event
from desktop.daemon.paths import app_paths

console = Console()
err_console = Console(stderr=True)


def connect(timeout: float | None = 600.0) -> IpcClient:
    return IpcClient(app_paths().socket_path, timeout=timeout)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def call(method: str, params: dict[str, Any] | None = None) -> Any:
    with connect() as client:
        return client.call(method, params or {})


def call_with_progress(method: str, params: dict[str, Any], description: str) -> Any:
    """A request whose progress events drive a bar on stderr (only on a terminal)."""
    with connect(timeout=None) as client:
        if not sys.stderr.isatty():
            return client.call(method, params)
        columns = (
            *Progress.get_default_columns()[:1],
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task(description, total=None)

            def on_event(event: Event) -> None:
                if event.event == "progress" and isinstance(event.data, dict):
                    bar.update(
                        task, completed=event.data.get("done", 0), total=event.data.get("total")
                    )

            return client.call(method, params, on_event=on_event)


def human_size(nbytes: int | None) -> str:
    if nbytes is None:
        return "-"
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
