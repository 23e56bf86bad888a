"""When to upload a dirty file: a pure debounce schedule (no trio, no clock of its own).

A file is uploaded `delay` seconds after its last change once no handle has it open for writing
(an editor saving in bursts uploads once); `fsync` makes it due at once even while open. A
failed upload is retried with exponential backoff; a change during an upload makes it due again.

While the file system is busy (content written anywhere in the last `delay` seconds) uploads
that are due are held back, for at most `max_hold` seconds: uploading shares the daemon's one
trio thread and the disk with the writes, and a burst of small-file creates ran 30x slower
under it. Held files then start together, and their shares travel in batches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _State:
    due: float
    writers: int = 0
    urgent: bool = False
    failures: int = 0


class UploadPlanner:
    def __init__(self, delay: float, max_backoff: float = 60.0, max_hold: float = 15.0) -> None:
        self.delay = delay
        self.max_backoff = max_backoff
        self.max_hold = max_hold
        self.busy_until = float("-inf")
        self._files: dict[int, _State] = {}
        self._running: set[int] = set()

    def __contains__(self, file_id: int) -> bool:
        return file_id in self._files

    def pending(self) -> set[int]:
        return set(self._files) | self._running

    def running(self) -> set[int]:
        return set(self._running)

    def _state(self, file_id: int, now: float) -> _State:
        state = self._files.get(file_id)
        if state is None:
            state = self._files[file_id] = _State(due=now + self.delay)
        return state

    def opened(self, file_id: int, now: float) -> None:
        self._state(file_id, now).writers += 1

    def closed(self, file_id: int, now: float) -> None:
        state = self._state(file_id, now)
        state.writers = max(state.writers - 1, 0)
        if not state.urgent:
            state.due = now + self.delay

    def changed(self, file_id: int, now: float) -> None:
        state = self._state(file_id, now)
        if not state.urgent:
            state.due = now + self.delay

    def urgent(self, file_id: int, now: float) -> None:
        """Upload as soon as possible, open or not (fsync, unmount, shutdown)."""
        state = self._state(file_id, now)
        state.urgent = True
        state.due = min(state.due, now)

    def activity(self, now: float) -> None:
        """Content was written through the mount (holds uploads until it settles)."""
        self.busy_until = now + self.delay

    def _start_at(self, state: _State) -> float:
        if state.urgent:
            return state.due
        return max(state.due, min(self.busy_until, state.due + self.max_hold))

    def forget(self, file_id: int) -> None:
        self._files.pop(file_id, None)

    def due(self, now: float) -> list[int]:
        """Files to start uploading now (they leave the schedule until `finished`)."""
        ready = [
            file_id
            for file_id, state in self._files.items()
            if file_id not in self._running
            and self._start_at(state) <= now
            and (state.writers == 0 or state.urgent)
        ]
        ready.sort(key=lambda f: self._files[f].due)
        for file_id in ready:
            self._running.add(file_id)
        return ready

    def due_at(self, file_id: int) -> float | None:
        """When `file_id` becomes due (None if not scheduled or waiting for its writers)."""
        state = self._files.get(file_id)
        if state is None or file_id in self._running or (state.writers and not state.urgent):
            return None
        return self._start_at(state)

    def next_due(self) -> float | None:
        times = [
            self._start_at(s)
            for f, s in self._files.items()
            if f not in self._running and (s.writers == 0 or s.urgent)
        ]
        return min(times) if times else None

    def finished(self, file_id: int, now: float, *, ok: bool, again: bool = False) -> None:
        """An upload ended. `ok` and not `again`: done. `again`: content moved on meanwhile."""
        self._running.discard(file_id)
        state = self._files.get(file_id)
        if state is None:
            return
        if ok and not again:
            if state.writers == 0:
                del self._files[file_id]
            else:
                state.urgent = False
                state.due = float("inf")
            state.failures = 0
            return
        if ok:
            state.failures = 0
            state.due = now if state.urgent else now + self.delay
            return
        state.failures += 1
        state.due = now + min(self.delay * 2**state.failures + 1.0, self.max_backoff)
