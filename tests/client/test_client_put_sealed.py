"""The one-request small-share put (`PUT /v1/shares/<si>/<shnum>/sealed/<lease>`)."""

from __future__ import annotations

import os

import pytest
from helpers_nodes import NodeFactory

from desktop.net.errors import AuthError, NodeRefused, QuotaExceeded
from desktop.net.identity import DeviceKey
from desktop.net.protocol import RequestError, encode_batch, parse_batch


async def test_put_sealed_is_readable_idempotent_and_guarded(node_factory: NodeFactory) -> None:
    node = node_factory.start(quota="200K")
    owner, stranger = DeviceKey.generate(), DeviceKey.generate()
    si = os.urandom(16)
    share = os.urandom(50_000)
    async with node.client(owner) as client, node.client(stranger) as other:
        await client.put_sealed(si, 3, share, 3600)
        listed = await client.list_shares(si)
        assert [(s.shnum, s.size, s.sealed) for s in listed] == [(3, len(share), True)]
        assert await client.read(si, 3) == share
        await client.put_sealed(si, 3, share, 7200)  # same bytes again: fine
        with pytest.raises(NodeRefused) as differs:
            await client.put_sealed(si, 3, os.urandom(len(share)), 3600)
        assert differs.value.status == 409
        with pytest.raises(AuthError):
            await other.put_sealed(si, 3, share, 3600)
        with pytest.raises(QuotaExceeded):
            await client.put_sealed(si, 4, os.urandom(190_000), 3600)
        with pytest.raises(NodeRefused) as bad_lease:
            await client.put_sealed(si, 5, share, 0)
        assert bad_lease.value.status == 400
        await client.delete(si, 3)
        assert await client.list_shares(si) == []
        assert (await client.info()).used == 0

    restarted = node_factory.restart(node)  # sealed shares survive a restart
    async with restarted.client(owner) as client:
        await client.put_sealed(si, 1, share, 3600)
    again = node_factory.restart(restarted)
    async with again.client(owner) as client:
        assert await client.read(si, 1) == share


async def test_batch_put_answers_per_share(node_factory: NodeFactory) -> None:
    node = node_factory.start(quota="300K")
    owner, stranger = DeviceKey.generate(), DeviceKey.generate()
    si, other_si = os.urandom(16), os.urandom(16)
    shares = {shnum: os.urandom(20_000 + shnum) for shnum in range(5)}
    async with node.client(owner) as client, node.client(stranger) as other:
        await other.put_sealed(other_si, 0, b"theirs", 3600)
        items: list[tuple[bytes, int, bytes | memoryview]] = [
            (si, s, data) for s, data in shares.items()
        ]
        items += [(other_si, 0, b"mine now?"), (si, 9, os.urandom(250_000))]
        results = await client.put_sealed_many(items, 3600)
        assert results[:5] == [None] * 5
        assert isinstance(results[5], AuthError)
        assert isinstance(results[6], QuotaExceeded)
        for shnum, data in shares.items():
            assert await client.read(si, shnum) == data
        again = await client.put_sealed_many(items[:2], 3600)  # idempotent
        assert again == [None, None]


def test_batch_body_round_trip_and_malformed_bodies() -> None:
    items: list[tuple[bytes, int, bytes | memoryview]] = [
        (b"a" * 16, 1, b"xyz"),
        (b"b" * 16, 255, b""),
    ]
    body = encode_batch(items)
    assert parse_batch(body) == [(b"a" * 16, 1, b"xyz"), (b"b" * 16, 255, b"")]
    for bad in (body[:-1], body[:10], encode_batch([(b"c" * 16, 256, b"")])):
        with pytest.raises(RequestError) as error:
            parse_batch(bad)
        assert error.value.status == 400
