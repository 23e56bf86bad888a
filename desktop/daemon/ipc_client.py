"""The client side of IPC, blocking on purpose: the CLI and the tray (a GTK thread) use it.

It imports nothing of the engine, so the tray stays a small separate process.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from desktop.core.errors import PermaCloudError
from desktop.daemon.ipc_protocol import Event, LineBuffer, Request, Response, decode, encode


class DaemonNotRunning(PermaCloudError):
    """No daemon answers on this device's socket."""


class DaemonError(PermaCloudError):
    """The daemon refused or failed a request; `code` is the protocol's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class IpcClient:
    def __init__(self, socket_path: Path, *, timeout: float | None = 30.0) -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError):
            self._sock.close()
            raise DaemonNotRunning(
                "the PermaCloud daemon is not running (start it with 'permacloud daemon')"
            ) from None
        self._ids = itertools.count(1)
        self._buffer = LineBuffer()
        self._pending: list[bytes] = []

    def __enter__(self) -> IpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _next_message(self) -> Event | Response:
        while not self._pending:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                raise DaemonError("timeout", "the daemon did not answer in time") from None
            if not data:
                raise DaemonError("disconnected", "the daemon closed the connection")
            self._pending.extend(self._buffer.feed(data))
        message = decode(self._pending.pop(0))
        if not isinstance(message, (Event, Response)):
            raise DaemonError("bad_reply", "the daemon sent a request")
        return message

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
    ) -> Any:
        """Send one request and wait for its reply; events meanwhile go to `on_event`."""
        request_id = next(self._ids)
        self._sock.sendall(encode(Request(request_id, method, params or {})))
        while True:
            message = self._next_message()
            if isinstance(message, Event):
                if on_event is not None:
                    on_event(message)
                continue
            if message.id not in (request_id, 0):
                continue
            if not message.ok:
                raise DaemonError(message.error_code or "error", message.error_message or "")
            return message.result

    def events(self, topics: list[str] | None = None) -> Iterator[Event]:
        """Subscribe now; the iterator yields events until the daemon goes away."""
        self.call("subscribe", {"topics": topics or []})
        return self._iter_events()

    def _iter_events(self) -> Iterator[Event]:
        while True:
            message = self._next_message()
            if isinstance(message, Event):
                yield message
