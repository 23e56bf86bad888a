"""Rate limiting of desktop notifications, pure: at most one per kind per interval, with a count.

A sync that hits 500 conflicts at once must produce one bubble saying "500 conflicts", not 500
bubbles. The first event of a quiet kind shows at once; later ones wait and are summed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_INTERVAL = 30.0


@dataclass(frozen=True)
class Notice:
    kind: str
    title: str
    text: str
    count: int = 1

    def summary(self) -> tuple[str, str]:
        """(title, body) as shown: a lone event as is, a burst with its count."""
        if self.count == 1:
            return self.title, self.text
        label = {"conflict": "conflicts", "error": "errors"}.get(self.kind, f"{self.kind} events")
        return f"PermaCloud: {self.count} {label}", f"Latest: {self.title} — {self.text}"


@dataclass
class _Pending:
    latest: Notice
    count: int


@dataclass
class Coalescer:
    interval: float = DEFAULT_INTERVAL
    _last_shown: dict[str, float] = field(default_factory=dict)
    _pending: dict[str, _Pending] = field(default_factory=dict)

    def offer(self, notice: Notice, now: float) -> Notice | None:
        """The notice to show now, or None when it waits to be folded into a later summary."""
        pending = self._pending.get(notice.kind)
        if pending is None:
            self._pending[notice.kind] = _Pending(notice, notice.count)
        else:
            pending.latest, pending.count = notice, pending.count + notice.count
        ready = self.due(now, only=notice.kind)
        return ready[0] if ready else None

    def _is_due(self, kind: str, now: float) -> bool:
        last = self._last_shown.get(kind)
        return kind in self._pending and (last is None or now - last >= self.interval)

    def due(self, now: float, only: str | None = None) -> list[Notice]:
        """Summaries whose quiet interval has passed; call this periodically."""
        ready: list[Notice] = []
        for kind in list(self._pending):
            if (only is not None and kind != only) or not self._is_due(kind, now):
                continue
            pending = self._pending.pop(kind)
            self._last_shown[kind] = now
            latest = pending.latest
            ready.append(Notice(kind, latest.title, latest.text, pending.count))
        return ready
