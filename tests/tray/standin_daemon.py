"""A stand-in for `permacloud daemon`, ONLY for tray states the real daemon cannot reach on demand.

The tray tests run against the real daemon; this stays for the error icon, because the real
daemon never reports `sync.state == "error"` when a test asks for it. It is the REAL `IpcServer`
and `EventBus` on a real Unix socket, in its own process, with handlers that keep the tray's
slice of daemon state in memory (the IPC contract in docs/ipc.md). Two extra methods,
`standin.set` and `standin.notify`, drive it into such states.

Run: python tests/tray/standin_daemon.py SOCKET_PATH SYNC_FOLDER MOUNT_DIR
"""

from __future__ import annotations

import copy
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from desktop.daemon.ipc_protocol import param
from desktop.daemon.ipc_server import CallContext, EventBus, IpcServer


class StandinDaemon:
    def __init__(self, socket_path: Path, folder: Path, mount_dir: Path) -> None:
        self.bus = EventBus()
        self.mount_dir = mount_dir
        self.status: dict[str, Any] = {
            "sync": {
                "state": "idle",
                "pending": 0,
                "conflicts": 0,
                "folder": str(folder),
                "error": None,
            },
            "storage": {
                "stored_bytes": 12_300_000_000,
                "donated_bytes": 40_000_000_000,
                "used_donated_bytes": 3_000_000_000,
            },
            "nodes": {"online": 3, "known": 3},
            "agent": {"mode": "active", "reason": "", "sharing": "always", "paused_until": None},
            "mount": {"mounted": False, "path": None},
        }
        self.activity: list[dict[str, Any]] = [
            {"time": time.time(), "kind": "sync", "text": "stand-in daemon started"}
        ]
        self.cancel = trio.CancelScope()
        self.stopping = trio.Event()
        handlers = {
            "status": self.get_status,
            "sync.pause": self.sync_pause,
            "sync.resume": self.sync_resume,
            "agent.set": self.agent_set,
            "agent.pause": self.agent_pause,
            "agent.resume": self.agent_resume,
            "mount": self.mount,
            "activity": self.get_activity,
            "shutdown": self.shutdown,
            "standin.set": self.standin_set,
            "standin.notify": self.standin_notify,
        }
        self.server = IpcServer(socket_path, handlers, self.bus)

    def _changed(self, text: str) -> None:
        self.activity.append({"time": time.time(), "kind": "info", "text": text})
        self.bus.publish("status", copy.deepcopy(self.status))

    async def get_status(self, params: dict[str, Any], ctx: CallContext) -> Any:
        return self.status

    async def sync_pause(self, params: dict[str, Any], ctx: CallContext) -> Any:
        self.status["sync"]["state"] = "paused"
        self._changed("sync paused")
        return {}

    async def sync_resume(self, params: dict[str, Any], ctx: CallContext) -> Any:
        self.status["sync"]["state"] = "idle"
        self._changed("sync resumed")
        return {}

    async def agent_set(self, params: dict[str, Any], ctx: CallContext) -> Any:
        key, value = param(params, "key", str), param(params, "value", str)
        if key != "sharing" or value not in ("always", "idle", "never"):
            from desktop.daemon.ipc_protocol import IpcProtocolError

            raise IpcProtocolError(f"bad setting {key}={value}")
        self.status["agent"]["sharing"] = value
        self._changed(f"sharing set to {value}")
        return {}

    async def agent_pause(self, params: dict[str, Any], ctx: CallContext) -> Any:
        seconds = param(params, "seconds", int)
        self.status["agent"]["paused_until"] = time.time() + seconds
        self._changed("sharing paused")
        return {}

    async def agent_resume(self, params: dict[str, Any], ctx: CallContext) -> Any:
        self.status["agent"]["paused_until"] = None
        self._changed("sharing resumed")
        return {}

    async def mount(self, params: dict[str, Any], ctx: CallContext) -> Any:
        self.mount_dir.mkdir(parents=True, exist_ok=True)
        self.status["mount"] = {"mounted": True, "path": str(self.mount_dir)}
        self._changed("mounted")
        return {"path": str(self.mount_dir)}

    async def get_activity(self, params: dict[str, Any], ctx: CallContext) -> Any:
        limit = param(params, "limit", int, default=10)
        return list(reversed(self.activity[-limit:]))

    async def shutdown(self, params: dict[str, Any], ctx: CallContext) -> Any:
        self.stopping.set()
        return {}

    async def standin_set(self, params: dict[str, Any], ctx: CallContext) -> Any:
        for section, values in params.items():
            self.status[section].update(values)
        self._changed("state changed by the test")
        return {}

    async def standin_notify(self, params: dict[str, Any], ctx: CallContext) -> Any:
        self.bus.publish("notify", params)
        return {}

    async def _stop_when_asked(self) -> None:
        await self.stopping.wait()
        await trio.sleep(0.2)  # let the shutdown reply reach the client first
        self.cancel.cancel()

    async def run(self) -> None:
        with self.cancel:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.server.serve)
                nursery.start_soon(self._stop_when_asked)
                print("ready", flush=True)
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        break


if __name__ == "__main__":
    socket_path, folder, mount_dir = (Path(arg) for arg in sys.argv[1:4])
    trio.run(StandinDaemon(socket_path, folder, mount_dir).run)
