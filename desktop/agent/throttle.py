"""The trio edge of rate limiting: one `SharedRateLimiter` per direction, shared by all peers.

Every connection calls `await limiter.consume(len(chunk), peer)` before sending (or after
receiving) a chunk. Peers waiting at the same time are served byte-fairly (`FairQueue`), so two
busy peers get about half each and a lone peer gets the whole rate. `set_rate()` wakes every
waiter, which re-reads the bucket at once: a new allowance from the policy applies within one
scheduling round, not after a stale sleep. With rate None `consume` returns without waiting.

Waiters wake on their own ticket event (a grant) or when the bucket's debt is paid; with many
peers waiting they all wake at that moment and one is granted. That herd is bounded by the number
of concurrent transfers (tens), so it is not worth a dispatcher task the caller would have to run.
"""

from __future__ import annotations

import trio

from desktop.agent.token_bucket import FairQueue, Ticket, TokenBucket


class SharedRateLimiter:
    """`rate` in bytes/s, None = unlimited. Must be used from inside one trio run."""

    def __init__(self, rate: float | None, *, burst: float | None = None) -> None:
        self._bucket = TokenBucket(rate, trio.current_time, burst=burst)
        self._queue = FairQueue()
        self._wakers: dict[Ticket, trio.Event] = {}

    @property
    def rate(self) -> float | None:
        return self._bucket.rate

    def set_rate(self, bytes_per_s: float | None) -> None:
        """Apply a new rate now, including to tasks already waiting."""
        if bytes_per_s == self._bucket.rate:
            return
        self._bucket.set_rate(bytes_per_s)
        for event in self._wakers.values():
            event.set()
        self._pump()

    async def consume(self, nbytes: int, peer: str) -> None:
        """Wait until `nbytes` may pass for `peer`; cancellation withdraws the request uncharged."""
        if self._bucket.rate is None or nbytes <= 0:
            return
        await trio.lowlevel.checkpoint()
        ticket = Ticket(peer=peer, nbytes=nbytes)
        self._queue.push(ticket)
        self._wakers[ticket] = trio.Event()
        try:
            self._pump()
            while not ticket.granted:
                with trio.move_on_after(self._bucket.wait_time()):
                    await self._wakers[ticket].wait()
                if not ticket.granted:
                    self._wakers[ticket] = trio.Event()
                    self._pump()
        except BaseException:
            self._queue.remove(ticket)
            raise
        finally:
            del self._wakers[ticket]

    def _pump(self) -> None:
        """Grant queued tickets in fair order while the bucket is out of debt."""
        while len(self._queue) and self._bucket.wait_time() <= 0:
            ticket = self._queue.pop()
            self._bucket.take(ticket.nbytes)
            ticket.granted = True
            self._wakers[ticket].set()
