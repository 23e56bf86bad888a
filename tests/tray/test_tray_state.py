"""The pure mapping from the daemon's status reply to icon, tooltip and menu status line."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from desktop.tray.state import IconState, derive_view, format_bytes

NOW = 1_700_000_000.0

BASE: dict[str, Any] = {
    "sync": {
        "state": "idle",
        "pending": 0,
        "conflicts": 0,
        "folder": "/home/u/Sync",
        "error": None,
    },
    "storage": {
        "stored_bytes": 12_300_000_000,
        "donated_bytes": 40_000_000_000,
        "used_donated_bytes": 1,
    },
    "nodes": {"online": 3, "known": 4},
    "agent": {"mode": "active", "reason": "", "sharing": "always", "paused_until": None},
    "mount": {"mounted": True, "path": "/run/user/1000/permacloud"},
}


def status(**changes: dict[str, Any]) -> dict[str, Any]:
    reply = copy.deepcopy(BASE)
    for section, values in changes.items():
        reply[section].update(values)
    return reply


def test_unreachable_daemon_is_offline_and_says_so() -> None:
    view = derive_view(None)
    assert view.icon is IconState.OFFLINE
    assert not view.daemon_running
    assert "not running" in view.tooltip and "not running" in view.status_line


def test_up_to_date_line_matches_the_menu_wording() -> None:
    view = derive_view(status(), NOW)
    assert view.icon is IconState.IN_SYNC
    assert view.status_line == "Up to date · 12.3 GB stored · donating 40.0 GB"
    assert view.tooltip == "PermaCloud: Up to date · 3 of 4 nodes online"
    assert view.daemon_running and view.folder == "/home/u/Sync" and view.mounted
    assert view.sharing == "always" and not view.sharing_paused and not view.sync_paused


def test_syncing_carries_the_pending_count() -> None:
    view = derive_view(status(sync={"state": "syncing", "pending": 5}), NOW)
    assert (view.icon, view.count) == (IconState.SYNCING, 5)
    assert view.status_line.startswith("Syncing 5 files · ")
    one = derive_view(status(sync={"state": "idle", "pending": 1}), NOW)
    assert (one.icon, one.count) == (IconState.SYNCING, 1)
    assert one.tooltip.startswith("PermaCloud: Syncing 1 file ")


def test_precedence_error_then_paused_then_no_nodes() -> None:
    broken = status(sync={"state": "error", "error": "disk full"}, nodes={"online": 0})
    assert derive_view(broken, NOW).icon is IconState.ERROR
    assert "disk full" in derive_view(broken, NOW).tooltip
    paused = status(sync={"state": "paused"}, nodes={"online": 0})
    assert derive_view(paused, NOW).icon is IconState.PAUSED
    assert derive_view(paused, NOW).sync_paused
    lonely = status(nodes={"online": 0, "known": 2})
    assert derive_view(lonely, NOW).icon is IconState.OFFLINE
    assert derive_view(lonely, NOW).daemon_running
    assert "No storage nodes online" in derive_view(lonely, NOW).tooltip
    fresh = status(nodes={"online": 0, "known": 0})
    assert "No storage nodes known yet" in derive_view(fresh, NOW).status_line


def test_sharing_paused_and_never_and_conflicts() -> None:
    paused = derive_view(status(agent={"paused_until": NOW + 3600}), NOW)
    assert paused.sharing_paused and "sharing paused until" in paused.status_line
    expired = derive_view(status(agent={"paused_until": NOW - 1}), NOW)
    assert not expired.sharing_paused
    never = derive_view(status(agent={"sharing": "never"}), NOW)
    assert never.sharing == "never" and "not sharing" in never.status_line
    conflicted = derive_view(status(sync={"conflicts": 2}), NOW)
    assert conflicted.conflicts == 2 and conflicted.status_line.endswith("· 2 conflicts")


@pytest.mark.parametrize(
    "reply",
    [{}, {"sync": "nonsense"}, {"sync": {"pending": "7", "state": 3}, "nodes": None}],
)
def test_malformed_replies_do_not_crash(reply: dict[str, Any]) -> None:
    view = derive_view(reply, NOW)
    assert view.daemon_running
    assert view.icon in (IconState.OFFLINE, IconState.IN_SYNC)
    assert view.sharing is None


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (12_300_000_000, "12.3 GB"),
        (40e9, "40.0 GB"),
        (123_000_000_000, "123 GB"),
        (5_000_000_000_000_000, "5000 TB"),
    ],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(int(count)) == text
