"""Weekly time windows in which the node may use the full allowance, e.g.
`mon-fri 18:00-08:00; sat,sun all`.

As in BOINC, a day's windows are clock times ON that day: `mon-fri 18:00-08:00` allows Monday
00:00-08:00 and 18:00-24:00, and so on to Friday. With `sat,sun all` that is every night of the
week plus the weekend, which is what people mean by the line above. Days named in no clause have
no window; a spec with no day names at all applies to every day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from desktop.agent.human_values import BadValueError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_ALWAYS_WORDS = frozenset({"", "always", "all", "any", "24/7"})
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")
MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True, order=True)
class Window:
    """Minutes since midnight; `end <= start` wraps: [start, 24:00) and [00:00, end) that day."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < MINUTES_PER_DAY and 0 < self.end <= MINUTES_PER_DAY):
            raise BadValueError(f"window {self} is out of range")

    def contains(self, minute: int) -> bool:
        if self.end <= self.start:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end

    def __str__(self) -> str:
        if self.start == 0 and self.end == MINUTES_PER_DAY:
            return "all"
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"


WHOLE_DAY = Window(0, MINUTES_PER_DAY)


@dataclass(frozen=True)
class WeeklySchedule:
    """Windows per weekday, Monday first (index = `datetime.weekday()`)."""

    days: tuple[tuple[Window, ...], ...]

    @classmethod
    def always(cls) -> WeeklySchedule:
        return cls(days=tuple((WHOLE_DAY,) for _ in DAY_NAMES))

    @property
    def is_always(self) -> bool:
        return all(WHOLE_DAY in windows for windows in self.days)

    def allows(self, now: datetime) -> bool:
        minute = now.hour * 60 + now.minute
        return any(w.contains(minute) for w in self.days[now.weekday()])

    def __str__(self) -> str:
        """Canonical text: parsing it gives back an equal schedule."""
        if self.is_always:
            return "always"
        if not any(self.days):
            return "never"
        groups: dict[tuple[Window, ...], list[int]] = {}
        for index, windows in enumerate(self.days):
            if windows:
                groups.setdefault(windows, []).append(index)
        clauses = []
        for windows, day_indexes in groups.items():
            times = ",".join(str(w) for w in windows)
            clauses.append(f"{_format_days(day_indexes)} {times}")
        return "; ".join(clauses)


def parse_schedule(text: str) -> WeeklySchedule:
    """Parse `22:00-07:00`, `mon-fri 18:00-08:00; sat,sun all`, `always` or `never`."""
    cleaned = text.strip().lower()
    if cleaned in _ALWAYS_WORDS:
        return WeeklySchedule.always()
    if cleaned == "never":
        return WeeklySchedule(days=tuple(() for _ in DAY_NAMES))
    per_day: list[set[Window]] = [set() for _ in DAY_NAMES]
    any_days_named = False
    clauses = [c for c in cleaned.split(";") if c.strip()]
    parsed: list[tuple[list[int] | None, list[Window]]] = []
    for clause in clauses:
        days, windows = _parse_clause(clause.strip())
        any_days_named = any_days_named or days is not None
        parsed.append((days, windows))
    for days, windows in parsed:
        if days is None and any_days_named:
            raise BadValueError(
                f"time window {text.strip()!r}: name the days in every clause, "
                "e.g. 'mon-fri 18:00-08:00; sat,sun all'"
            )
        for day in days if days is not None else range(7):
            per_day[day].update(windows)
    # A day with "all" needs no other window; normalising keeps str() -> parse a round trip.
    return WeeklySchedule(
        days=tuple((WHOLE_DAY,) if WHOLE_DAY in w else tuple(sorted(w)) for w in per_day)
    )


def _parse_clause(clause: str) -> tuple[list[int] | None, list[Window]]:
    tokens = [t for t in re.split(r"[\s,]+", clause) if t]
    days: list[int] = []
    index = 0
    while index < len(tokens) and tokens[index][0].isalpha() and tokens[index] not in _ALWAYS_WORDS:
        days.extend(_parse_day_token(tokens[index]))
        index += 1
    time_tokens = tokens[index:]
    if not time_tokens:
        raise BadValueError(f"time window {clause!r} has no times (e.g. 'mon-fri 18:00-08:00')")
    windows = [_parse_window(token) for token in time_tokens]
    return (sorted(set(days)) if days else None), windows


def _parse_day_token(token: str) -> list[int]:
    if "-" in token:
        first, _, last = token.partition("-")
        start, end = _day_index(first), _day_index(last)
        return [(start + offset) % 7 for offset in range((end - start) % 7 + 1)]
    return [_day_index(token)]


def _day_index(name: str) -> int:
    if name in DAY_NAMES:
        return DAY_NAMES.index(name)
    if name in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(name)
    raise BadValueError(f"{name!r} is not a weekday (mon, tue, wed, thu, fri, sat, sun)")


def _parse_window(token: str) -> Window:
    if token in _ALWAYS_WORDS:
        return WHOLE_DAY
    start_text, sep, end_text = token.partition("-")
    if not sep:
        raise BadValueError(f"{token!r} is not a time range (e.g. 22:00-07:00 or all)")
    start, end = _parse_time(start_text), _parse_time(end_text)
    if start == MINUTES_PER_DAY:
        start = 0
    if end == 0:
        end = MINUTES_PER_DAY
    if start == end:
        raise BadValueError(f"time range {token!r} is empty; write 'all' for the whole day")
    return Window(start, end)


def _parse_time(text: str) -> int:
    match = _TIME_RE.match(text)
    if match is None:
        raise BadValueError(f"{text!r} is not a time of day (e.g. 07:30)")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes != 0):
        raise BadValueError(f"{text!r} is not a time of day (e.g. 07:30)")
    return hours * 60 + minutes


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _format_days(indexes: list[int]) -> str:
    """Consecutive runs become ranges: [0,1,2,3,4] -> `mon-fri`, [5,6] -> `sat,sun`."""
    runs: list[list[int]] = []
    for index in indexes:
        if runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{DAY_NAMES[run[0]]}-{DAY_NAMES[run[-1]]}")
        else:
            parts.extend(DAY_NAMES[i] for i in run)
    return ",".join(parts)
