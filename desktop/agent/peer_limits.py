"""Per-peer request token buckets: unsigned reads are free of secrets but not of cost.

Pure (the clock is an argument), so it is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class PeerRequestLimiter:
    """Allows `rate` requests per second per peer, with bursts up to `burst`."""

    def __init__(self, rate: float, burst: float, max_peers: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_peers = max_peers
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, peer: str, now: float) -> bool:
        bucket = self._buckets.get(peer)
        if bucket is None:
            if len(self._buckets) >= self.max_peers:
                self._forget_full(now)
            bucket = self._buckets[peer] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def retry_after(self, peer: str) -> float:
        bucket = self._buckets.get(peer)
        if bucket is None or self.rate <= 0:
            return 1.0
        return max(0.0, (1.0 - bucket.tokens) / self.rate)

    def _forget_full(self, now: float) -> None:
        """Drop peers whose bucket has refilled: they are indistinguishable from new ones."""
        self._buckets = {
            peer: b
            for peer, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate < self.burst
        }
        if len(self._buckets) >= self.max_peers:
            self._buckets.clear()
