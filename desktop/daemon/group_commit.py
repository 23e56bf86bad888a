"""Group commit of namespace writes: many concurrent writers, one transaction and one fsync.

A sync folder finishing many small files at once makes many small namespace writes; each was a
signed entry plus its own SQLite commit (an fsync of a few milliseconds on the one database
thread), which capped it at a few hundred files a second. Here the first writer to arrive
commits what is queued (itself included) with `Namespace.append_many`; whatever queues up
meanwhile goes in the next commit (like the share batcher: no timer, a lone write waits for
nothing). Every caller returns only once its own ops are durable, as with `Namespace.append`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from desktop.core.namespace import Op
from desktop.daemon.namespace import AppendJob

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

MAX_GROUP = 512  # jobs per transaction: bounds how long the database thread is held


@dataclass
class _Pending:
    job: AppendJob
    done: bool = False
    error: BaseException | None = None


@dataclass
class GroupCommitter:
    daemon: Daemon
    _queue: list[_Pending] = field(default_factory=list)
    _busy: bool = False
    _changed: trio.Event = field(default_factory=trio.Event)

    async def commit(
        self, ops: Sequence[Op], placements: Sequence[tuple[str, dict[int, str]]] = ()
    ) -> None:
        """Append `ops` (in order) to this device's log; durable when this returns."""
        item = _Pending(AppendJob(tuple(ops), tuple(placements)))
        self._queue.append(item)
        try:
            while not item.done:
                if not self._busy:
                    await self._run(item)
                else:
                    await self._changed.wait()
        finally:
            if not item.done and item in self._queue:
                self._queue.remove(item)  # cancelled before it was committed
        if item.error is not None:
            raise item.error

    async def _run(self, mine: _Pending) -> None:
        """Commit groups until our own job is in one, then hand over to a waiting writer."""
        self._busy = True
        try:
            while self._queue and not mine.done:
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                try:
                    errors = await self.daemon.db(
                        self.daemon.namespace.append_many, [p.job for p in group]
                    )
                except BaseException as error:
                    for pending in group:
                        pending.error = error
                        pending.done = True
                    raise
                for pending, refused in zip(group, errors, strict=True):
                    pending.error = refused
                    pending.done = True
                self.daemon.wake_publish()
                self._wake()
        finally:
            self._busy = False
            self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, trio.Event()
        event.set()
