"""Uploads and downloads against real node processes on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import trio
from client_testkit import by_id, partial_files, random_file, share_file
from helpers_nodes import NodeFactory

from desktop.client.download import (
    DownloadOptions,
    check_file,
    download_bytes,
    download_to_file,
    open_file,
    read_range,
)
from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions, upload_bytes, upload_file
from desktop.core.caps import ReadCap
from desktop.core.errors import NotEnoughShares
from desktop.net.identity import DeviceKey

MiB = 1024 * 1024


async def test_100mib_round_trip_survives_7_dead_nodes_not_8(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    nodes = node_factory.start_many(10)
    source = tmp_path / "big.bin"
    data = random_file(source, 100 * MiB + 12345)
    async with NodePool(DeviceKey.generate(), [n.node_address for n in nodes]) as pool:
        result = await upload_file(pool, source)
        assert result.size == len(data)
        assert sorted(result.placements) == list(range(10))
        assert len(set(result.placements.values())) == 10  # one share per node
        assert await check_file(pool, result.cap) == result.placements

        out = tmp_path / "out.bin"
        assert await download_to_file(pool, result.cap, out) == len(data)
        assert out.read_bytes() == data
        middle = await read_range(pool, result.cap, 50 * MiB - 7, 3 * MiB)
        assert middle == data[50 * MiB - 7 : 53 * MiB - 7]

        holders = by_id(nodes)
        for node_id in list(result.placements.values())[:7]:
            holders[node_id].kill()
        out.unlink()
        await download_to_file(pool, result.cap, out)
        assert out.read_bytes() == data

        holders[result.placements[7]].kill()
        with pytest.raises(NotEnoughShares, match="need 3 good shares"):
            await download_bytes(pool, result.cap)
        out2 = tmp_path / "never.bin"
        with pytest.raises(NotEnoughShares):
            await download_to_file(pool, result.cap, out2)
        assert not out2.exists()
        assert partial_files(tmp_path) == []


async def test_corrupt_truncated_and_hung_nodes_are_survived_and_named(
    node_factory: NodeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = node_factory.start_many(10)
    source = tmp_path / "file.bin"
    data = random_file(source, 12 * MiB + 77)
    hung = None
    try:
        async with NodePool(DeviceKey.generate(), [n.node_address for n in nodes]) as pool:
            result = await upload_file(pool, source)
            si = result.cap.storage_index
            holders = by_id(nodes)
            reader = await open_file(pool, result.cap, DownloadOptions(timeout=3.0))
            assert set(reader.current) == {0, 1, 2}  # primaries first

            corrupt = holders[result.placements[0]]
            path = share_file(corrupt, si, 0)
            with path.open("r+b") as share:
                share.seek(64 + 1_000_000)
                byte = share.read(1)[0]
                share.seek(64 + 1_000_000)
                share.write(bytes([byte ^ 0xFF]))
            truncated = holders[result.placements[1]]
            with share_file(truncated, si, 1).open("r+b") as share:
                share.truncate(500_000)
            hung = holders[result.placements[2]]
            hung.process.send_signal(signal.SIGSTOP)

            caplog.set_level(logging.WARNING, logger="desktop.client")
            assert await reader.read(0, reader.size) == data
            log = caplog.text
            for bad in (corrupt, truncated, hung):
                assert bad.node_id in log, f"{bad.node_id} not named in the log"
            assert "fails its hash check" in log
            assert "no answer within 3.0 s" in log
            used = set(reader.current.values())
            assert not used & {corrupt.node_id, truncated.node_id, hung.node_id}
    finally:
        if hung is not None:
            hung.process.send_signal(signal.SIGCONT)


async def test_node_killed_during_upload_is_replaced(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    nodes = node_factory.start_many(11)
    source = tmp_path / "file.bin"
    data = random_file(source, 40 * MiB)
    victim = nodes[0]

    def progress(done: int, total: int) -> None:
        if done >= total // 3 and victim.alive():
            victim.kill()

    async with NodePool(DeviceKey.generate(), [n.node_address for n in nodes]) as pool:
        # No spares: losing a node must hand its share to the 11th node (re-encoded).
        result = await upload_file(pool, source, UploadOptions(spare=0), progress=progress)
        assert not victim.alive()
        assert len(result.placements) == 10
        assert victim.node_id not in result.placements.values()
        assert len(set(result.placements.values())) == 10
        assert await download_bytes(pool, result.cap) == data


async def test_small_blobs_and_empty_files_round_trip(node_factory: NodeFactory) -> None:
    nodes = node_factory.start_many(10)
    async with NodePool(DeviceKey.generate(), [n.node_address for n in nodes]) as pool:
        for blob in (b"", b"x", b"hello world" * 300):
            result = await upload_bytes(pool, blob)
            assert len(result.placements) == 10
            assert await download_bytes(pool, result.cap) == blob
        secret = b"s" * 32
        options = UploadOptions(convergence_secret=secret)
        first = await upload_bytes(pool, b"same bytes", options)
        second = await upload_bytes(pool, b"same bytes", options)
        assert first.cap == second.cap  # convergent: same secret and content, same cap
        assert await read_range(pool, first.cap, 5, 100) == b"bytes"

        # Many small uploads at once: their shares to each node travel in batch requests.
        blobs = [os.urandom(4096) for _ in range(30)]
        caps: dict[int, ReadCap] = {}

        async def put(index: int) -> None:
            caps[index] = (await upload_bytes(pool, blobs[index])).cap

        async with trio.open_nursery() as nursery:
            for index in range(len(blobs)):
                nursery.start_soon(put, index)
        for index, blob in enumerate(blobs):
            assert await download_bytes(pool, caps[index]) == blob
