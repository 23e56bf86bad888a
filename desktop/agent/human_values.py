"""Parse and format the values a person types: sizes, rates, durations, percentages, booleans.

Units follow disk makers and Storj: K, M, G, T are powers of 1000; KiB, MiB, GiB, TiB are powers
of 1024. `B` (any case) means bytes; write `bit` to mean bits (`80Mbit/s` = 10MB/s). Every parser
raises `BadValueError` with a one-line message showing an example of what is expected.
"""

from __future__ import annotations

import re

from desktop.core.errors import PermaCloudError

UNLIMITED_WORDS = frozenset({"unlimited", "none", "off", "no limit", "inf", "∞"})

_PREFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}

_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*([kmgtp]?)(i?)(b|bytes?|bits?)?$", re.IGNORECASE)
_DURATION_PART_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)",
    re.IGNORECASE,
)
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BadValueError(PermaCloudError):
    """A value typed by the user cannot be understood."""


def parse_size(text: str) -> int:
    """Bytes from `500K`, `2G`, `1.5GiB`, `10 MB` or a bare byte count."""
    value = _parse_quantity(text.strip(), what="a size", example="2G, 500MB, 1.5GiB")
    return value


def parse_rate(text: str) -> int | None:
    """Bytes per second from `5MB/s`, `500K`, `80Mbit/s`; None for `unlimited`."""
    cleaned = text.strip()
    if cleaned.lower() in UNLIMITED_WORDS:
        return None
    lowered = cleaned.lower()
    for suffix in ("/s", "/sec"):
        if lowered.endswith(suffix):
            cleaned = cleaned[: -len(suffix)].rstrip()
            break
    value = _parse_quantity(cleaned, what="a rate", example="5MB/s, 500K/s, unlimited")
    if value <= 0:
        raise BadValueError(f"rate {text.strip()!r} must be above zero (use 'pause' to stop)")
    return value


def parse_duration(text: str) -> int:
    """Seconds from `90s`, `10m`, `1h`, `1h30m`, `2 days`; a unit is required."""
    cleaned = text.strip()
    if cleaned == "0":
        return 0
    pos = 0
    total = 0.0
    compact = cleaned.replace(" ", "")
    for match in _DURATION_PART_RE.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)[0].lower()]
        pos = match.end()
    if pos == 0 or pos != len(compact):
        raise BadValueError(f"{cleaned!r} is not a duration (e.g. 90s, 10m, 1h30m)")
    return round(total)


def parse_percent(text: str) -> float:
    """A percentage 0-100 from `30%` or `30`."""
    cleaned = text.strip().removesuffix("%").strip()
    try:
        value = float(cleaned)
    except ValueError:
        raise BadValueError(f"{text.strip()!r} is not a percentage (e.g. 30%)") from None
    if not 0 <= value <= 100:
        raise BadValueError(f"{text.strip()!r} is not between 0% and 100%")
    return value


def parse_fraction(text: str) -> float:
    """A fraction 0-1 from `0.25` or `25%` (used for CPU duty cycles and normalised load)."""
    cleaned = text.strip()
    if cleaned.endswith("%"):
        return parse_percent(cleaned) / 100
    try:
        value = float(cleaned)
    except ValueError:
        raise BadValueError(f"{cleaned!r} is not a fraction (e.g. 0.25 or 25%)") from None
    if value < 0:
        raise BadValueError(f"{cleaned!r} must not be negative")
    return value


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"yes", "y", "true", "on", "1"}:
        return True
    if lowered in {"no", "n", "false", "off", "0"}:
        return False
    raise BadValueError(f"{text.strip()!r} is not yes or no")


def format_size(nbytes: int) -> str:
    """Short decimal form for messages, e.g. `2.1GB`; exact values live in the settings file."""
    for prefix, factor in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(nbytes) >= factor:
            return f"{nbytes / factor:.3g}{prefix}B"
    return f"{nbytes}B"


def format_rate(bytes_per_s: int | None) -> str:
    return "unlimited" if bytes_per_s is None else f"{format_size(bytes_per_s)}/s"


def format_duration(seconds: float) -> str:
    """`45s`, `12 min`, `2h05` — what a person reads in a tray tooltip."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


def _parse_quantity(text: str, *, what: str, example: str) -> int:
    match = _SIZE_RE.match(text)
    if match is None:
        raise BadValueError(f"{text!r} is not {what} (e.g. {example})")
    number, prefix, binary, unit = match.groups()
    prefix = prefix.lower()
    if binary and not prefix:
        raise BadValueError(f"{text!r} is not {what} (e.g. {example})")
    factor = _BINARY[prefix] if binary else _PREFIX[prefix]
    value = float(number) * factor
    if unit is not None and unit.lower().startswith("bit"):
        value /= 8
    return round(value)
