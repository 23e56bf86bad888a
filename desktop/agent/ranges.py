"""Sets of written byte ranges as sorted, merged half-open intervals (pure functions)."""

from __future__ import annotations

Ranges = list[tuple[int, int]]


def add_range(ranges: Ranges, start: int, end: int) -> Ranges:
    """`ranges` plus [start, end), merged with neighbours it touches or overlaps."""
    if end <= start:
        return list(ranges)
    out: Ranges = []
    for a, b in ranges:
        if b < start or a > end:
            out.append((a, b))
        else:
            start, end = min(a, start), max(b, end)
    out.append((start, end))
    out.sort()
    return out


def covers(ranges: Ranges, start: int, end: int) -> bool:
    return any(a <= start and end <= b for a, b in ranges) or end <= start


def overlaps(ranges: Ranges, start: int, end: int) -> Ranges:
    """The parts of [start, end) that are already in `ranges`."""
    return [(max(a, start), min(b, end)) for a, b in ranges if a < end and b > start]
