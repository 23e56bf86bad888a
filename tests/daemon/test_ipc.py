"""IPC over a real Unix socket: the trio server and the blocking client the CLI and tray use."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import trio

from desktop.daemon.ipc_client import DaemonError, DaemonNotRunning, IpcClient
from desktop.daemon.ipc_protocol import Event, IpcProtocolError, LineBuffer, decode, param
from desktop.daemon.ipc_server import CallContext, EventBus, IpcServer, NotFound


async def _echo(params: dict[str, Any], ctx: CallContext) -> Any:
    for step in range(3):
        await ctx.progress(done=step + 1, total=3)
    return {"echo": param(params, "text", str)}


async def _missing(params: dict[str, Any], ctx: CallContext) -> Any:
    raise NotFound(f"no such path: {param(params, 'path', str)}")


async def _crash(params: dict[str, Any], ctx: CallContext) -> Any:
    raise RuntimeError("boom")


HANDLERS = {"echo": _echo, "missing": _missing, "crash": _crash}


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "d.sock"


async def _with_server(sock_path: Path, bus: EventBus | None, body: Any) -> Any:
    server = IpcServer(sock_path, HANDLERS, bus)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        result = await trio.to_thread.run_sync(body)
        nursery.cancel_scope.cancel()
    return result


async def test_round_trip_with_progress_and_errors(sock_path: Path) -> None:
    def body() -> None:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        events: list[Event] = []
        with IpcClient(sock_path) as client:
            assert client.call("echo", {"text": "hi"}, on_event=events.append) == {"echo": "hi"}
            assert [e.data["done"] for e in events] == [1, 2, 3]
            with pytest.raises(DaemonError, match="no such path: /x") as info:
                client.call("missing", {"path": "/x"})
            assert info.value.code == "not_found"
            with pytest.raises(DaemonError, match="unknown method 'nope'"):
                client.call("nope")
            with pytest.raises(DaemonError, match="parameter 'text' must be str"):
                client.call("echo", {"text": 5})
            with pytest.raises(DaemonError, match="internal error: boom"):
                client.call("crash")
            assert client.call("echo", {"text": "still alive"}) == {"echo": "still alive"}

    await _with_server(sock_path, None, body)
    assert not await trio.Path(sock_path).exists()


async def test_garbage_lines_get_errors_and_the_server_survives(sock_path: Path) -> None:
    def body() -> None:
        raw = socket.socket(socket.AF_UNIX)
        raw.connect(str(sock_path))
        raw.sendall(b"this is not json\n[1,2]\n")
        replies = raw.recv(65536).decode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            raw.sendall(b"x" * (2 << 20))  # over the line cap: the server hangs up
        raw.close()
        assert "not valid JSON" in replies
        with IpcClient(sock_path) as client:
            assert client.call("echo", {"text": "ok"}) == {"echo": "ok"}

    await _with_server(sock_path, None, body)


async def test_subscribers_get_published_events(sock_path: Path) -> None:
    bus = EventBus()

    def body() -> list[str]:
        seen: list[str] = []
        with IpcClient(sock_path, timeout=10) as client:
            stream = client.events(["sync"])
            trio.from_thread.run_sync(bus.publish, "agent", {"ignored": True})
            trio.from_thread.run_sync(bus.publish, "sync", {"n": 1})
            trio.from_thread.run_sync(bus.publish, "sync", {"n": 2})
            for event in stream:
                seen.append(f"{event.event}:{event.data['n']}")
                if len(seen) == 2:
                    break
        return seen

    assert await _with_server(sock_path, bus, body) == ["sync:1", "sync:2"]


def test_client_without_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="not running"):
        IpcClient(tmp_path / "none.sock")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{", "not valid JSON"),
        (b'"x"', "must be a JSON object"),
        (b'{"id": "1", "method": "a"}', "'id' must be an integer"),
        (b'{"id": 1, "method": ""}', "'method' must be a non-empty string"),
        (b'{"id": 1, "method": "a", "params": []}', "'params' must be a JSON object"),
        (b'{"id": 1}', "needs 'method'"),
    ],
)
def test_decode_rejects_malformed_messages(line: bytes, message: str) -> None:
    with pytest.raises(IpcProtocolError, match=message):
        decode(line)


def test_line_buffer_splits_and_caps() -> None:
    buffer = LineBuffer(max_line=10)
    assert buffer.feed(b"ab\ncd") == [b"ab"]
    assert buffer.feed(b"e\n\n") == [b"cde"]
    with pytest.raises(IpcProtocolError, match="longer than 10"):
        buffer.feed(b"x" * 11)
