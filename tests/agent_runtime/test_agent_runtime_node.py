"""The agent runtime driving a real node (serve_node, TLS on 127.0.0.1) read by a real NodeClient.

Only the sensors are replaced (`SettableSensors`: no X display or battery here); the policy,
limiters, store hook and sockets are the production ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from agent_helpers import MB, SettableSensors, rate_between, timed_reads, upload_share

from desktop.agent.node import NodeConfig, RunningNode, serve_node
from desktop.agent.runtime import AgentRuntime
from desktop.agent.settings import Settings, save_settings
from desktop.net.errors import QuotaExceeded
from desktop.net.identity import DeviceKey
from desktop.net.node_client import NodeClient


@dataclass
class Rig:
    runtime: AgentRuntime
    sensors: SettableSensors
    node: RunningNode
    client: NodeClient


@asynccontextmanager
async def rig(tmp_path: Path, settings: Settings) -> AsyncIterator[Rig]:
    data_dir = tmp_path / "data"
    save_settings(settings, data_dir / "agent.toml")
    sensors = SettableSensors()
    runtime = AgentRuntime(data_dir, data_dir / "node" / "store", sensors=sensors)
    config = NodeConfig(
        data_dir=data_dir / "node",
        quota=10**10,
        fsync=False,
        send_limiter=runtime.send_limiter,
        receive_limiter=runtime.receive_limiter,
        admit=runtime.admit,
        background=runtime.run_background,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        node: RunningNode = await nursery.start(serve_node, config)
        runtime.attach_store(node.server.store)
        client = NodeClient(node.node_id, (node.host, node.port), DeviceKey.generate())
        try:
            yield Rig(runtime, sensors, node, client)
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


BASE = Settings(cpu_suspend_above=None, min_free=0)


async def test_send_cap_holds_over_ten_seconds(tmp_path: Path) -> None:
    settings = Settings(cpu_suspend_above=None, min_free=0, up_idle=5 * MB)
    async with rig(tmp_path, settings) as r:
        si = os.urandom(16)
        await upload_share(r.client, si, 52 * MB)
        marks = await timed_reads(r.client, si, 50 * MB, 512 * 1024)
        rate = rate_between(marks, marks[0][0], marks[-1][0])
        assert rate == pytest.approx(5 * MB, rel=0.10), f"{rate / MB:.2f} MB/s"
        assert r.runtime.status()["served_today"] >= 50 * MB


async def test_switch_from_in_use_to_idle_raises_rate_within_a_tick(tmp_path: Path) -> None:
    settings = Settings(cpu_suspend_above=None, min_free=0, up_active=2 * MB, up_idle=8 * MB)
    async with rig(tmp_path, settings) as r:
        si = os.urandom(16)
        await upload_share(r.client, si, 24 * MB)
        r.sensors.idle_s = 0.0
        await r.runtime.tick_once()
        assert r.runtime.status()["mode"] == "active"

        switched: list[float] = []

        async def switch_later() -> None:
            await trio.sleep(3.0)
            r.sensors.idle_s = 3600.0  # the runtime notices on its next tick (<= 1 s)
            switched.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(switch_later)
            marks = await timed_reads(r.client, si, 22 * MB, 128 * 1024)
        at = switched[0]
        before = rate_between(marks, marks[0][0], at)
        assert before == pytest.approx(2 * MB, rel=0.15), f"{before / MB:.2f} MB/s"
        after = rate_between(marks, at + 1.5, marks[-1][0])
        assert after == pytest.approx(8 * MB, rel=0.15), f"{after / MB:.2f} MB/s"
        # The first 0.25 s window running above the middle of the two caps starts within
        # one tick (1 s) of the switch, plus the window's own width.
        window = 0.25
        first_fast = next(
            start
            for start in (at + i * window for i in range(40))
            if rate_between(marks, start, start + window) > 5 * MB
        )
        assert first_fast - at <= 1.0 + window, f"rate rose {first_fast - at:.2f} s after"
        assert r.runtime.status()["mode"] == "idle"


async def test_full_donated_space_refuses_new_shares_but_serves_old(tmp_path: Path) -> None:
    async with rig(tmp_path, BASE) as r:
        await r.runtime.set("donated", "1MB")
        assert r.node.server.store.quota == MB
        si = os.urandom(16)
        data = await upload_share(r.client, si, MB)

        with pytest.raises(QuotaExceeded) as refused:
            await r.client.create_share(os.urandom(16), 0, 1000, 3600)
        assert refused.value.status == 507
        assert "not accepting new shares now" in str(refused.value)
        assert "donated space full" in str(refused.value)

        assert await r.client.read(si, 0) == data  # stored shares are still served
        await r.runtime.tick_once()
        status = r.runtime.status()
        assert status["accepting_new_shares"] is False
        assert status["used"] == MB and status["donated"] == MB
        assert "donated space full" in status["reason"]

        # Retrying the create of a share it already holds is not a new share: still fine.
        result = await r.client.create_share(si, 0, MB, 3600)
        assert result.sealed

        # More donated space: accepted again without a restart.
        await r.runtime.set("donated", "2MB")
        await r.client.create_share(os.urandom(16), 0, 1000, 3600)


async def test_min_free_disk_is_kept(tmp_path: Path) -> None:
    async with rig(tmp_path, BASE) as r:
        r.sensors.disk_free = 10 * MB
        await r.runtime.set("min_free", "9MB")
        await r.runtime.tick_once()
        await r.client.create_share(os.urandom(16), 0, 600_000, 3600)
        with pytest.raises(QuotaExceeded) as refused:
            await r.client.create_share(os.urandom(16), 0, 600_000, 3600)
        assert "disk nearly full" in str(refused.value)


async def test_pause_refuses_new_shares_and_serves_at_floor(tmp_path: Path) -> None:
    async with rig(tmp_path, BASE) as r:
        si = os.urandom(16)
        data = await upload_share(r.client, si, 400_000)
        await r.runtime.pause(None)
        assert r.runtime.status()["sharing"] == "never"
        with pytest.raises(QuotaExceeded) as refused:
            await r.client.create_share(os.urandom(16), 0, 1000, 3600)
        assert "this node is not accepting new shares now (paused until resumed)" in str(
            refused.value
        )
        marks = await timed_reads(r.client, si, 384 * 1024, 64 * 1024)
        # The bucket grants its burst (64 KiB) and one request in debt at once; then the rate.
        floor = rate_between(marks, marks[2][0], marks[-1][0])
        assert floor == pytest.approx(64_000, rel=0.15), f"{floor:.0f} B/s"
        assert b"".join([await r.client.read(si, 0)]) == data

        await r.runtime.resume()
        await r.client.create_share(os.urandom(16), 0, 1000, 3600)


async def test_background_work_is_paced_to_the_duty(tmp_path: Path) -> None:
    """A 0.2 s piece of work at duty 0.25 is followed by a 0.6 s rest (75 % of the time)."""
    settings = Settings(cpu_suspend_above=None, min_free=0, cpu_duty_idle=0.25)
    async with rig(tmp_path, settings) as r:
        start = trio.current_time()
        result = await r.runtime.run_background(lambda: 7)
        assert result == 7
        ran = trio.current_time() - start
        assert ran < 0.5  # trivial work: trivial rest

        start = trio.current_time()
        await r.runtime.run_background(lambda: time.sleep(0.2))
        elapsed = trio.current_time() - start
        assert elapsed == pytest.approx(0.8, abs=0.15)

        # Paused: no background work starts until resumed.
        await r.runtime.pause(None)
        ran_flag: list[bool] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(r.runtime.run_background, lambda: ran_flag.append(True))
            await trio.sleep(0.5)
            assert ran_flag == []
            await r.runtime.resume()
            await trio.sleep(0.5)
        assert ran_flag == [True]
