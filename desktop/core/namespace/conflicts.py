"""Conflict-copy names, Syncthing style: `NAME.sync-conflict-YYYYMMDD-HHMMSS-DEVICE.EXT`."""

import re
from datetime import UTC, datetime

from desktop.core.namespace.keys import short_id
from desktop.core.namespace.paths import basename, join, parent

_MAX_MS = 253402300799000  # 9999-12-31T23:59:59Z: a bogus timestamp must not crash naming
_MARKER = re.compile(r"\.sync-conflict-\d{8}-\d{6}-[A-Z0-9]{7}(\.|$)")


def conflict_name(path: str, timestamp_ms: int, device_id: str) -> str:
    """The conflict-copy path for the losing version written by `device_id` at `timestamp_ms`."""
    name = basename(path)
    dot = name.rfind(".")
    stem, ext = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    clamped = min(max(timestamp_ms, 0), _MAX_MS)
    stamp = datetime.fromtimestamp(clamped // 1000, tz=UTC).strftime("%Y%m%d-%H%M%S")
    return join(parent(path), f"{stem}.sync-conflict-{stamp}-{short_id(device_id)}{ext}")


def is_conflict_copy(path: str) -> bool:
    """Conflict copies are regular files: a conflict among them never spawns a copy of a copy."""
    return _MARKER.search(basename(path)) is not None
