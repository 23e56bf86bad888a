"""Sync folder latency and throughput between two real devices, beside a plain local copy.

Starts 6 real nodes and two real daemons (temp dirs, 127.0.0.1), syncs a folder on each with
`/Sync`, and measures from the moment files are closed on A:
- `sync_1mib_latency_s`: until a 1 MiB file is complete on B (median of 3);
- `sync_1000_small_s`: until 1000 files of 4 KiB are all complete on B;
- `sync_100mib_durable_s`: until a 100 MiB file is in A's namespace, which the engine records only
  once `happy` nodes hold its shares.
Reference in the same run: `local_copy_*` (plain copy + fsync on this disk). The daemons use the
production replication interval unless `--replication-interval` says otherwise.
Run under `flock /tmp/team/cpu.lock`.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "sync")]

import helpers_daemon  # noqa: E402
import sync_testkit  # noqa: E402
from helpers_nodes import NodeFactory  # noqa: E402


def metric(name: str, value: float, unit: str) -> None:
    print(f"metric={name} value={value:.3f} unit={unit}", flush=True)


def wait(predicate: Callable[[], bool], timeout: float = 300.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit("timed out")


def write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def complete(path: Path, size: int) -> bool:
    return path.stat().st_size == size


def local_copy(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    shutil.copytree(src, dst)
    os.sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replication-interval", default=None, help="seconds (default: daemon's)")
    args = parser.parse_args()
    plain_env = helpers_daemon.cli_env

    def bench_env(home: Path) -> dict[str, str]:
        env = plain_env(home)
        if args.replication_interval is None:
            env.pop("PERMACLOUD_REPLICATION_INTERVAL", None)
        else:
            env["PERMACLOUD_REPLICATION_INTERVAL"] = args.replication_interval
        return env

    helpers_daemon.cli_env = bench_env
    sync_testkit.SYNC_ENV.pop("PERMACLOUD_REPLICATION_INTERVAL", None)
    sync_testkit.SYNC_ENV.update({"PERMACLOUD_SYNC_SETTLE": "2", "PERMACLOUD_SYNC_RESCAN": "300"})
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        base = Path(tmp)
        nodes = NodeFactory(base / "nodes")
        pair = None
        try:
            pair = sync_testkit.start_pair(base, nodes)
            time.sleep(2.0)  # let the first scans and replication settle

            latencies = []
            for i in range(3):
                data = os.urandom(1 << 20)
                start = time.perf_counter()
                write(pair.a_dir / f"one-{i}.bin", data)
                done = wait(functools.partial(complete, pair.b_dir / f"one-{i}.bin", 1 << 20))
                latencies.append(done - start)
                assert (pair.b_dir / f"one-{i}.bin").read_bytes() == data
            metric("sync_1mib_latency_s", statistics.median(latencies), "s")

            staging = base / "small-src"
            staging.mkdir()
            for i in range(1000):
                write(staging / f"f{i:04d}.dat", os.urandom(4096))
            metric("local_copy_1000_small_s", local_copy(staging, base / "small-copy"), "s")
            start = time.perf_counter()
            shutil.copytree(staging, pair.a_dir / "small")
            target = pair.b_dir / "small"
            waiting = {f"f{i:04d}.dat" for i in range(1000)}

            def all_arrived() -> bool:
                # Only files not yet seen complete are looked at again, every 20 ms: the
                # bench shares the 2 cores with the daemons and must not slow them down.
                time.sleep(0.02)
                if not target.is_dir():
                    return False
                present = waiting & set(os.listdir(target))
                waiting.difference_update(n for n in present if complete(target / n, 4096))
                return not waiting

            done = wait(all_arrived)
            metric("sync_1000_small_s", done - start, "s")

            big = base / "big-src"
            big.mkdir()
            with open(big / "big.bin", "wb") as handle:
                for _ in range(100):
                    handle.write(os.urandom(1 << 20))
            metric("local_copy_100mib_s", local_copy(big, base / "big-copy"), "s")
            start = time.perf_counter()
            shutil.copy(big / "big.bin", pair.a_dir / "big.bin")

            def stored() -> bool:
                rows = pair.a.call("ls", {"path": "/Sync"})
                return any(r["name"] == "big.bin" and r["size"] == 100 << 20 for r in rows)

            done = wait(stored, timeout=600)
            metric("sync_100mib_durable_s", done - start, "s")
        finally:
            if pair is not None:
                for device in (pair.a, pair.b):
                    device.stop()
            nodes.stop_all()


if __name__ == "__main__":
    main()
