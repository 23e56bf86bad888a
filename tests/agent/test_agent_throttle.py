"""Token bucket (fake clock), fair queue, and the trio limiter (MockClock; one real-socket test)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from desktop.agent.throttle import SharedRateLimiter
from desktop.agent.token_bucket import FairQueue, Ticket, TokenBucket, default_burst


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- pure bucket ---


def test_bucket_grants_burst_then_charges_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock, burst=1000)
    assert bucket.consume(1000) == 0
    assert bucket.consume(500) == 0  # balance exactly 0: granted, now 500 in debt
    assert bucket.consume(1) == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.tokens() == pytest.approx(-1)


def test_bucket_long_run_rate_is_exact() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2_000_000, clock)
    sent = 0
    start = clock.now
    while clock.now - start < 10:
        clock.now += bucket.consume(65536)
        sent += 65536
    elapsed = clock.now - start
    assert sent <= bucket.burst + 2_000_000 * elapsed + 65536 + 1  # + the 1-byte debt tolerance
    assert sent >= 2_000_000 * elapsed


def test_bucket_rate_change_keeps_accounting() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock, burst=1000)
    bucket.take(2000)  # balance -1000: one second of debt at 1000 B/s
    clock.now += 0.5  # earns 500 at the old rate
    bucket.set_rate(2000)
    assert bucket.tokens() == pytest.approx(-500)
    assert bucket.wait_time() == pytest.approx(0.25)  # the rest is paid at the new rate


def test_bucket_unlimited_and_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(None, clock)
    assert bucket.consume(10**12) == 0
    assert bucket.wait_time() == 0
    bucket.set_rate(1_000_000)
    assert bucket.tokens() == pytest.approx(bucket.burst)  # starts full, not in debt
    bucket.set_rate(None)
    assert bucket.consume(10**12) == 0


def test_bucket_burst_sizes_and_bad_rate() -> None:
    assert default_burst(100_000) == 65536
    assert default_burst(1_000_000) == 100_000
    assert default_burst(20_000_000) == 2_000_000
    with pytest.raises(ValueError, match="above zero"):
        TokenBucket(0, FakeClock())


def test_bucket_burst_is_capped_after_idle() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock, burst=1000)
    clock.now += 3600
    assert bucket.tokens() == 1000


# --- fair queue ---


def test_fair_queue_is_byte_fair_with_different_chunk_sizes() -> None:
    queue = FairQueue()
    chunk = {"big": 256 * 1024, "small": 16 * 1024}
    served = {"big": 0, "small": 0}
    for peer in chunk:
        queue.push(Ticket(peer, chunk[peer]))
    for _ in range(2000):
        ticket = queue.pop()
        served[ticket.peer] += ticket.nbytes
        queue.push(Ticket(ticket.peer, chunk[ticket.peer]))  # each peer keeps one request queued
    assert served["big"] == pytest.approx(served["small"], rel=0.03)


def test_fair_queue_lone_peer_and_withdrawal() -> None:
    queue = FairQueue()
    first, second, third = Ticket("a", 10), Ticket("a", 10), Ticket("b", 10)
    for ticket in (first, second, third):
        queue.push(ticket)
    queue.remove(second)
    assert len(queue) == 2
    assert [queue.pop(), queue.pop()] == [first, third]
    assert len(queue) == 0


# --- trio limiter on a mock clock ---


async def _pump_peer(
    limiter: SharedRateLimiter, peer: str, chunk: int, counts: dict[str, int]
) -> None:
    while True:
        await limiter.consume(chunk, peer)
        counts[peer] = counts.get(peer, 0) + chunk


async def _run_peers(
    limiter: SharedRateLimiter, chunks: dict[str, int], seconds: float
) -> dict[str, int]:
    counts: dict[str, int] = {}
    with trio.move_on_after(seconds):
        async with trio.open_nursery() as nursery:
            for peer, chunk in chunks.items():
                nursery.start_soon(_pump_peer, limiter, peer, chunk, counts)
    return counts


async def test_limiter_two_peers_share_equally(autojump_clock: trio.testing.MockClock) -> None:
    limiter = SharedRateLimiter(1_000_000)
    counts = await _run_peers(limiter, {"alice": 65536, "bob": 65536}, 20)
    total = counts["alice"] + counts["bob"]
    assert total == pytest.approx(20_000_000, rel=0.02)
    assert counts["alice"] == pytest.approx(counts["bob"], rel=0.02)


async def test_limiter_fair_by_bytes_not_by_calls(autojump_clock: trio.testing.MockClock) -> None:
    limiter = SharedRateLimiter(1_000_000)
    counts = await _run_peers(limiter, {"big": 256 * 1024, "small": 8 * 1024}, 30)
    assert counts["big"] == pytest.approx(counts["small"], rel=0.05)


async def test_limiter_lone_peer_gets_all(autojump_clock: trio.testing.MockClock) -> None:
    limiter = SharedRateLimiter(1_000_000)
    counts = await _run_peers(limiter, {"alice": 65536}, 20)
    assert counts["alice"] == pytest.approx(20_000_000, rel=0.02)


async def test_limiter_rate_raise_reaches_a_waiting_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = SharedRateLimiter(1000)
    await limiter.consume(1_000_000, "alice")  # granted at once, leaves ~934 s of debt
    finished_at: list[float] = []

    async def waiter() -> None:
        await limiter.consume(1, "alice")
        finished_at.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        assert not finished_at
        limiter.set_rate(1_000_000)  # the remaining ~933 KB of debt now takes ~0.93 s
    assert 1.9 < finished_at[0] - start < 2.0


async def test_limiter_set_unlimited_releases_waiters_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = SharedRateLimiter(1000)
    await limiter.consume(1_000_000, "alice")
    done: list[float] = []

    async def waiter(peer: str) -> None:
        await limiter.consume(1000, peer)
        done.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "alice")
        nursery.start_soon(waiter, "bob")
        await trio.sleep(1)
        limiter.set_rate(None)
    assert [t - start for t in done] == [1, 1]
    await limiter.consume(10**12, "carol")  # unlimited: no wait at all
    assert trio.current_time() - start == 1


async def test_limiter_cancelled_waiter_is_not_charged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = SharedRateLimiter(1000, burst=1000)
    await limiter.consume(1000, "alice")
    await limiter.consume(1000, "alice")  # balance now -1000: next grant at +1 s
    with trio.move_on_after(0.5):
        await limiter.consume(50_000, "bob")  # cancelled while waiting
    start = trio.current_time()
    await limiter.consume(10, "carol")
    assert trio.current_time() - start == pytest.approx(0.5)  # bob's 50 KB were never charged


# --- real sockets, real time: enforcement on a TCP loopback connection ---


async def test_limiter_enforces_5mb_per_s_on_tcp_loopback() -> None:
    """Sends through a real 127.0.0.1 TCP connection for ~3 s with a 5 MB/s cap."""
    cap = 5_000_000
    limiter = SharedRateLimiter(cap)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    received = 0
    first_byte_at = last_byte_at = 0.0

    async def receive(stream: trio.abc.Stream) -> None:
        nonlocal received, first_byte_at, last_byte_at
        async with stream:
            while data := await stream.receive_some(65536):
                now = trio.current_time()
                if not received:
                    first_byte_at = now
                received += len(data)
                last_byte_at = now

    async with trio.open_nursery() as nursery:
        server_ready = trio.Event()

        async def serve_one() -> None:
            stream = await listeners[0].accept()
            server_ready.set()
            await receive(stream)

        nursery.start_soon(serve_one)
        chunk = bytes(65536)
        async with await trio.open_tcp_stream("127.0.0.1", port) as client:
            await server_ready.wait()
            start = trio.current_time()
            while trio.current_time() - start < 3:
                await limiter.consume(len(chunk), "peer")
                await client.send_all(chunk)
    await listeners[0].aclose()
    rate = received / (last_byte_at - first_byte_at)
    assert rate == pytest.approx(cap, rel=0.10)
