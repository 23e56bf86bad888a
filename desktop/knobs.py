"""Tuning knobs read from the environment (tests shrink hours to seconds with them).

Unset or empty means the default; a value that does not parse also falls back to the default,
with a warning, so a typo in a knob never stops the daemon."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def env_float(name: str, default: float) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        logger.warning("%s=%r is not a number: using %s", name, value, default)
        return default


def env_int(name: str, default: int) -> int:
    found = env_optional_int(name)
    return default if found is None else found


def env_optional_int(name: str) -> int | None:
    """An integer knob, or None when it is unset (or does not parse)."""
    value = _raw(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        logger.warning("%s=%r is not a whole number: ignored", name, value)
        return None
