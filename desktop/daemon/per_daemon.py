"""One instance of a daemon component per Daemon, made on first use.

The IPC handlers, the daemon's nursery and other components all reach the same mount service,
sync service, checker or reputation book through this, without the Daemon class importing them
(which would make the daemon package circular)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from desktop.daemon.service import Daemon

T = TypeVar("T")


def per_daemon(factory: Callable[[Daemon], T]) -> Callable[[Daemon], T]:
    """Decorate `factory(daemon)`: the result is made once per daemon and then reused."""
    made: weakref.WeakKeyDictionary[Daemon, T] = weakref.WeakKeyDictionary()

    def get(daemon: Daemon) -> T:
        found = made.get(daemon)
        if found is None:
            found = made[daemon] = factory(daemon)
        return found

    get.__doc__ = factory.__doc__
    get.__name__ = factory.__name__
    return get
