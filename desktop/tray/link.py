"""The tray's line to the daemon: an event subscription plus a status poll, in threads.

Events make changes show at once (a `status` event triggers an immediate poll); the 2 s poll
is what notices a daemon that died (a dead peer does not always close the event socket promptly)
and what reconnects when it comes back. Every call opens its own short-lived connection so one
stuck request cannot wedge the others.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from desktop.core.errors import PermaCloudError
from desktop.daemon.ipc_client import IpcClient

logger = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
CALL_TIMEOUT = 5.0
EVENT_TOPICS = ["status", "notify"]

StatusCallback = Callable[[Mapping[str, Any] | None], None]
NotifyCallback = Callable[[Mapping[str, Any]], None]


class DaemonLink:
    def __init__(
        self,
        socket_path: Path,
        on_status: StatusCallback,
        on_notify: NotifyCallback,
        *,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self.socket_path = socket_path
        self._on_status = on_status
        self._on_notify = on_notify
        self._poll_interval = poll_interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._event_client: IpcClient | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One request on a fresh connection; raises `DaemonNotRunning` / `DaemonError`."""
        with IpcClient(self.socket_path, timeout=CALL_TIMEOUT) as client:
            return client.call(method, params)

    def start(self) -> None:
        for target, name in ((self._poll_loop, "tray-poll"), (self._event_loop, "tray-events")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def refresh_soon(self) -> None:
        """Poll now instead of at the next tick (after the user changed something)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            if self._event_client is not None:
                self._event_client.close()

    def _poll_once(self) -> None:
        try:
            status = self.call("status")
        except (PermaCloudError, OSError) as error:
            logger.debug("status poll failed: %s", error)
            status = None
        if status is not None and not isinstance(status, Mapping):
            logger.warning("ignoring a status reply that is not an object")
            status = None
        self._on_status(status)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._poll_once()
            self._wake.wait(self._poll_interval)
            self._wake.clear()

    def _event_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client = IpcClient(self.socket_path, timeout=None)
            except (PermaCloudError, OSError):
                self._stop.wait(1.0)
                continue
            with self._lock:
                self._event_client = client
            try:
                for event in client.events(EVENT_TOPICS):
                    self._dispatch(event.event, event.data)
            except (PermaCloudError, OSError) as error:
                logger.debug("event stream ended: %s", error)
            finally:
                with self._lock:
                    self._event_client = None
                with contextlib.suppress(OSError):
                    client.close()
            self._wake.set()
            self._stop.wait(1.0)

    def _dispatch(self, topic: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            return
        if topic == "status":
            # The daemon's status events carry only what changed ({"sync": "paused"},
            # {"agent": {...}}), not a whole status: re-read the status instead of guessing.
            self.refresh_soon()
        elif topic == "notify":
            self._on_notify(data)
