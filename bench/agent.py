"""The agent's throttle against its caps, and the node's CPU cost per GB served.

1. Rate vs cap: a node (`serve_node`, TLS on 127.0.0.1) driven by the real `AgentRuntime`
   (sensors replaced: always idle, no battery, no CPU suspension) with `up_idle` set to 1, 5 and
   20 MB/s through `runtime.set`, read by a NodeClient in 1 MiB ranged GETs for ~6 s each. The
   rate is taken after the first two reads: the bucket grants its burst and one request in debt
   at once by design (token_bucket.py); from then on the cap is the rate. `throttle_error_pct` is
   the worst relative error of the three.
2. `cpu_s_per_gb`: a real `permacloud node run --no-fsync` process, unthrottled, serving a
   256 MiB share four times (1 GiB) in 8 MiB GETs; CPU seconds (user + system) of the node
   process from psutil, divided by GB (10^9 bytes) served.

    flock /tmp/team/cpu.lock .venv/bin/python bench/agent.py
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from desktop.agent.node import NodeConfig, RunningNode, serve_node  # noqa: E402
from desktop.agent.runtime import AgentRuntime  # noqa: E402
from desktop.agent.sensors import SensorReadings  # noqa: E402
from desktop.agent.settings import Settings, save_settings  # noqa: E402
from desktop.net.identity import DeviceKey  # noqa: E402
from desktop.net.node_client import NodeClient  # noqa: E402

MB = 10**6
MiB = 1024 * 1024
CAPS_MB = (1, 5, 20)
SECONDS_PER_CAP = 6.0
CPU_SHARE = 256 * MiB
CPU_ROUNDS = 4


def metric(name: str, value: float, unit: str) -> None:
    print(f"metric={name} value={value:.3f} unit={unit}", flush=True)


def always_idle() -> SensorReadings:
    return SensorReadings(math.inf, "bench", False, None, 0.0, 10**12, 2 * 10**12)


async def put_share(client: NodeClient, si: bytes, size: int) -> None:
    await client.create_share(si, 0, size, 86400)
    block = os.urandom(8 * MiB)
    for offset in range(0, size, len(block)):
        await client.write(si, 0, offset, block[: min(len(block), size - offset)])
    await client.seal(si, 0)


async def rate_vs_caps(workdir: Path) -> None:
    data_dir = workdir / "agent"
    save_settings(Settings(cpu_suspend_above=None, min_free=0), data_dir / "agent.toml")
    runtime = AgentRuntime(data_dir, data_dir / "node" / "store", sensors=always_idle)
    config = NodeConfig(
        data_dir=data_dir / "node",
        quota=10**10,
        fsync=False,
        send_limiter=runtime.send_limiter,
        receive_limiter=runtime.receive_limiter,
        admit=runtime.admit,
        background=runtime.run_background,
    )
    errors = []
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        node: RunningNode = await nursery.start(serve_node, config)
        runtime.attach_store(node.server.store)
        size = math.ceil(max(CAPS_MB) * MB * SECONDS_PER_CAP / MiB) * MiB
        async with NodeClient(node.node_id, (node.host, node.port), DeviceKey.generate()) as client:
            si = os.urandom(16)
            await put_share(client, si, size)
            for cap in CAPS_MB:
                await runtime.set("up_idle", f"{cap}MB/s")
                # Whole 1 MiB reads: each interval between two reads is then exactly one read's
                # bytes at the cap (a request is granted at once and paid off afterwards).
                total = math.ceil(cap * MB * SECONDS_PER_CAP / MiB) * MiB
                marks: list[tuple[float, int]] = []
                done = 0
                while done < total:
                    await client.read(si, 0, done, MiB)
                    done += MiB
                    marks.append((trio.current_time(), done))
                (t0, b0), (t1, b1) = marks[1], marks[-1]
                rate = (b1 - b0) / (t1 - t0) / MB
                metric(f"rate_at_{cap}mbps_cap", rate, "MB/s")
                errors.append(abs(rate - cap) / cap * 100)
        nursery.cancel_scope.cancel()
    metric("throttle_error_pct", max(errors), "%")


def start_node_process(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, tuple[str, int]]:
    command = [sys.executable, "-m", "desktop", "node", "run", "--data", str(data_dir)]
    command += ["--listen", "127.0.0.1:0", "--quota", "2G", "--no-fsync"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode()
        if line.startswith("node_id="):
            fields = dict(part.split("=", 1) for part in line.split())
            host, port = fields["listen"].rsplit(":", 1)
            return process, fields["node_id"], (host, int(port))
    process.kill()
    raise RuntimeError("node process did not start")


async def cpu_per_gb(workdir: Path) -> None:
    process, node_id, address = start_node_process(workdir / "node-process")
    try:
        node = psutil.Process(process.pid)
        async with NodeClient(node_id, address, DeviceKey.generate()) as client:
            si = os.urandom(16)
            await put_share(client, si, CPU_SHARE)
            before = node.cpu_times()
            served = 0
            for _ in range(CPU_ROUNDS):
                for offset in range(0, CPU_SHARE, 8 * MiB):
                    served += len(await client.read(si, 0, offset, 8 * MiB))
            after = node.cpu_times()
        cpu = (after.user - before.user) + (after.system - before.system)
        metric("cpu_s_per_gb", cpu / (served / 10**9), "s/GB")
    finally:
        process.terminate()
        process.wait(15)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
        await rate_vs_caps(Path(tmp))
        await cpu_per_gb(Path(tmp))


if __name__ == "__main__":
    trio.run(main)
