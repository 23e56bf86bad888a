"""The daemon's local IPC protocol, sans-I/O: newline-delimited JSON messages.

Three kinds of message travel over one Unix stream socket:

- request  (client -> daemon): ``{"id": 7, "method": "ls", "params": {"path": "/"}}``
- response (daemon -> client): ``{"id": 7, "result": ...}`` or
  ``{"id": 7, "error": {"code": "not_found", "message": "no such path: /x"}}``
- event    (daemon -> client): ``{"event": "progress", "data": {...}}``; progress of a request
  carries its ``request`` id; other topics flow after a ``subscribe`` request.

JSON lines keep the protocol debuggable with `socat` and trivially implementable by the tray,
which must not import the engine. Lines are capped so a confused client cannot exhaust memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from desktop.core.errors import PermaCloudError

MAX_LINE = 1 << 20
PROTOCOL_VERSION = 1


class IpcProtocolError(PermaCloudError):
    """A peer sent something that is not a valid message of this protocol."""


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    id: int
    result: Any = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True)
class Event:
    event: str
    data: Any = None


Message = Request | Response | Event


def encode(message: Message) -> bytes:
    """One message as one line of compact JSON, newline-terminated."""
    body: dict[str, Any]
    if isinstance(message, Request):
        body = {"id": message.id, "method": message.method, "params": message.params}
    elif isinstance(message, Response):
        if message.error_code is None:
            body = {"id": message.id, "result": message.result}
        else:
            body = {
                "id": message.id,
                "error": {"code": message.error_code, "message": message.error_message or ""},
            }
    else:
        body = {"event": message.event, "data": message.data}
    line = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    if len(line) > MAX_LINE:
        raise IpcProtocolError(f"message too large for IPC ({len(line)} bytes)")
    return line


def decode(line: bytes) -> Message:
    """Parse one line; anything malformed raises `IpcProtocolError` with a one-line reason."""
    try:
        body = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise IpcProtocolError(f"not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise IpcProtocolError("a message must be a JSON object")
    if "event" in body:
        if not isinstance(body["event"], str):
            raise IpcProtocolError("'event' must be a string")
        return Event(body["event"], body.get("data"))
    message_id = body.get("id")
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise IpcProtocolError("'id' must be an integer")
    if "method" in body:
        method, params = body["method"], body.get("params", {})
        if not isinstance(method, str) or not method:
            raise IpcProtocolError("'method' must be a non-empty string")
        if not isinstance(params, dict):
            raise IpcProtocolError("'params' must be a JSON object")
        return Request(message_id, method, params)
    if "error" in body:
        failure = body["error"]
        if not isinstance(failure, dict):
            raise IpcProtocolError("'error' must be an object")
        return Response(
            message_id,
            error_code=str(failure.get("code", "error")),
            error_message=str(failure.get("message", "")),
        )
    if "result" in body:
        return Response(message_id, result=body["result"])
    raise IpcProtocolError("a message needs 'method', 'result', 'error' or 'event'")


class LineBuffer:
    """Splits a byte stream into lines, refusing lines longer than `MAX_LINE`."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = bytearray()
        self._max_line = max_line

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            lines.append(bytes(self._buffer[:end]))
            del self._buffer[: end + 1]
        if len(self._buffer) > self._max_line:
            self._buffer.clear()
            raise IpcProtocolError(f"line longer than {self._max_line} bytes")
        return [line for line in lines if line.strip()]


def param(params: dict[str, Any], name: str, kind: type, *, default: Any = ...) -> Any:
    """A typed request parameter, or a clear error naming it."""
    if name not in params:
        if default is ...:
            raise IpcProtocolError(f"missing parameter '{name}'")
        return default
    value = params[name]
    if kind is int and isinstance(value, bool):
        raise IpcProtocolError(f"parameter '{name}' must be {kind.__name__}")
    if not isinstance(value, kind):
        raise IpcProtocolError(f"parameter '{name}' must be {kind.__name__}")
    return value
