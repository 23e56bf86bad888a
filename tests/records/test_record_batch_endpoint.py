"""The record batch endpoint (POST /v1/records/<writer>) on a real node process over TLS."""

from __future__ import annotations

import pytest
from helpers_nodes import NodeFactory

from desktop.net.errors import AuthError, NodeRefused
from desktop.net.identity import DeviceKey
from desktop.net.records_wire import MAX_RECORD_BATCH_ITEMS, Record


async def test_batch_put_stores_each_record_once_and_survives_a_restart(
    node_factory: NodeFactory,
) -> None:
    node = node_factory.start()
    writer = DeviceKey.generate()
    client = node.client(writer)
    try:
        first = [Record(seq, f"entry {seq}".encode()) for seq in range(1, 301)]
        results = await client.put_records(writer, first)
        assert [status for status, _ in results] == [201] * 300
        again = await client.put_records(
            writer, [*first[:2], Record(3, b"forged"), Record(301, b"new")]
        )
        assert [status for status, _ in again] == [200, 200, 409, 201]
        assert "different data" in again[2][1]
        listed = await client.list_records(writer.node_id)
        assert listed == [*first, Record(301, b"new")]
        assert await client.list_records(writer.node_id, 299) == [first[-1], Record(301, b"new")]
    finally:
        await client.aclose()
    restarted = node_factory.restart(node)
    reader = restarted.client(DeviceKey.generate())
    try:
        assert len(await reader.list_records(writer.node_id)) == 301
    finally:
        await reader.aclose()


async def test_only_the_writer_may_append_and_batches_are_bounded(
    node_factory: NodeFactory,
) -> None:
    node = node_factory.start()
    writer, stranger = DeviceKey.generate(), DeviceKey.generate()
    client = node.client(stranger)
    try:
        # Signed by `stranger` for the log of `writer`: the path names a log the key does not own.
        path = f"/v1/records/{writer.node_id}"
        with pytest.raises(AuthError):
            await client._request("POST", path, b"", signed=True, signer=stranger)
        too_many = [Record(seq, b"") for seq in range(1, MAX_RECORD_BATCH_ITEMS + 2)]
        with pytest.raises(NodeRefused) as info:
            await client.put_records(stranger, too_many)
        assert info.value.status == 413
        assert await client.list_records(stranger.node_id) == []
    finally:
        await client.aclose()
