"""The daemon side of IPC: a Unix socket only this user can reach, dispatching to handlers.

Each request runs in its own task so a slow `put` does not block `status`; replies and events
share one writer lock per connection. Event subscribers get bounded queues: a stuck client loses
events rather than stalling the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from desktop.core.errors import PermaCloudError
from desktop.daemon.ipc_protocol import (
    Event,
    IpcProtocolError,
    LineBuffer,
    Request,
    Response,
    decode,
    encode,
)

logger = logging.getLogger(__name__)

EVENT_QUEUE = 256


class NotFound(PermaCloudError):
    """A handler's way to say the named thing does not exist (error code `not_found`)."""


@dataclass
class CallContext:
    """What a handler may do besides returning: report progress on its request."""

    request_id: int
    _send: Callable[[Event], Awaitable[None]]

    async def progress(self, **data: Any) -> None:
        await self._send(Event("progress", {"request": self.request_id, **data}))


Handler = Callable[[dict[str, Any], CallContext], Awaitable[Any]]


@dataclass
class EventBus:
    """Fan-out of daemon events (sync, agent, nodes) to subscribed IPC clients."""

    _subscribers: list[tuple[frozenset[str], trio.MemorySendChannel[Event]]] = field(
        default_factory=list
    )

    def publish(self, topic: str, data: Any = None) -> None:
        event = Event(topic, data)
        for topics, channel in list(self._subscribers):
            if topics and topic not in topics:
                continue
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                logger.debug("dropping event %s for a slow subscriber", topic)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove((topics, channel))

    def subscribe(self, topics: frozenset[str]) -> trio.MemoryReceiveChannel[Event]:
        send, receive = trio.open_memory_channel[Event](EVENT_QUEUE)
        self._subscribers.append((topics, send))
        return receive


def _error_code(error: Exception) -> str:
    if isinstance(error, IpcProtocolError):
        return "bad_request"
    if isinstance(error, NotFound):
        return "not_found"
    return "error"


class IpcServer:
    def __init__(
        self, socket_path: Path, handlers: Mapping[str, Handler], bus: EventBus | None = None
    ) -> None:
        self.socket_path = socket_path
        self.handlers = dict(handlers)
        self.bus = bus or EventBus()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.fspath(self.socket_path)
        if self.socket_path.exists():
            self.socket_path.unlink()
        old_umask = os.umask(0o177)
        try:
            await listener.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        listener.listen(64)
        logger.info("IPC listening on %s", path)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    sock, _ = await listener.accept()
                    nursery.start_soon(self._serve_connection, trio.SocketStream(sock))
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        write_lock = trio.Lock()

        async def send(message: Response | Event) -> None:
            async with write_lock:
                await stream.send_all(encode(message))

        buffer = LineBuffer()
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        nursery.cancel_scope.cancel()
                        break
                    try:
                        lines = buffer.feed(data)
                    except IpcProtocolError as error:
                        await send(Response(0, error_code="bad_request", error_message=str(error)))
                        nursery.cancel_scope.cancel()
                        break
                    for line in lines:
                        await self._handle_line(line, send, nursery)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def _handle_line(
        self,
        line: bytes,
        send: Callable[[Response | Event], Awaitable[None]],
        nursery: trio.Nursery,
    ) -> None:
        try:
            message = decode(line)
        except IpcProtocolError as error:
            await send(Response(0, error_code="bad_request", error_message=str(error)))
            return
        if not isinstance(message, Request):
            await send(Response(0, error_code="bad_request", error_message="expected a request"))
            return
        if message.method == "subscribe":
            topics = message.params.get("topics", [])
            if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
                await send(
                    Response(message.id, error_code="bad_request", error_message="bad 'topics'")
                )
                return
            receive = self.bus.subscribe(frozenset(topics))
            await send(Response(message.id, result={"subscribed": sorted(topics)}))
            nursery.start_soon(self._forward_events, receive, send)
            return
        nursery.start_soon(self._run_handler, message, send)

    async def _forward_events(
        self,
        receive: trio.MemoryReceiveChannel[Event],
        send: Callable[[Response | Event], Awaitable[None]],
    ) -> None:
        async with receive:
            async for event in receive:
                await send(event)

    async def _run_handler(
        self, request: Request, send: Callable[[Response | Event], Awaitable[None]]
    ) -> None:
        handler = self.handlers.get(request.method)
        if handler is None:
            await send(
                Response(
                    request.id,
                    error_code="unknown_method",
                    error_message=f"unknown method '{request.method}'",
                )
            )
            return
        try:
            result = await handler(request.params, CallContext(request.id, send))
        except PermaCloudError as error:
            await send(
                Response(request.id, error_code=_error_code(error), error_message=str(error))
            )
        except Exception as error:
            logger.exception("IPC handler %s failed", request.method)
            await send(
                Response(
                    request.id, error_code="internal", error_message=f"internal error: {error}"
                )
            )
        else:
            await send(Response(request.id, result=result))
