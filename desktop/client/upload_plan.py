"""Upload decisions, sans I/O: which share goes to which node, when to replace, drop or stop.

The upload encodes `n + spare` share numbers and streams all of them at once to distinct nodes
in rendezvous order; the file is done once `n` are sealed (the rest are cancelled and deleted).
The spares are the long-tail insurance: a node that fails, refuses (quota) or lags behind can be
dropped without waiting while at least `n` other shares are still alive. Only when that slack is
used up does a failed share get a replacement node (its blocks re-encoded from the source).
Success needs at least `happy` sealed shares on distinct nodes; one node never holds two shares.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from desktop.core.errors import PermaCloudError


class NotEnoughNodes(PermaCloudError):
    """Fewer storage nodes could take a share than the upload needs."""


class ShareState(enum.Enum):
    ACTIVE = "active"  # being uploaded to its node
    SEALED = "sealed"
    DROPPED = "dropped"  # cancelled as a spare (slow, or not needed any more)
    FAILED = "failed"  # its node failed; a replacement may carry the share number on
    UNPLACED = "unplaced"  # no node for it


@dataclass
class ShareSlot:
    shnum: int
    node_id: str | None
    state: ShareState
    attempts: int = 1
    history: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Replacement:
    """Upload share `shnum` (re-encoded from the source) to `node_id`."""

    shnum: int
    node_id: str


class UploadTracker:
    """The state machine of one file upload; the trio code reports events and obeys."""

    def __init__(
        self, node_order: Sequence[str], *, total: int, target: int, happy: int, reachable: int
    ) -> None:
        if not 1 <= happy <= target <= total:
            raise NotEnoughNodes(f"need 1 <= happy <= n, got happy={happy} n={target}")
        if len(node_order) < happy:
            raise NotEnoughNodes(f"not enough storage nodes: need {happy}, reachable {reachable}")
        self.total = total
        self.target = target
        self.happy = happy
        self._order = list(dict.fromkeys(node_order))
        self._used: set[str] = set()
        self._bad: dict[str, str] = {}
        self.slots: dict[int, ShareSlot] = {}
        for shnum in range(total):
            node = self._order[shnum] if shnum < len(self._order) else None
            state = ShareState.ACTIVE if node else ShareState.UNPLACED
            self.slots[shnum] = ShareSlot(shnum, node, state)
            if node:
                self._used.add(node)

    # ---- queries ---------------------------------------------------------------------------

    def initial(self) -> dict[int, str]:
        """Share number -> node for the first streaming pass."""
        return {
            s.shnum: s.node_id
            for s in self.slots.values()
            if s.state is ShareState.ACTIVE and s.node_id is not None
        }

    def count(self, state: ShareState) -> int:
        return sum(1 for s in self.slots.values() if s.state is state)

    @property
    def sealed(self) -> int:
        return self.count(ShareState.SEALED)

    @property
    def alive(self) -> int:
        """Shares sealed or still on their way."""
        return self.sealed + self.count(ShareState.ACTIVE)

    @property
    def reached_target(self) -> bool:
        return self.sealed >= self.target

    @property
    def finished(self) -> bool:
        return self.reached_target or self.count(ShareState.ACTIVE) == 0

    @property
    def bad_nodes(self) -> dict[str, str]:
        return dict(self._bad)

    def placements(self) -> dict[int, str]:
        return {
            s.shnum: s.node_id
            for s in self.slots.values()
            if s.state is ShareState.SEALED and s.node_id is not None
        }

    def may_drop(self, shnum: int) -> bool:
        """True if share `shnum` can be given up (it lags) and `n` shares can still be sealed."""
        slot = self.slots[shnum]
        return slot.state is ShareState.ACTIVE and self.alive - 1 >= self.target

    def to_cancel(self) -> list[int]:
        """Once `n` shares are sealed, every share still active is cancelled."""
        if not self.reached_target:
            return []
        return [s.shnum for s in self.slots.values() if s.state is ShareState.ACTIVE]

    # ---- events ----------------------------------------------------------------------------

    def on_sealed(self, shnum: int) -> list[int]:
        """Record a sealed share; returns the active shares to cancel now."""
        slot = self.slots[shnum]
        if slot.state is ShareState.ACTIVE:
            slot.state = ShareState.SEALED
        return self.to_cancel()

    def on_dropped(self, shnum: int, reason: str) -> None:
        slot = self.slots[shnum]
        if slot.state is ShareState.ACTIVE:
            slot.state = ShareState.DROPPED
            slot.history.append(f"dropped: {reason}")

    def on_failed(self, shnum: int, reason: str) -> Replacement | None:
        """The share's node failed (down, quota, refused). Returns where to upload it instead,
        or None when the spares still cover `n` (or no node is left)."""
        slot = self.slots[shnum]
        if slot.state is not ShareState.ACTIVE:
            return None
        if slot.node_id is not None:
            self._bad[slot.node_id] = reason
        slot.history.append(f"{slot.node_id}: {reason}")
        slot.state = ShareState.FAILED
        if self.alive >= self.target:
            return None
        node = self._next_node()
        if node is None:
            return None
        slot.node_id = node
        slot.state = ShareState.ACTIVE
        slot.attempts += 1
        return Replacement(shnum, node)

    def _next_node(self) -> str | None:
        for node in self._order:
            if node not in self._used and node not in self._bad:
                self._used.add(node)
                return node
        return None

    def outcome_error(self) -> NotEnoughNodes | None:
        """None when the upload counts as done (>= happy sealed), else the error to raise."""
        if self.sealed >= self.happy:
            return None
        reasons = "; ".join(f"{node[:8]}: {why}" for node, why in list(self._bad.items())[:4])
        return NotEnoughNodes(
            f"not enough storage nodes: need {self.happy}, only {self.sealed} stored a share"
            + (f" ({reasons})" if reasons else "")
        )
