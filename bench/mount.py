"""FUSE mount throughput beside the plain local disk, in the same run.

`mount_seq_write_mbps` is write+close (at cache speed, upload in the background);
`mount_seq_write_stored_mbps` adds fsync, which returns once the nodes hold the data.
`mount_creates_per_s` is create+write+close of 4 KiB files into the cache;
`mount_small_files_stored_per_s` counts until the last of them is stored on the nodes.

Starts 8 real nodes and one real daemon (temp dirs), mounts it, and measures with plain file I/O:
sequential write and read of SIZE (warm: from the mount's cache; cold: a file stored with `put`,
so every byte comes from the nodes), 4 KiB random reads, and file creates. Prints
`metric=NAME value=NUMBER unit=UNIT` lines. Run under `flock /tmp/team/cpu.lock`.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "mount")]

from helpers_daemon import Device, DeviceFactory  # noqa: E402
from helpers_nodes import NodeFactory  # noqa: E402
from mount_testkit import force_unmount, mount, start_device, wait_uploaded  # noqa: E402

BLOCK = 1 << 20


def metric(name: str, value: float, unit: str) -> None:
    print(f"metric={name} value={value:.1f} unit={unit}", flush=True)


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def seq_write(path: Path, size: int, sync: bool = True) -> float:
    block = os.urandom(BLOCK)
    start = time.perf_counter()
    with open(path, "wb") as handle:
        for _ in range(size // BLOCK):
            handle.write(block)
        handle.flush()
        if sync:
            os.fsync(handle.fileno())  # on the mount: returns once stored on the nodes
    return size / (time.perf_counter() - start) / 1e6


def seq_read(path: Path) -> float:
    start = time.perf_counter()
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(BLOCK):
            total += len(chunk)
    return total / (time.perf_counter() - start) / 1e6


def rand_read(path: Path, count: int) -> float:
    size = path.stat().st_size
    rng = random.Random(1)
    fd = os.open(path, os.O_RDONLY)
    try:
        start = time.perf_counter()
        for _ in range(count):
            os.pread(fd, 4096, rng.randrange(0, size - 4096) & ~4095)
        return count / (time.perf_counter() - start)
    finally:
        os.close(fd)


def creates(folder: Path, count: int) -> float:
    folder.mkdir()
    block = os.urandom(4096)
    start = time.perf_counter()
    for i in range(count):
        with open(folder / f"f{i}", "wb") as handle:
            handle.write(block)
    return count / (time.perf_counter() - start)


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def cold_read(device: Device, nodes: NodeFactory, path: Path, profile: str | None) -> float:
    """Sequential read of a file whose bytes all come from the nodes (optionally profiled);
    where the machine's CPU went meanwhile goes to stderr (the 2 cores are the limit here)."""
    daemon = [device.process.pid] if device.process is not None else []
    node_pids = [n.process.pid for n in nodes.started]
    before = (cpu_seconds(daemon), cpu_seconds(node_pids), psutil.cpu_times())
    started = time.perf_counter()
    rate = _cold_read(device, path, profile)
    wall = time.perf_counter() - started
    after = (cpu_seconds(daemon), cpu_seconds(node_pids), psutil.cpu_times())
    busy = sum(after[2]) - after[2].idle - (sum(before[2]) - before[2].idle)
    print(
        f"cold read {wall:.1f} s: daemon {after[0] - before[0]:.1f} cpu-s,"
        f" nodes {after[1] - before[1]:.1f} cpu-s, machine busy {busy:.1f} of"
        f" {wall * (os.cpu_count() or 1):.1f} cpu-s",
        file=sys.stderr,
        flush=True,
    )
    return rate


def _cold_read(device: Device, path: Path, profile: str | None) -> float:
    if profile is None or device.process is None:
        return seq_read(path)
    spy = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "py-spy"),
            "record",
            "--threads",
            *(["--gil"] if ".gil." in profile else []),  # only samples holding the GIL
            "-r",
            "100",
            "-o",
            profile,
            "--format",
            "raw" if profile.endswith(".txt") else "flamegraph",
            "--pid",
            str(device.process.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    try:
        return seq_read(path)
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


def cold_only(
    device: Device, nodes: NodeFactory, disk: Path, mnt: Path, size: int, profile: str | None
) -> None:
    seq_write(disk / "big", size)
    drop_page_cache(disk / "big")
    metric("disk_seq_read_mbps", seq_read(disk / "big"), "MB/s")
    device.call("put", {"local": str(disk / "big"), "path": "/cold"}, timeout=1800)
    metric("mount_cold_read_mbps", cold_read(device, nodes, mnt / "cold", profile), "MB/s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--creates", type=int, default=1000)
    parser.add_argument(
        "--only",
        choices=["cold"],
        help="cold: just the disk read and the cold mount read (faster to iterate on)",
    )
    parser.add_argument(
        "--profile",
        metavar="SVG",
        help="record the daemon with py-spy during the cold read into this flame graph"
        " (.txt: raw stacks; '.gil.' in the name: only threads holding the GIL)",
    )
    args = parser.parse_args()
    size = args.size_mib * BLOCK
    with tempfile.TemporaryDirectory(prefix="bench-mount-", dir="/tmp") as tmp:
        base = Path(tmp)
        nodes = NodeFactory(base / "nodes")
        factory = DeviceFactory(base / "devices")
        mnt = base / "mnt"
        disk = base / "disk"
        disk.mkdir()
        try:
            device = start_device(factory, nodes, base)
            mount(device, mnt)
            if args.only == "cold":
                cold_only(device, nodes, disk, mnt, size, args.profile)
                return 0
            metric("disk_seq_write_mbps", seq_write(disk / "big", size), "MB/s")
            drop_page_cache(disk / "big")
            metric("disk_seq_read_mbps", seq_read(disk / "big"), "MB/s")
            drop_page_cache(disk / "big")
            metric("disk_randread_iops", rand_read(disk / "big", 5000), "ops/s")
            metric("disk_creates_per_s", creates(disk / "many", args.creates), "files/s")
            metric("mount_seq_write_mbps", seq_write(mnt / "big", size, sync=False), "MB/s")
            started = time.perf_counter()
            wait_uploaded(device, timeout=1800)
            metric("mount_upload_after_close_s", time.perf_counter() - started, "s")
            metric("mount_seq_write_stored_mbps", seq_write(mnt / "big2", size), "MB/s")
            metric("mount_warm_read_mbps", seq_read(mnt / "big"), "MB/s")
            device.call("put", {"local": str(disk / "big"), "path": "/cold"}, timeout=1800)
            metric(
                "mount_cold_read_mbps", cold_read(device, nodes, mnt / "cold", args.profile), "MB/s"
            )
            subprocess.run(["sync"], check=False)
            metric("mount_randread_iops", rand_read(mnt / "big", 5000), "ops/s")
            started = time.perf_counter()
            metric("mount_creates_per_s", creates(mnt / "many", args.creates), "files/s")
            wait_uploaded(device, timeout=1800)
            # Creates land in the cache; this is the end-to-end rate until all are stored.
            stored = args.creates / (time.perf_counter() - started)
            metric("mount_small_files_stored_per_s", stored, "files/s")
        finally:
            factory.stop_all()
            force_unmount(mnt)
            nodes.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
