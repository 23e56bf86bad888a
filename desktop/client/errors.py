"""Turning trio's exception groups back into the one-line errors users and callers expect."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from desktop.core.errors import PermaCloudError


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


@contextmanager
def single_error() -> Iterator[None]:
    """Re-raise the first PermaCloudError inside an exception group on its own, so public
    functions raise `PermaCloudError` subclasses and never a group of them."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        for leaf in leaves:
            if isinstance(leaf, PermaCloudError):
                raise leaf from None
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
