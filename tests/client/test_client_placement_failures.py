"""Quota-full nodes and too few nodes, against real node processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_testkit import random_file, shares_on_disk
from helpers_nodes import NodeFactory

from desktop.client.download import download_bytes
from desktop.client.pool import NodePool
from desktop.client.upload import UploadOptions, upload_file
from desktop.client.upload_plan import NotEnoughNodes
from desktop.net.identity import DeviceKey

MiB = 1024 * 1024


async def test_full_nodes_are_skipped_and_a_failed_upload_leaves_nothing(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    big = [node_factory.start(f"big-{i}", quota="1G") for i in range(5)]
    small = [node_factory.start(f"small-{i}", quota="1M") for i in range(3)]
    source = tmp_path / "file.bin"
    data = random_file(source, 4 * MiB)
    async with NodePool(DeviceKey.generate(), [n.node_address for n in big + small]) as pool:
        # 7 nodes must hold a share but only 5 have room: the upload fails and removes what
        # it had stored, so no half-file stays behind.
        with pytest.raises(NotEnoughNodes, match="need 7, only 5 stored a share"):
            await upload_file(pool, source, UploadOptions(k=3, n=7, happy=7, spare=0))
        for node in big + small:
            assert shares_on_disk(node) == [], f"{node.node_id} kept {shares_on_disk(node)}"

        # 6 shares go to 6 of 8 nodes, so at least one lands on a full node: it is refused
        # with QuotaExceeded and the share moves to a node with room.
        result = await upload_file(pool, source, UploadOptions(k=2, n=5, happy=4, spare=1))
        assert len(result.placements) == 5
        assert set(result.placements.values()) == {n.node_id for n in big}
        assert await download_bytes(pool, result.cap) == data
        for node in small:
            assert shares_on_disk(node) == []


async def test_too_few_nodes_is_a_clear_error(node_factory: NodeFactory, tmp_path: Path) -> None:
    nodes = node_factory.start_many(5)
    source = tmp_path / "file.bin"
    random_file(source, 100_000)
    async with NodePool(DeviceKey.generate(), [n.node_address for n in nodes]) as pool:
        with pytest.raises(NotEnoughNodes, match="not enough storage nodes: need 7, reachable 5"):
            await upload_file(pool, source)
        nodes[0].kill()
        await pool.refresh()
        with pytest.raises(NotEnoughNodes, match="need 5, reachable 4"):
            await upload_file(pool, source, UploadOptions(k=2, n=5, happy=5, spare=0))
    for node in nodes[1:]:
        assert shares_on_disk(node) == []
