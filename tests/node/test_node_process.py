"""Real `permacloud node run` processes on 127.0.0.1, driven by the real NodeClient."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import h11
import pytest
import trio
from helpers_nodes import NodeFactory, NodeProcess
from node_raw_http import open_tls, raw_bytes_exchange, raw_request, signed_headers

from desktop.agent.node import KEY_FILE
from desktop.net.errors import (
    AuthError,
    NodeRefused,
    NodeUnavailable,
    QuotaExceeded,
    RateLimited,
    ShareNotFound,
    WrongNodeIdentity,
)
from desktop.net.h11io import send_data, send_event
from desktop.net.identity import DeviceKey
from desktop.net.node_client import NodeClient
from desktop.net.protocol import share_path

MiB = 1024 * 1024


def _si() -> bytes:
    return os.urandom(16)


async def _upload(client: NodeClient, si: bytes, shnum: int, data: bytes) -> None:
    await client.create_share(si, shnum, len(data), 3600)
    await client.write(si, shnum, 0, data)
    await client.seal(si, shnum)


async def test_round_trip_identity_and_listing(node_factory: NodeFactory) -> None:
    node = node_factory.start(quota="100M")
    key_file = node.data_dir / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = DeviceKey.generate()
    data = os.urandom(3 * MiB + 123)
    si = _si()
    async with node.client(key) as client:
        info = await client.info()
        assert info.node_id == node.node_id
        assert (info.quota, info.used) == (100 * MiB, 0)
        first = await client.create_share(si, 7, len(data), 3600)
        assert first.created and first.already_written == []
        assert (await client.info()).used == len(data)  # reserved at create
        await client.write(si, 7, 0, data[: 2 * MiB])
        await client.write(si, 7, 2 * MiB, data[2 * MiB :])
        await client.seal(si, 7)
        assert await client.read(si, 7) == data
        assert await client.read(si, 7, 1000, 5000) == data[1000:6000]
        assert await client.read(si, 7, len(data) - 10) == data[-10:]
        shares = await client.list_shares(si)
        assert [(s.shnum, s.size, s.sealed) for s in shares] == [(7, len(data), True)]
        assert await client.list_shares(_si()) == []
        # several concurrent requests over the pool
        results: list[bytes] = []

        async def read_part(index: int) -> None:
            results.append(await client.read(si, 7, index * MiB, MiB))

        async with trio.open_nursery() as nursery:
            for index in range(3):
                nursery.start_soon(read_part, index)
        assert sorted(results) == sorted(data[i * MiB : (i + 1) * MiB] for i in range(3))
    # the identity survives a restart
    again = node_factory.restart(node)
    assert again.node_id == node.node_id


async def test_resumable_create_after_broken_connection(node_factory: NodeFactory) -> None:
    node = node_factory.start()
    key = DeviceKey.generate()
    data = os.urandom(4 * MiB)
    si = _si()
    async with node.client(key) as client:
        await client.create_share(si, 0, len(data), 3600)
        await client.write(si, 0, 0, data[:MiB])
        # a write whose connection breaks halfway through the body
        path = share_path(si, 0, f"/data/{MiB}")
        block = data[MiB : 2 * MiB]
        headers = signed_headers(key, "PUT", path, block, node.node_id)
        stream = await open_tls(node.address)
        conn = h11.Connection(h11.CLIENT)
        request_headers = [("host", "x"), ("content-length", str(len(block))), *headers]
        await send_event(
            conn, stream, h11.Request(method="PUT", target=path, headers=request_headers)
        )
        await send_data(conn, stream, block[: MiB // 2])
        await trio.aclose_forcefully(stream)
        await trio.sleep(0.3)
        resumed = await client.create_share(si, 0, len(data), 3600)
        assert not resumed.created
        assert resumed.already_written == [(0, MiB)]
        assert resumed.missing() == [(MiB, 4 * MiB)]
        for start, end in resumed.missing():
            await client.write(si, 0, start, data[start:end])
        # rewriting confirmed bytes with the same data is harmless; different data is refused
        await client.write(si, 0, 0, data[:4096])
        with pytest.raises(NodeRefused) as refused:
            await client.write(si, 0, 0, b"\0" * 4096 if data[:1] != b"\0" else b"\1" * 4096)
        assert refused.value.status == 409
        await client.seal(si, 0)
        assert await client.read(si, 0) == data
        sealed = await client.create_share(si, 0, len(data), 3600)
        assert sealed.sealed and sealed.missing() == []


async def test_unsealed_read_incomplete_seal_and_bounds(node_factory: NodeFactory) -> None:
    node = node_factory.start()
    key = DeviceKey.generate()
    si = _si()
    async with node.client(key) as client:
        await client.create_share(si, 1, 1000, 3600)
        await client.write(si, 1, 0, b"x" * 500)
        with pytest.raises(NodeRefused, match="not sealed") as unsealed:
            await client.read(si, 1, 0, 10)
        assert unsealed.value.status == 409
        with pytest.raises(NodeRefused, match="500 bytes of the share are not written"):
            await client.seal(si, 1)
        with pytest.raises(NodeRefused) as beyond:
            await client.write(si, 1, 900, b"y" * 200)
        assert beyond.value.status == 416
        with pytest.raises(NodeRefused) as size_mismatch:
            await client.create_share(si, 1, 2000, 3600)
        assert size_mismatch.value.status == 409
        with pytest.raises(ShareNotFound):
            await client.read(si, 2, 0, 10)
        await client.write(si, 1, 500, b"y" * 500)
        await client.seal(si, 1)
        with pytest.raises(NodeRefused) as after_seal:
            await client.read(si, 1, 1000, 10)
        assert after_seal.value.status == 416
        assert await client.read(si, 1, 495, 10) == b"xxxxxyyyyy"


async def test_quota_full_is_507_with_clear_error(node_factory: NodeFactory) -> None:
    node = node_factory.start(quota="3M")
    key = DeviceKey.generate()
    async with node.client(key) as client:
        await client.create_share(_si(), 0, 2 * MiB, 3600)
        with pytest.raises(QuotaExceeded) as full:
            await client.create_share(_si(), 0, 2 * MiB, 3600)
        assert full.value.status == 507
        assert "insufficient storage" in str(full.value)
        assert (await client.info()).free == MiB


async def test_wrong_pinned_identity_is_rejected(node_factory: NodeFactory) -> None:
    node = node_factory.start()
    other = DeviceKey.generate().node_id
    client = NodeClient(other, node.address, DeviceKey.generate())
    with pytest.raises(WrongNodeIdentity) as wrong:
        await client.info()
    assert str(wrong.value) == f"wrong node identity: expected {other}, got {node.node_id}"
    await client.aclose()


async def test_unreachable_node_is_unavailable(tmp_path: Path) -> None:
    with trio.socket.socket() as sock:  # a port with nobody listening
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = NodeClient(DeviceKey.generate().node_id, ("127.0.0.1", port), DeviceKey.generate())
    with pytest.raises(NodeUnavailable):
        await client.info()


async def test_signature_failures_are_refused(node_factory: NodeFactory) -> None:
    node = node_factory.start()
    key = DeviceKey.generate()
    path = share_path(_si(), 0)
    body = b'{"size": 10, "lease_seconds": 60}'

    async def create(headers: list[tuple[str, str]], payload: bytes = body) -> tuple[int, str]:
        status, reply = await raw_request(node.address, "POST", path, headers, payload)
        return status, reply["error"] if status >= 400 else ""

    status, error = await create([])
    assert (status, "missing signature header") == (401, error[:24])
    good = signed_headers(key, "POST", path, body, node.node_id)
    assert (await create(good))[0] == 201
    status, error = await create(good)  # the same request again
    assert (status, error) == (401, "replayed request (nonce already used)")
    status, error = await create(
        signed_headers(key, "POST", path, body, node.node_id), b"{}" + body
    )
    assert status == 400 and "signed hash" in error
    stale = signed_headers(key, "POST", path, body, node.node_id, now=time.time() - 3600)
    status, error = await create(stale)
    assert status == 401 and "off the node clock" in error
    elsewhere = signed_headers(key, "POST", path, body, DeviceKey.generate().node_id)
    status, error = await create(elsewhere)
    assert status == 401 and "signed for node" in error
    forged = [(n, v) for n, v in signed_headers(key, "POST", path, body, node.node_id)]
    forged = [(n, v if n != "pc-key" else forged[0][1][::-1]) for n, v in forged]
    status, error = await create(forged)
    assert status == 401 and "signature" in error
    other_path = signed_headers(key, "POST", share_path(_si(), 1), body, node.node_id)
    status, error = await create(other_path)
    assert status == 401 and "bad request signature" in error
    async with node.client(key) as client:
        assert (await client.info()).used == 10


async def test_delete_and_lease_only_by_owner(node_factory: NodeFactory) -> None:
    node = node_factory.start()
    owner, stranger = DeviceKey.generate(), DeviceKey.generate()
    si = _si()
    async with node.client(owner) as mine, node.client(stranger) as theirs:
        await _upload(mine, si, 4, b"z" * 100)
        with pytest.raises(AuthError) as denied:
            await theirs.delete(si, 4)
        assert denied.value.status == 403
        with pytest.raises(AuthError):
            await theirs.renew_lease(si, 4, 100)
        with pytest.raises(AuthError):
            await theirs.create_share(si, 4, 100, 60)
        assert await theirs.read(si, 4) == b"z" * 100  # reads need no secret
        before = (await mine.list_shares(si))[0].lease_expires
        assert await mine.renew_lease(si, 4, 10 * 86400) > before
        await mine.delete(si, 4)
        assert await mine.list_shares(si) == []
        assert (await mine.info()).used == 0
        with pytest.raises(ShareNotFound):
            await mine.delete(si, 4)


async def test_bad_requests_get_4xx_and_node_keeps_serving(node_factory: NodeFactory) -> None:
    node = node_factory.start()
    key = DeviceKey.generate()
    si = _si()
    async with node.client(key) as client:
        await _upload(client, si, 0, b"secret share")
    tricks = [
        "/v1/shares/../../store/node_key.pem",
        "/v1/shares/%2e%2e/%2e%2e/node_key.pem",
        "/v1/shares/" + "a" * 26 + "/0/../1",
        "//etc/passwd",
        "http://127.0.0.1/v1/info",
        "/v1/shares/" + "A" * 26,
        "/v1/shares/" + "a" * 27,
        "/v1/shares/" + "a" * 26 + "/256",
        "/v1/shares/" + "a" * 26 + "/01",
        "/v1/info?x=1",
        "/v2/info",
    ]
    for trick in tricks:
        status, reply = await raw_request(node.address, "GET", trick)
        assert 400 <= status < 500, (trick, status)
        assert isinstance(reply, dict) and reply["error"], trick
    status, reply = await raw_request(node.address, "DELETE", "/v1/info")
    assert status == 405
    # garbage JSON bodies (correctly signed)
    path = share_path(_si(), 0)
    for garbage in [b"not json", b"[1,2]", b'{"size": -1, "lease_seconds": 5}', b'{"size": "1"}']:
        headers = signed_headers(key, "POST", path, garbage, node.node_id)
        status, reply = await raw_request(node.address, "POST", path, headers, garbage)
        assert status == 400 and reply["error"], garbage
    # oversized control body, oversized headers, non-HTTP bytes
    status, reply = await raw_request(node.address, "POST", path, [], b"x" * 100_000)
    assert status == 413
    status, reply = await raw_request(node.address, "GET", "/v1/info", [("x-big", "y" * 20_000)])
    assert status == 431 and "larger than" in reply["error"]
    answer = await raw_bytes_exchange(node.address, b"\x00\xffGARBAGE\r\n\r\n" * 10)
    assert answer.startswith(b"HTTP/1.1 400")
    answer = await raw_bytes_exchange(node.address, b"GET /v1/info HTTP/1.1\r\nHost: x\r\n")
    assert answer == b""  # incomplete head: the node waits (idle timeout), our side gave up
    # plain (non-TLS) bytes on the TLS port
    with trio.socket.socket() as sock:
        await sock.connect(node.address)
        await sock.send(b"GET /v1/info HTTP/1.1\r\n\r\n")
        with trio.move_on_after(5):
            await sock.recv(100)
    assert node.alive()
    async with node.client(key) as client:
        assert await client.read(si, 0) == b"secret share"
        assert len(await client.list_shares(si)) == 1


async def test_read_rate_limit_per_peer(node_factory: NodeFactory) -> None:
    node = node_factory.start(extra_args=["--read-rate", "1"])
    async with node.client(DeviceKey.generate()) as client:
        with pytest.raises(RateLimited) as limited:
            for _ in range(50):
                await client.info()
        assert limited.value.status == 429


async def test_lease_expiry_sweep_removes_share(node_factory: NodeFactory) -> None:
    node = node_factory.start(sweep_interval=0.3)
    key = DeviceKey.generate()
    short, long = _si(), _si()
    async with node.client(key) as client:
        await client.create_share(short, 0, 100, 1)
        await client.write(short, 0, 0, b"s" * 100)
        await client.seal(short, 0)
        await _upload(client, long, 0, b"l" * 100)
        assert len(await client.list_shares(short)) == 1
        with trio.fail_after(15):
            while await client.list_shares(short):  # noqa: ASYNC110 - polling another process
                await trio.sleep(0.2)
        assert (await client.info()).used == 100
        assert await client.read(long, 0) == b"l" * 100
    assert len(list((node.data_dir / "store" / "shares").rglob("meta.json"))) == 1


async def test_kill_9_during_writes_then_restart_is_consistent(node_factory: NodeFactory) -> None:
    node = node_factory.start()
    key = DeviceKey.generate()
    sealed_si, partial_si = _si(), _si()
    sealed_data = os.urandom(2 * MiB)
    datas = {n: os.urandom(16 * MiB) for n in range(4)}
    async with node.client(key, max_connections=4) as client:
        await _upload(client, sealed_si, 9, sealed_data)

        async def upload(shnum: int) -> None:
            data = datas[shnum]
            await client.create_share(partial_si, shnum, len(data), 3600)
            for offset in range(0, len(data), 256 * 1024):
                await client.write(partial_si, shnum, offset, data[offset : offset + 256 * 1024])

        async def killer() -> None:
            await trio.sleep(0.4)
            node.process.send_signal(signal.SIGKILL)

        with pytest.raises(BaseExceptionGroup) as failures:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(killer)
                for shnum in datas:
                    nursery.start_soon(upload, shnum)
        assert failures.group_contains(NodeUnavailable)
    node.kill()
    # leftovers a crash can leave: staging dirs and half-written meta files
    store_dir = node.data_dir / "store"
    (store_dir / "tmp" / "new-deadbeef").mkdir(parents=True, exist_ok=True)
    (store_dir / "tmp" / "new-deadbeef" / "data").write_bytes(b"junk")
    for meta in list((store_dir / "shares").rglob("meta.json"))[:1]:
        (meta.parent / "meta.json.tmp").write_bytes(b"{trunc")
    restarted = node_factory.restart(node)
    assert list((store_dir / "tmp").iterdir()) == []
    assert not list((store_dir / "shares").rglob("*.tmp"))
    async with restarted.client(key) as client:
        assert await client.read(sealed_si, 9) == sealed_data
        listed = {s.shnum: s for s in await client.list_shares(partial_si)}
        assert set(listed) <= set(datas)
        for shnum, data in datas.items():
            resumed = await client.create_share(partial_si, shnum, len(data), 3600)
            if shnum in listed:
                assert not resumed.created
            for start, end in resumed.missing():
                await client.write(partial_si, shnum, start, data[start:end])
            await client.seal(partial_si, shnum)
            # every range the node claimed to hold was really there: content is exact
            assert await client.read(partial_si, shnum) == data


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_cleanly(node_factory: NodeFactory, signum: int) -> None:
    node: NodeProcess = node_factory.start()
    async with node.client(DeviceKey.generate()) as client:
        await client.info()
    node.process.send_signal(signum)
    assert node.process.wait(15) == 0
    assert "Traceback" not in node.log()
