"""Sans-I/O rate limiting: a token bucket with an injected clock, and a byte-fair queue.

The bucket may go into debt: a request is granted as soon as the balance is non-negative and then
pays its full size. So a request larger than the burst never deadlocks, and the long-run rate is
exact (total granted <= burst + rate * elapsed + the last request). A rate change first settles the
tokens earned at the old rate up to now, then earns at the new rate: no accounting is lost.

Burst: 0.1 s worth of the rate, at least 64 KiB (one socket-sized chunk). For 1-20 MB/s caps that
is 100 KB-2 MB: enough to keep the pipe busy between wake-ups, small enough that a cap is visible
within a fraction of a second and that a 3 s average overshoots by at most ~3 %.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

MIN_BURST = 64 * 1024
BURST_SECONDS = 0.1
DEBT_TOLERANCE = 1.0
"""Bytes of debt treated as paid: float rounding must never leave a waiter sleeping 0 s forever."""


def default_burst(rate: float) -> float:
    return max(float(MIN_BURST), rate * BURST_SECONDS)


class TokenBucket:
    """`rate` bytes/s (None = unlimited). `clock()` returns seconds, monotonic."""

    def __init__(
        self, rate: float | None, clock: Callable[[], float], burst: float | None = None
    ) -> None:
        self._clock = clock
        self._fixed_burst = burst
        self._rate: float | None = None
        self._burst = 0.0
        self._tokens = 0.0
        self._stamp: float | None = None  # first clock read is deferred to first use
        self.set_rate(rate)

    @property
    def rate(self) -> float | None:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def set_rate(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be above zero or None, not {rate!r}")
        was_unlimited = self._rate is None
        self._refill()
        self._rate = rate
        if rate is None:
            self._tokens = 0.0
            return
        self._burst = self._fixed_burst if self._fixed_burst is not None else default_burst(rate)
        self._tokens = self._burst if was_unlimited else min(self._tokens, self._burst)

    def tokens(self) -> float:
        """Current balance (negative = debt); +inf when unlimited."""
        if self._rate is None:
            return float("inf")
        self._refill()
        return self._tokens

    def wait_time(self) -> float:
        """Seconds until the balance is non-negative, i.e. until the next grant may happen."""
        balance = self.tokens()
        if balance > -DEBT_TOLERANCE or self._rate is None:
            return 0.0
        return -balance / self._rate

    def take(self, nbytes: int) -> None:
        """Pay for `nbytes` now, going into debt if needed."""
        if self._rate is None:
            return
        self._refill()
        self._tokens -= nbytes

    def consume(self, nbytes: int) -> float:
        """Pay for `nbytes`; return how long to wait before sending them (earlier debt first)."""
        delay = self.wait_time()
        self.take(nbytes)
        return delay

    def _refill(self) -> None:
        """Earn tokens since the last call; the clock is only read while a rate is set."""
        if self._rate is None:
            self._stamp = None
            return
        now = self._clock()
        if self._stamp is not None:
            earned = (now - self._stamp) * self._rate
            self._tokens = min(self._burst, self._tokens + earned)
        self._stamp = now


@dataclass(eq=False)
class Ticket:
    """One waiting request; `granted` is set by `FairQueue.pop` callers."""

    peer: str
    nbytes: int
    tag: float = 0.0
    granted: bool = False
    cancelled: bool = False
    seq: int = field(default=0)


class FairQueue:
    """Self-clocked fair queueing (SCFQ): peers share bytes equally, whatever their chunk sizes.

    Each request gets a finish tag = max(virtual time, the peer's previous tag) + its size; the
    smallest tag goes first. A peer that was silent starts at the current virtual time, so it
    cannot hoard credit, and a lone peer is simply served in order.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Ticket]] = []
        self._virtual_time = 0.0
        self._last_tag: dict[str, float] = {}
        self._live = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return self._live

    def push(self, ticket: Ticket) -> None:
        start = max(self._virtual_time, self._last_tag.get(ticket.peer, 0.0))
        ticket.tag = start + ticket.nbytes
        ticket.seq = next(self._seq)
        self._last_tag[ticket.peer] = ticket.tag
        heapq.heappush(self._heap, (ticket.tag, ticket.seq, ticket))
        self._live += 1

    def pop(self) -> Ticket:
        while True:
            tag, _, ticket = heapq.heappop(self._heap)
            if not ticket.cancelled:
                break
        self._live -= 1
        self._virtual_time = tag
        if len(self._last_tag) > 2 * self._live + 64:
            self._forget_caught_up_peers()
        return ticket

    def remove(self, ticket: Ticket) -> None:
        """Withdraw a waiting ticket (its task was cancelled); its bytes are not charged."""
        if ticket.cancelled or ticket.granted:
            return
        ticket.cancelled = True
        self._live -= 1
        if self._last_tag.get(ticket.peer) == ticket.tag:
            self._last_tag[ticket.peer] = ticket.tag - ticket.nbytes
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)

    def _forget_caught_up_peers(self) -> None:
        """Tags at or below virtual time add nothing over the default: drop them (bounded)."""
        self._last_tag = {p: t for p, t in self._last_tag.items() if t > self._virtual_time}
