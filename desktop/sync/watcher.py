"""watchdog (inotify) events of one folder, handed to trio as relative paths.

watchdog runs its own thread; each event is passed to the trio loop with `run_sync_soon`, which
never blocks that thread. Opened / closed-without-writing events are dropped; a `closed` event
(after writing) is kept because it tells the engine a writer is done. When the kernel queue
overflows, watchdog logs a warning and rebuilds its watches; the events in between are lost, so
that warning is turned into a `rescan` call (and the periodic rescan covers anything else).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import trio
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

logger = logging.getLogger(__name__)

OnChange = Callable[[str, str, bool], None]
"""on_change(event_type, rel, is_directory), called in the trio thread."""

_DROPPED = frozenset({"opened", "closed_no_write"})


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, token: trio.lowlevel.TrioToken, on_change: OnChange) -> None:
        self.root = os.fsdecode(root)
        self.token = token
        self.on_change = on_change

    def _rel(self, path: str | bytes) -> str | None:
        text = os.fsdecode(path)
        if text == self.root:
            return ""
        if not text.startswith(self.root + os.sep):
            return None
        return text[len(self.root) + 1 :]

    def _send(self, kind: str, path: str | bytes, is_dir: bool) -> None:
        rel = self._rel(path)
        if rel is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(self.on_change, kind, rel, is_dir)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _DROPPED:
            return
        self._send(event.event_type, event.src_path, event.is_directory)
        dest = getattr(event, "dest_path", "")
        if dest:
            self._send("created", dest, event.is_directory)


class _OverflowSpotter(logging.Handler):
    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()


async def watch(root: Path, on_change: OnChange, on_overflow: Callable[[], None]) -> None:
    """Watch `root` recursively until cancelled."""
    token = trio.lowlevel.current_trio_token()

    def overflowed() -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(on_overflow)

    spotter = _OverflowSpotter(overflowed)
    watchdog_logger = logging.getLogger("watchdog.observers")
    watchdog_logger.addHandler(spotter)
    observer = Observer()
    observer.schedule(_Handler(root, token, on_change), os.fsdecode(root), recursive=True)
    await trio.to_thread.run_sync(observer.start)
    try:
        await trio.sleep_forever()
    finally:
        watchdog_logger.removeHandler(spotter)
        observer.stop()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(observer.join, 5.0)
