"""The hook through which every byte of share data passes, so a scheduler can throttle it.

The node server and the node client call `consume(nbytes, peer)` before sending and after
receiving each chunk of share data; the call returns when the bytes may go. The default lets
everything through; `desktop/agent/throttle.py` provides real token buckets.
"""

from __future__ import annotations

from typing import Protocol


class RateLimiter(Protocol):
    async def consume(self, nbytes: int, peer: str) -> None: ...


class NoLimit:
    """Never waits."""

    async def consume(self, nbytes: int, peer: str) -> None:
        return None


NO_LIMIT = NoLimit()
