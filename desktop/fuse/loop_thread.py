"""A second trio loop in a thread of its own, for work that would crowd the daemon's loop.

The mount's cold reads were bound by the daemon's one trio thread: FUSE requests and the
bulk network receive (socket reads, TLS, h11, the scheduler) took turns on it. Downloads run
here instead, with their own connections (trio streams belong to the loop that made them);
the socket reads and TLS decryption drop the GIL, so the two loops overlap on two cores.

`LoopThread.run(afn, ...)` awaits `afn(...)` run on the thread's loop from the daemon's loop:
results, exceptions and cancellation cross over; a cancelled caller waits for the job to end
(it ends at its next checkpoint), so nothing it started outlives the caller.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

logger = logging.getLogger(__name__)

T = TypeVar("T")

JOIN_TIMEOUT = 10.0


class LoopThreadStopped(Exception):
    """The thread's loop is not running (not started yet, or stopped)."""


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._thread: threading.Thread | None = None
        self._main: trio.lowlevel.TrioToken | None = None
        self._stopping = threading.Event()

    def to_main(self, fn: Callable[..., Any], *args: Any) -> None:
        """From a job: run plain `fn(*args)` on the daemon's loop, in order with the other
        calls and before the job's result arrives."""
        assert self._main is not None
        with contextlib.suppress(trio.RunFinishedError):
            self._main.run_sync_soon(fn, *args)

    async def serve(
        self,
        setup: Callable[[], Awaitable[None]] | None = None,
        teardown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run the thread's loop until cancelled; `setup`/`teardown` run on that loop."""
        main = self._main = trio.lowlevel.current_trio_token()
        ready = trio.Event()
        stopped = threading.Event()

        async def loop_main() -> None:
            try:
                if setup is not None:
                    await setup()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._token = trio.lowlevel.current_trio_token()
                    if self._stopping.is_set():  # serve() was cancelled while we started
                        nursery.cancel_scope.cancel()
                    main.run_sync_soon(ready.set)
                    await trio.sleep_forever()
            finally:
                self._token = None
                self._nursery = None
                if teardown is not None:
                    with trio.CancelScope(shield=True), trio.move_on_after(JOIN_TIMEOUT / 2):
                        await teardown()

        def thread_main() -> None:
            try:
                trio.run(loop_main)
            except BaseException:
                logger.exception("%s loop failed", self.name)
            finally:
                stopped.set()
                with contextlib.suppress(trio.RunFinishedError):
                    main.run_sync_soon(ready.set)  # a loop that failed to start frees serve()

        thread = self._thread = threading.Thread(target=thread_main, name=self.name, daemon=True)
        thread.start()
        try:
            await ready.wait()
            await trio.sleep_forever()
        finally:
            self._stop()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(stopped.wait, JOIN_TIMEOUT)
            if thread.is_alive():
                logger.warning("%s did not stop within %.0f s", self.name, JOIN_TIMEOUT)

    def _stop(self) -> None:
        self._stopping.set()
        token, nursery = self._token, self._nursery
        if token is not None and nursery is not None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(nursery.cancel_scope.cancel)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run plain `fn(*args)` on the thread's loop soon; False if it is not running."""
        token = self._token
        if token is None:
            return False
        try:
            token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            return False
        return True

    async def run(self, afn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await afn(*args)` on the thread's loop, from the daemon's loop."""
        main = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result: list[outcome.Outcome[T]] = []
        scope = trio.CancelScope()

        def finish(value: outcome.Outcome[T]) -> None:
            result.append(value)
            done.set()

        async def job() -> None:
            value: outcome.Outcome[T]
            with scope:
                value = await outcome.acapture(afn, *args)
            if scope.cancelled_caught or (
                isinstance(value, outcome.Error) and isinstance(value.error, trio.Cancelled)
            ):
                value = outcome.Error(LoopThreadStopped(f"{self.name}: job cancelled"))
            with contextlib.suppress(trio.RunFinishedError):  # else the daemon's loop is gone
                main.run_sync_soon(finish, value)

        def start() -> None:  # on the thread's loop: must not raise (it would crash that loop)
            nursery = self._nursery
            try:
                if nursery is None:
                    raise RuntimeError("closed")
                nursery.start_soon(job)
            except RuntimeError:
                stopped = outcome.Error(LoopThreadStopped(f"{self.name} is stopping"))
                main.run_sync_soon(finish, stopped)

        if not self.call_soon(start):
            raise LoopThreadStopped(f"{self.name} is not running")
        try:
            await done.wait()
        except trio.Cancelled:
            self.call_soon(scope.cancel)
            with trio.CancelScope(shield=True), trio.move_on_after(JOIN_TIMEOUT):
                await done.wait()
            raise
        return result[0].unwrap()
