"""Bytes transferred today, reset at local midnight: the input of the daily cap.

The clock is injected (a callable returning local wall time) so tests can cross midnight without
waiting; "today" is the local calendar date, so a DST change never makes a day 23 or 25 hours of
counting wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime


class DailyTransfer:
    def __init__(
        self,
        clock: Callable[[], datetime] = datetime.now,
        *,
        day: date | None = None,
        total: int = 0,
    ) -> None:
        """`day`/`total` restore a saved counter; a counter saved yesterday starts from zero."""
        self._clock = clock
        self._day = day if day is not None else clock().date()
        self._total = total

    def add(self, nbytes: int) -> None:
        if nbytes < 0:
            raise ValueError("cannot count a negative number of bytes")
        self._roll()
        self._total += nbytes

    def today(self) -> int:
        self._roll()
        return self._total

    def snapshot(self) -> tuple[date, int]:
        """(day, total) to persist across restarts."""
        self._roll()
        return self._day, self._total

    def _roll(self) -> None:
        today = self._clock().date()
        if today != self._day:
            self._day = today
            self._total = 0
