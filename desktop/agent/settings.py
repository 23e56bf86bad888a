"""The agent's user settings: what BOINC and Storj node operators expect to be able to set.

Defaults are chosen so that a node installed and forgotten is never noticed by its owner: gentle
rates while the person works, full speed when they are away, nothing new stored beyond the donated
size or below the free-space reserve. `Settings.set(key, text)` is the `permacloud agent set KEY
VALUE` semantics; `load_settings`/`save_settings` round-trip through TOML, where numbers are stored
exactly and human strings (`"5MB/s"`) are accepted when a person edits the file.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from desktop.agent import human_values as hv
from desktop.agent.time_windows import WeeklySchedule, parse_schedule
from desktop.core.errors import PermaCloudError

GB = 10**9
KB = 10**3


class SettingsError(PermaCloudError):
    """A setting is unknown, malformed or inconsistent with another one."""


@dataclass(frozen=True)
class Settings:
    """Immutable; change with `set()` or `dataclasses.replace()` + `validate()`."""

    donated: int = 10 * GB
    """Bytes of other people's shares this node may keep."""
    min_free: int = 5 * GB
    """Free disk space never to be used for new shares."""
    up_active: int | None = 500 * KB
    """Upload cap (bytes/s) while the user is at the machine or on battery; None = unlimited."""
    down_active: int | None = 500 * KB
    up_idle: int | None = None
    """Upload cap while the user is away; None = unlimited."""
    down_idle: int | None = None
    daily_cap: int | None = None
    """Bytes up + down per local calendar day; None = no cap."""
    idle_after: int = 300
    """Seconds without keyboard or mouse after which the user counts as away."""
    windows: WeeklySchedule = field(default_factory=WeeklySchedule.always)
    """When the node may work at all; outside them it only serves at the floor rate."""
    suspend_on_battery: bool = False
    """Suspend whenever on battery, whatever the level."""
    battery_suspend_below: float = 30.0
    """Percent: on battery below this, suspend ..."""
    battery_resume_margin: float = 10.0
    """... and resume only at suspend_below + margin percent, or on AC (no flapping)."""
    cpu_suspend_above: float | None = None
    """Normalised 1-minute load (1.0 = every core busy) above which to suspend; None = never.

    Off by default: load average counts the node's own work and every waiting process, so on a
    busy (or small) machine it would suspend sharing for good; users who want it set it."""
    cpu_resume_below: float = 0.6
    cpu_duty_active: float = 0.1
    """Fraction of time background CPU work (audits, repair, GC) may run while the user is on."""
    cpu_duty_idle: float = 0.5
    floor_rate: int = 64 * KB
    """Bytes/s for serving stored shares while suspended or paused (see policy.py for why)."""

    def validate(self) -> Settings:
        """Return self, or raise `SettingsError` naming the first bad field."""
        for key in ("up_active", "down_active", "up_idle", "down_idle", "daily_cap"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise SettingsError(f"{key}: must be above zero or 'unlimited' (use pause to stop)")
        if self.floor_rate <= 0:
            raise SettingsError("floor_rate: must be above zero: stored shares are always served")
        for key in ("donated", "min_free", "idle_after"):
            if getattr(self, key) < 0:
                raise SettingsError(f"{key}: must not be negative")
        for key in ("battery_suspend_below", "battery_resume_margin"):
            if not 0 <= getattr(self, key) <= 100:
                raise SettingsError(f"{key}: must be between 0% and 100%")
        for key in ("cpu_duty_active", "cpu_duty_idle"):
            if not 0 <= getattr(self, key) <= 1:
                raise SettingsError(f"{key}: must be between 0 and 1 (or 0%-100%)")
        if self.cpu_suspend_above is not None:
            if self.cpu_suspend_above <= 0:
                raise SettingsError("cpu_suspend_above: must be above zero or 'off'")
            if not 0 <= self.cpu_resume_below < self.cpu_suspend_above:
                raise SettingsError(
                    f"cpu_resume_below: must be below cpu_suspend_above "
                    f"({self.cpu_suspend_above:g}) so the node does not flap"
                )
        return self

    def set(self, key: str, text: str) -> Settings:
        """A new validated Settings with `key` parsed from the human string `text`."""
        name = _canonical_key(key)
        try:
            value = _FIELDS[name].parse(text)
        except hv.BadValueError as error:
            raise SettingsError(f"{name}: {error}") from None
        return dataclasses.replace(self, **{name: value}).validate()

    def get_text(self, key: str) -> str:
        """The human form of one setting, as `permacloud agent get KEY` would print it."""
        name = _canonical_key(key)
        return _FIELDS[name].show(getattr(self, name))

    def to_toml_dict(self) -> dict[str, Any]:
        return {name: spec.to_toml(getattr(self, name)) for name, spec in _FIELDS.items()}

    @classmethod
    def from_toml_dict(cls, data: dict[str, Any]) -> Settings:
        values: dict[str, Any] = {}
        for key, raw in data.items():
            name = _canonical_key(key)
            try:
                values[name] = _FIELDS[name].from_toml(raw)
            except hv.BadValueError as error:
                raise SettingsError(f"{name}: {error}") from None
        return cls(**values).validate()


def load_settings(path: Path) -> Settings:
    """Settings from a TOML file; defaults when the file does not exist yet."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        return Settings()
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: {error}") from None
    return Settings.from_toml_dict(data)


def save_settings(settings: Settings, path: Path) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            tomli_w.dump(settings.validate().to_toml_dict(), file)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def setting_names() -> tuple[str, ...]:
    return tuple(_FIELDS)


@dataclass(frozen=True)
class _FieldSpec:
    parse: Callable[[str], Any]
    show: Callable[[Any], str]
    to_toml: Callable[[Any], Any]
    from_toml: Callable[[Any], Any]


def _optional_to_toml(word: str) -> Callable[[Any], Any]:
    return lambda value: word if value is None else value


def _number_or_text(parse: Callable[[str], Any], kind: type) -> Callable[[Any], Any]:
    """TOML numbers are taken as they are; strings go through the human parser."""

    def convert(raw: Any) -> Any:
        if isinstance(raw, str):
            return parse(raw)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise hv.BadValueError(f"{raw!r} has the wrong type")
        return kind(raw)

    return convert


def _optional_cpu(text: str) -> float | None:
    if text.strip().lower() in hv.UNLIMITED_WORDS | {"never"}:
        return None
    return hv.parse_fraction(text)


def _parse_floor(text: str) -> int:
    rate = hv.parse_rate(text)
    if rate is None:
        raise hv.BadValueError("the floor rate must be a number (e.g. 64K/s)")
    return rate


def _bool_from_toml(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        return hv.parse_bool(raw)
    raise hv.BadValueError(f"{raw!r} is not yes or no")


def _schedule_from_toml(raw: Any) -> WeeklySchedule:
    if not isinstance(raw, str):
        raise hv.BadValueError(f"{raw!r} is not a time window (e.g. 'mon-fri 18:00-08:00')")
    return parse_schedule(raw)


def _identity(value: Any) -> Any:
    return value


_SIZE = _FieldSpec(hv.parse_size, hv.format_size, _identity, _number_or_text(hv.parse_size, int))
_RATE = _FieldSpec(
    hv.parse_rate,
    hv.format_rate,
    _optional_to_toml("unlimited"),
    _number_or_text(hv.parse_rate, int),
)
_DAILY = _FieldSpec(
    lambda text: None if text.strip().lower() in hv.UNLIMITED_WORDS else hv.parse_size(text),
    lambda value: "unlimited" if value is None else hv.format_size(value),
    _optional_to_toml("unlimited"),
    _number_or_text(
        lambda text: None if text.strip().lower() in hv.UNLIMITED_WORDS else hv.parse_size(text),
        int,
    ),
)
_PERCENT = _FieldSpec(
    hv.parse_percent, lambda v: f"{v:g}%", _identity, _number_or_text(hv.parse_percent, float)
)
_FRACTION = _FieldSpec(
    hv.parse_fraction, lambda v: f"{v:g}", _identity, _number_or_text(hv.parse_fraction, float)
)

_FIELDS: dict[str, _FieldSpec] = {
    "donated": _SIZE,
    "min_free": _SIZE,
    "up_active": _RATE,
    "down_active": _RATE,
    "up_idle": _RATE,
    "down_idle": _RATE,
    "daily_cap": _DAILY,
    "idle_after": _FieldSpec(
        hv.parse_duration,
        hv.format_duration,
        _identity,
        _number_or_text(hv.parse_duration, int),
    ),
    "windows": _FieldSpec(parse_schedule, str, str, _schedule_from_toml),
    "suspend_on_battery": _FieldSpec(
        hv.parse_bool, lambda v: "yes" if v else "no", _identity, _bool_from_toml
    ),
    "battery_suspend_below": _PERCENT,
    "battery_resume_margin": _PERCENT,
    "cpu_suspend_above": _FieldSpec(
        _optional_cpu,
        lambda v: "off" if v is None else f"{v:g}",
        _optional_to_toml("off"),
        _number_or_text(_optional_cpu, float),
    ),
    "cpu_resume_below": _FRACTION,
    "cpu_duty_active": _FRACTION,
    "cpu_duty_idle": _FRACTION,
    "floor_rate": _FieldSpec(
        _parse_floor, hv.format_rate, _identity, _number_or_text(_parse_floor, int)
    ),
}

assert set(_FIELDS) == {f.name for f in dataclasses.fields(Settings)}


def _canonical_key(key: str) -> str:
    name = key.strip().lower().replace("-", "_")
    if name not in _FIELDS:
        raise SettingsError(f"unknown setting {key!r} (known: {', '.join(_FIELDS)})")
    return name
