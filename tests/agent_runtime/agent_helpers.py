"""Shared pieces of the agent runtime tests: a settable sensor, timed share reads."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import trio

from desktop.agent.sensors import SensorReadings
from desktop.net.node_client import NodeClient

MB = 10**6


@dataclass
class SettableSensors:
    """Stands in for the X11/logind/psutil sensors, which a headless test machine lacks.

    Only the inputs of the policy are faked; everything downstream (limiters, store, sockets)
    is real."""

    idle_s: float = math.inf
    disk_free: int = 100 * 10**9
    cpu_load: float = 0.0

    def __call__(self) -> SensorReadings:
        return SensorReadings(
            idle_s=self.idle_s,
            idle_source="test",
            on_battery=False,
            battery_pct=None,
            cpu_load=self.cpu_load,
            disk_free=self.disk_free,
            disk_total=2 * self.disk_free,
        )


async def upload_share(client: NodeClient, si: bytes, size: int, shnum: int = 0) -> bytes:
    data = os.urandom(size)
    await client.create_share(si, shnum, size, 86400)
    await client.write(si, shnum, 0, data)
    await client.seal(si, shnum)
    return data


async def timed_reads(
    client: NodeClient, si: bytes, total: int, chunk: int, shnum: int = 0
) -> list[tuple[float, int]]:
    """Read `total` bytes in `chunk` ranges; (trio time after each chunk, bytes so far)."""
    marks = [(trio.current_time(), 0)]
    done = 0
    while done < total:
        length = min(chunk, total - done)
        data = await client.read(si, shnum, done, length)
        assert len(data) == length
        done += length
        marks.append((trio.current_time(), done))
    return marks


def rate_between(marks: list[tuple[float, int]], start: float, end: float) -> float:
    """Bytes/s over the marks inside [start, end] (first and last mark in it)."""
    inside = [m for m in marks if start <= m[0] <= end]
    if len(inside) < 2 or inside[-1][0] == inside[0][0]:
        return 0.0
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
