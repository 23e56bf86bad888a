"""The agent inside a real `permacloud daemon` process, driven by the real CLI and IPC, its node
read and written by a real NodeClient over TLS on 127.0.0.1.

The machine has no X display, so the idle sensor is replaced through the documented test hook
`PERMACLOUD_AGENT_FAKE_IDLE` (a file re-read every tick); all other sensors are real, and the
CPU-load suspension is switched off in agent.toml because the shared test machine is busy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from agent_helpers import MB, rate_between, timed_reads, upload_share
from helpers_daemon import Device, run_cli

from desktop.agent.settings import Settings, save_settings
from desktop.net.errors import QuotaExceeded
from desktop.net.identity import DeviceKey
from desktop.net.node_client import NodeClient

IDLE = "100000"
IN_USE = "0"


@pytest.fixture
def idle_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fake-idle"
    path.write_text(IDLE)
    monkeypatch.setenv("PERMACLOUD_AGENT_FAKE_IDLE", str(path))
    return path


@pytest.fixture
def device(tmp_path: Path, idle_file: Path) -> Iterator[Device]:
    home = tmp_path / "alice"
    run_cli(home, "init", "--name", "alice")
    save_settings(Settings(cpu_suspend_above=None, min_free=0), home / "data" / "agent.toml")
    device = Device("alice", home).start()
    try:
        yield device
    finally:
        try:
            device.stop()
        except AssertionError:
            device.kill()


def node_client(device: Device) -> NodeClient:
    node = device.call("status")["node"]
    host, port = node["address"].rsplit(":", 1)
    return NodeClient(node["id"], (host, int(port)), DeviceKey.generate())


def agent_status(device: Device) -> dict[str, object]:
    status: dict[str, object] = device.cli_json("agent", "status")
    return status


async def test_cli_controls_a_running_daemon(device: Device, idle_file: Path) -> None:
    status = agent_status(device)
    assert status["mode"] == "idle" and status["sharing"] == "idle"
    assert status["accepting_new_shares"] is True
    assert status["sensors"]["idle_source"] == "test-hook"  # type: ignore[index]

    # In use <-> idle through the sensor, seen by the running daemon.
    await trio.Path(idle_file).write_text(IN_USE)
    status = device.wait_until(
        lambda: (s := agent_status(device))["mode"] == "active" and s, what="active mode"
    )
    assert "in use" in str(status["reason"])
    assert status["upload_bps"] == Settings().up_active
    await trio.Path(idle_file).write_text(IDLE)
    device.wait_until(lambda: agent_status(device)["mode"] == "idle", what="idle mode")

    async with node_client(device) as client:
        si = os.urandom(16)
        await upload_share(client, si, 42 * MB)

        # `agent set` takes effect in the running daemon, no restart.
        device.cli("agent", "set", "up_idle", "5MB/s")
        marks = await timed_reads(client, si, 10 * MB, 256 * 1024)
        slow = rate_between(marks, marks[0][0], marks[-1][0])
        assert slow == pytest.approx(5 * MB, rel=0.10), f"{slow / MB:.2f} MB/s"
        out = device.cli("agent", "set", "up_idle", "20MB/s").stdout
        assert "up_idle = 20MB/s" in out
        marks = await timed_reads(client, si, 40 * MB, 1024 * 1024)
        fast = rate_between(marks, marks[0][0], marks[-1][0])
        assert fast == pytest.approx(20 * MB, rel=0.10), f"{fast / MB:.2f} MB/s"

        # Paused: new shares refused with a reason, stored ones served at the floor rate.
        device.cli("agent", "pause")
        with pytest.raises(QuotaExceeded) as refused:
            await client.create_share(os.urandom(16), 0, 1000, 3600)
        assert "not accepting new shares now (paused until resumed)" in str(refused.value)
        marks = await timed_reads(client, si, 384 * 1024, 64 * 1024)
        floor = rate_between(marks, marks[2][0], marks[-1][0])  # after burst + one in debt
        assert floor == pytest.approx(64_000, rel=0.15), f"{floor:.0f} B/s"
        tray = device.call("status")["agent"]
        assert tray == {
            "mode": "paused",
            "reason": "paused until resumed",
            "sharing": "never",
            "paused_until": None,
        }

        device.cli("agent", "resume")
        await client.create_share(os.urandom(16), 0, 1000, 3600)

    # A timed pause, as the tray asks for it.
    device.call("agent.pause", {"seconds": 3600})
    tray = device.call("status")["agent"]
    assert tray["mode"] == "paused" and tray["sharing"] == "idle"
    assert tray["paused_until"] == pytest.approx(time.time() + 3600, abs=30)
    device.call("agent.set", {"key": "sharing", "value": "always"})
    assert device.call("status")["agent"]["mode"] == "idle"

    # Bytes served today survive a restart; settings too.
    served = agent_status(device)["served_today"]
    assert isinstance(served, int) and served >= 50 * MB
    device.stop()
    device.start()
    status = agent_status(device)
    assert status["served_today"] == served
    assert status["settings"]["up_idle"] == "20MB/s"  # type: ignore[index]
    assert status["sharing"] == "always"
    await trio.lowlevel.checkpoint()


def test_agent_cli_errors_are_one_line(device: Device) -> None:
    cases = [
        (("agent", "set", "speed", "1"), "unknown setting 'speed'"),
        (("agent", "set", "up_idle", "fast"), "up_idle:"),
        (("agent", "set", "up_idle", "0"), "up_idle"),
        (("agent", "set", "sharing", "sometimes"), "sharing:"),
        (("agent", "pause", "--for", "soon"), "not a duration"),
    ]
    for args, expected in cases:
        result = device.cli(*args, check=False)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, result.stderr)
    # Nothing bad was saved; the daemon still answers.
    assert agent_status(device)["settings"]["up_idle"] == "unlimited"  # type: ignore[index]


def test_agent_status_without_daemon_is_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path / "nobody", "agent", "status", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
