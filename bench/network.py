"""Benchmark of the client engine over 10 local node processes (3-of-10), started here.

Prints `metric=NAME value=NUMBER unit=UNIT`. MB/s are megabytes (10^6) of plaintext per second.
The node processes share the machine's cores with the client, as in the Tahoe-LAFS figures
this is compared with. Run under `flock /tmp/team/cpu.lock`. `--profile FILE` writes a
cProfile of the client side (upload and download of the big file).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path

import trio

from desktop.cli.demo_nodes import start_local_nodes, stop_local_nodes
from desktop.client.download import download_bytes, download_to_file, iter_file
from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions, upload_bytes, upload_file
from desktop.core.caps import ReadCap
from desktop.core.encoder import encode_stream
from desktop.core.params import EncodingParams
from desktop.net.identity import DeviceKey

MB = 1e6
MiB = 1024 * 1024


def report(name: str, value: float, unit: str) -> None:
    print(f"metric={name} value={value:.3f} unit={unit}", flush=True)


def core_encode_mbps(data: bytes) -> float:
    view = memoryview(data)
    position = 0

    def read(count: int) -> memoryview:
        nonlocal position
        chunk = view[position : position + count]
        position += len(chunk)
        return chunk

    started = time.perf_counter()
    stream = encode_stream(read, EncodingParams(3, 10), len(data))  # type: ignore[arg-type]
    for _ in stream:
        pass
    stream.finish()
    return len(data) / MB / (time.perf_counter() - started)


async def timed(func: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await func()
    return time.perf_counter() - started


async def run(args: argparse.Namespace, workdir: Path, pool: NodePool) -> None:
    size = args.size_mib * MiB
    source = workdir / "big.bin"
    source.write_bytes(os.urandom(size))
    options = UploadOptions(spare=args.spare)
    await pool.refresh()
    profiler = cProfile.Profile() if args.profile else None

    result = None

    async def put() -> None:
        nonlocal result
        result = await upload_file(pool, source, options)

    if profiler:
        profiler.enable()
    seconds = await timed(put)
    report("upload_mbps", size / MB / seconds, "MB/s")
    assert result is not None
    cap: ReadCap = result.cap

    async def stream() -> None:
        async with aclosing(iter_file(pool, cap)) as chunks:
            async for _ in chunks:
                pass

    report("download_mbps", size / MB / await timed(stream), "MB/s")
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    out = workdir / "out.bin"
    seconds = await timed(lambda: download_to_file(pool, cap, out))
    report("download_to_file_mbps", size / MB / seconds, "MB/s")
    if out.read_bytes() != source.read_bytes():
        raise SystemExit("downloaded bytes differ")
    out.unlink()
    source.unlink()

    count, blob_size = args.small_count, 4096
    blobs = [os.urandom(blob_size) for _ in range(count)]
    caps: list[ReadCap | None] = [None] * count
    limiter = trio.CapacityLimiter(args.concurrency)

    async def put_one(index: int) -> None:
        async with limiter:
            caps[index] = (await upload_bytes(pool, blobs[index], options)).cap

    async def put_all() -> None:
        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(put_one, index)

    report("small_upload_files_per_s", count / await timed(put_all), "files/s")

    async def get_one(index: int) -> None:
        async with limiter:
            cap_i = caps[index]
            assert cap_i is not None
            if await download_bytes(pool, cap_i) != blobs[index]:
                raise SystemExit(f"small file {index} differs")

    async def get_all() -> None:
        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(get_one, index)

    report("small_download_files_per_s", count / await timed(get_all), "files/s")


async def main_async(args: argparse.Namespace, workdir: Path, nodes_addresses: list) -> None:  # type: ignore[type-arg]
    async with NodePool(DeviceKey.generate(), nodes_addresses) as pool:
        await run(args, workdir, pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--small-count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32, help="small files in flight")
    parser.add_argument("--spare", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--profile", help="write a cProfile of the big transfers here")
    parser.add_argument("--node-args", default="", help="extra arguments for every node")
    args = parser.parse_args()

    report("core_encode_mbps", core_encode_mbps(os.urandom(args.size_mib * MiB)), "MB/s")
    with tempfile.TemporaryDirectory(prefix="permacloud-bench-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        nodes = start_local_nodes(
            args.nodes, workdir / "nodes", quota="4G", extra=args.node_args.split()
        )
        try:
            trio.run(main_async, args, workdir, [n.node_address for n in nodes])
        finally:
            stop_local_nodes(nodes)


if __name__ == "__main__":
    main()
