"""Notification rate limiting: a burst becomes one bubble now and one summary later."""

from __future__ import annotations

from desktop.tray.coalesce import Coalescer, Notice


def conflict(name: str) -> Notice:
    return Notice("conflict", "Conflict", f"{name} changed on two devices")


def test_first_shows_at_once_burst_is_summed_later() -> None:
    coalescer = Coalescer(interval=30)
    first = coalescer.offer(conflict("a"), now=100)
    assert first is not None and first.summary() == ("Conflict", "a changed on two devices")
    for i in range(499):
        assert coalescer.offer(conflict(f"f{i}"), now=101 + i * 0.01) is None
    assert coalescer.due(now=120) == []
    (summary,) = coalescer.due(now=130)
    assert summary.count == 499
    assert summary.summary() == (
        "PermaCloud: 499 conflicts",
        "Latest: Conflict — f498 changed on two devices",
    )
    assert coalescer.due(now=200) == []
    # After a quiet interval the next one shows at once again.
    assert coalescer.offer(conflict("b"), now=200) is not None


def test_kinds_are_limited_separately() -> None:
    coalescer = Coalescer(interval=10)
    assert coalescer.offer(conflict("a"), now=0) is not None
    error = Notice("error", "Upload failed", "no nodes")
    assert coalescer.offer(error, now=1) is not None
    assert coalescer.offer(Notice("error", "Upload failed", "again"), now=2) is None
    assert coalescer.offer(conflict("b"), now=3) is None
    due = coalescer.due(now=11)
    assert sorted((n.kind, n.count) for n in due) == [("conflict", 1), ("error", 1)]
    # A single waiting event is shown as itself, not as "1 errors".
    assert {n.kind: n.summary() for n in due}["error"] == ("Upload failed", "again")


def test_an_offer_after_the_interval_flushes_the_waiting_ones_with_it() -> None:
    coalescer = Coalescer(interval=10)
    coalescer.offer(conflict("a"), now=0)
    coalescer.offer(conflict("b"), now=1)
    shown = coalescer.offer(conflict("c"), now=15)
    assert shown is not None and shown.count == 2
    assert shown.summary()[0] == "PermaCloud: 2 conflicts"
