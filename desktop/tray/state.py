"""From the daemon's `status` reply to what the tray shows, as a pure function.

Kept free of GTK and sockets so every state the user can see is unit-tested. The reply is read
defensively: a daemon of another version that leaves a field out must not crash the tray.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SHARING_MODES = ("always", "idle", "never")


class IconState(enum.Enum):
    IN_SYNC = "in_sync"
    SYNCING = "syncing"
    PAUSED = "paused"
    OFFLINE = "offline"
    ERROR = "error"


@dataclass(frozen=True)
class TrayView:
    """Everything the icon, tooltip and menu need, derived from one status reply."""

    icon: IconState
    count: int
    tooltip: str
    status_line: str
    daemon_running: bool = False
    sync_paused: bool = False
    sharing: str | None = None
    sharing_paused: bool = False
    folder: str | None = None
    mounted: bool = False
    mount_path: str | None = None
    conflicts: int = 0


def format_bytes(count: int) -> str:
    """Decimal units, as file managers show them: `12.3 GB`, `512 B`."""
    value = float(max(count, 0))
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _section(status: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = status.get(name)
    return value if isinstance(value, Mapping) else {}


def _int(section: Mapping[str, Any], key: str) -> int:
    value = section.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    return value if isinstance(value, str) and value else None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


OFFLINE_VIEW = TrayView(
    icon=IconState.OFFLINE,
    count=0,
    tooltip="PermaCloud: not running",
    status_line="PermaCloud is not running",
)


def derive_view(status: Mapping[str, Any] | None, now: float | None = None) -> TrayView:
    """The view for a status reply, or the 'not running' view when the daemon is unreachable."""
    if status is None:
        return OFFLINE_VIEW
    now = time.time() if now is None else now
    sync, storage = _section(status, "sync"), _section(status, "storage")
    nodes, agent, mount = (
        _section(status, "nodes"),
        _section(status, "agent"),
        _section(status, "mount"),
    )

    sync_state = _str(sync, "state") or "idle"
    pending, conflicts = _int(sync, "pending"), _int(sync, "conflicts")
    online, known = _int(nodes, "online"), _int(nodes, "known")
    paused_until = agent.get("paused_until")
    sharing_paused = isinstance(paused_until, (int, float)) and paused_until > now
    sharing = _str(agent, "sharing")

    count = 0
    if sync_state == "error":
        icon, headline = IconState.ERROR, f"Error: {_str(sync, 'error') or 'sync failed'}"
    elif sync_state == "paused":
        icon, headline = IconState.PAUSED, "Sync paused"
    elif online == 0:
        icon = IconState.OFFLINE
        headline = "No storage nodes online" if known else "No storage nodes known yet"
    elif sync_state == "syncing" or pending > 0:
        icon, count = IconState.SYNCING, pending
        headline = f"Syncing {_plural(pending, 'file')}" if pending else "Syncing"
    else:
        icon, headline = IconState.IN_SYNC, "Up to date"

    parts = [headline, f"{format_bytes(_int(storage, 'stored_bytes'))} stored"]
    donated = _int(storage, "donated_bytes")
    if sharing == "never" or donated == 0:
        parts.append("not sharing")
    elif sharing_paused:
        parts.append(f"sharing paused until {time.strftime('%H:%M', time.localtime(paused_until))}")
    else:
        parts.append(f"donating {format_bytes(donated)}")
    if conflicts:
        parts.append(_plural(conflicts, "conflict"))
    status_line = " · ".join(parts)

    tooltip_parts = [f"PermaCloud: {headline}"]
    if icon in (IconState.IN_SYNC, IconState.SYNCING):
        tooltip_parts.append(f"{online} of {known} nodes online")
    if conflicts:
        tooltip_parts.append(_plural(conflicts, "conflict"))
    return TrayView(
        icon=icon,
        count=count,
        tooltip=" · ".join(tooltip_parts),
        status_line=status_line,
        daemon_running=True,
        sync_paused=sync_state == "paused",
        sharing=sharing if sharing in SHARING_MODES else None,
        sharing_paused=sharing_paused,
        folder=_str(sync, "folder"),
        mounted=mount.get("mounted") is True,
        mount_path=_str(mount, "path"),
        conflicts=conflicts,
    )
