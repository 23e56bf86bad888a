"""Telling the user about new conflict copies as other devices' log entries are merged.

A conflict copy is made silently by the merge (both versions are kept), so without a notice the
user would only find it by chance. The set of copies known before the merge is read in the same
database call as the merge, so a copy is announced once, when it first appears, not each time
a later edit touches the same file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from desktop.core.namespace import Entry
from desktop.daemon.index import Index, ViewRow
from desktop.daemon.namespace import Namespace, ReceiveResult

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon


def _conflict_copies(index: Index) -> set[str]:
    with index.transaction() as db:
        return {row[0] for row in db.execute("SELECT path FROM view WHERE conflict_of IS NOT NULL")}


def receive_noting_conflicts(
    namespace: Namespace, index: Index, entries: Iterable[Entry]
) -> tuple[ReceiveResult, list[ViewRow]]:
    """Merge `entries`; also return the conflict copies the merge created (database thread)."""
    known = _conflict_copies(index)
    result = namespace.receive(entries)
    created = []
    for path in sorted(result.changed - known):
        row = index.lookup(path)
        if row is not None and row.conflict_of is not None:
            created.append(row)
    return result, created


def conflict_notice(row: ViewRow) -> dict[str, str]:
    """The `notify` event for one new conflict copy (shown by the tray)."""
    return {
        "kind": "conflict",
        "title": "Conflict",
        "text": f"{row.conflict_of} was changed on two devices; the other version is {row.path}",
    }


async def receive_and_announce(daemon: Daemon, entries: Iterable[Entry]) -> ReceiveResult:
    """`Namespace.receive` in the database thread, plus a `notify` event per new conflict copy."""
    result, created = await daemon.db(
        receive_noting_conflicts, daemon.namespace, daemon.index, entries
    )
    for row in created:
        notice = conflict_notice(row)
        daemon.activity.add("conflict", notice["text"])
        daemon.bus.publish("notify", notice)
    return result
