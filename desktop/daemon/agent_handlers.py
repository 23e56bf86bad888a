"""IPC methods of the idle-resource agent: status, settings, pause and resume (docs/ipc.md).

`agent.set` takes any agent setting (`up_idle`, `donated`, ...) plus `sharing`, the tray's
convenience choice: always (idle caps whatever the user does), idle (the policy as configured),
never (paused until resumed). Everything applies at once, without a restart.
`agent.leave` hands every stored share to other nodes and stops the node (desktop/daemon/leave.py);
choosing to share again afterwards lets the node start with the next daemon start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from desktop.daemon.ipc_protocol import IpcProtocolError
from desktop.daemon.ipc_server import CallContext, Handler
from desktop.daemon.leave import LeaveProgress, leave, rejoin

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise IpcProtocolError(f"parameter '{name}' must be a string or a number")
    return str(value)


def build_agent_handlers(daemon: Daemon) -> dict[str, Handler]:
    """The `agent.*` methods; also makes `status.agent` report the agent's live state."""
    agent = daemon.agent
    daemon.extra_status["agent"] = agent.tray_status

    async def status(params: dict[str, Any], ctx: CallContext) -> Any:
        return agent.status()

    async def set_value(params: dict[str, Any], ctx: CallContext) -> Any:
        key = _text(params, "key")
        value = _text(params, "value")
        await agent.set(key, value)
        if key.strip().lower() == "sharing" and value.strip().lower() != "never":
            await _rejoin()
        return agent.status()

    async def _rejoin() -> None:
        if rejoin(daemon):
            daemon.activity.add("agent", "sharing again: the node starts with the daemon")

    async def pause(params: dict[str, Any], ctx: CallContext) -> Any:
        seconds = params.get("seconds")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float)
        ):
            raise IpcProtocolError("parameter 'seconds' must be a number of seconds or null")
        await agent.pause(None if seconds is None else float(seconds))
        daemon.activity.add("agent", "sharing paused")
        return agent.status()

    async def resume(params: dict[str, Any], ctx: CallContext) -> Any:
        await agent.resume()
        await _rejoin()
        daemon.activity.add("agent", "sharing resumed")
        return agent.status()

    async def leave_network(params: dict[str, Any], ctx: CallContext) -> Any:
        async def report(progress: LeaveProgress) -> None:
            await ctx.progress(**progress.public())

        return await leave(daemon, report)

    return {
        "agent.leave": leave_network,
        "agent.status": status,
        "agent.set": set_value,
        "agent.pause": pause,
        "agent.resume": resume,
    }
