"""The scheduler's decision: how much the node may take from this machine right now.

A pure function of what the sensors saw, the clock, the transfer counter, the pause state and the
user's settings. The only memory is the battery/CPU hysteresis, passed in and returned as
`HysteresisState` so the function stays pure and a test can replay any sequence with a fake clock.

Rules, first match sets the mode (all matching reasons are reported):
1. PAUSED by the user (for a period, or until resumed).
2. SUSPENDED: outside the time windows, daily transfer cap reached, battery low (or any battery
   when `suspend_on_battery`), CPU load too high. Battery and CPU use hysteresis.
3. ACTIVE ("in use" caps, small CPU duty): the user touched keyboard/mouse within `idle_after`,
   or the machine runs on battery (above the threshold): a laptop away from its charger should
   not be drained at full speed even when nobody types.
4. IDLE: the idle caps (unlimited by default) and the idle CPU duty.

Stored shares are ALWAYS served: paused and suspended modes keep a floor rate in both directions
(`floor_rate`, 64 KB/s by default, never above any configured cap). Why non-zero: a share that
cannot be read is, to its owner, a lost share, and repair would then copy it elsewhere at the
network's expense; 64 KB/s lets a reader or an auditor fetch a 1 MiB block in ~16 s, and is too
small to be felt on any link. Why also downloads: requests and in-flight uploads must finish
(slowly) rather than hang; new shares are refused through `accept_new_shares`, not by starving
the socket. While paused or suspended no background CPU work runs (duty 0), and the floor traffic
still counts towards the daily cap, which is therefore a target, not an absolute limit.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from desktop.agent.human_values import format_duration, format_size
from desktop.agent.settings import Settings


class Mode(enum.Enum):
    IDLE = "idle"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    PAUSED = "paused"


@dataclass(frozen=True)
class Pause:
    """The user's pause: `Pause()` = not paused; `until=None` with `paused=True` = until resumed."""

    paused: bool = False
    until: datetime | None = None

    @classmethod
    def until_resumed(cls) -> Pause:
        return cls(paused=True)

    @classmethod
    def for_period(cls, now: datetime, seconds: float) -> Pause:
        return cls(paused=True, until=now + timedelta(seconds=seconds))

    def in_effect(self, now: datetime) -> bool:
        return self.paused and (self.until is None or now < self.until)

    def describe(self, now: datetime) -> str:
        if self.until is None:
            return "paused until resumed"
        same_day = self.until.date() == now.date()
        return f"paused until {self.until.strftime('%H:%M' if same_day else '%a %H:%M')}"


@dataclass(frozen=True)
class PolicyInputs:
    now: datetime
    """Local wall-clock time (time windows and the daily cap are local-time notions)."""
    idle_s: float
    """Seconds since the last keyboard/mouse input; math.inf when there is no user session."""
    on_battery: bool
    battery_pct: float | None
    cpu_load: float
    """1-minute load average divided by the number of CPUs."""
    disk_free: int
    """Free bytes on the filesystem holding the share store."""
    store_used: int
    """Bytes of shares this node keeps now."""
    transferred_today: int
    """Bytes up + down since local midnight."""
    pause: Pause = field(default_factory=Pause)


@dataclass(frozen=True)
class HysteresisState:
    battery_suspended: bool = False
    cpu_suspended: bool = False


@dataclass(frozen=True)
class Allowance:
    mode: Mode
    upload_bps: int | None
    """Bytes/s the node may send (serving shares); None = unlimited, never 0."""
    download_bps: int | None
    """Bytes/s the node may receive (new shares, requests); None = unlimited, never 0."""
    accept_new_shares: bool
    new_share_room: int
    """Bytes of new shares that fit now (0 when not accepting)."""
    cpu_duty: float
    """Fraction of wall time background work (audits, repair, GC) may run, 0..1."""
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def decide(
    inputs: PolicyInputs, settings: Settings, state: HysteresisState
) -> tuple[Allowance, HysteresisState]:
    """The allowance for `inputs.now`, and the hysteresis state to pass to the next call."""
    new_state = HysteresisState(
        battery_suspended=_battery_suspended(inputs, settings, state.battery_suspended),
        cpu_suspended=_cpu_suspended(inputs, settings, state.cpu_suspended),
    )
    stops = _stop_reasons(inputs, settings, new_state)
    if inputs.pause.in_effect(inputs.now):
        return _floor(Mode.PAUSED, [inputs.pause.describe(inputs.now), *stops], settings), new_state
    if stops:
        return _floor(Mode.SUSPENDED, stops, settings), new_state

    user_active = inputs.idle_s < settings.idle_after
    if user_active or inputs.on_battery:
        mode, up, down, duty = (
            Mode.ACTIVE,
            settings.up_active,
            settings.down_active,
            settings.cpu_duty_active,
        )
        reasons = [_battery_text(inputs)] if inputs.on_battery else []
        if user_active:
            reasons.append(f"in use (idle {format_duration(inputs.idle_s)})")
    else:
        mode, up, down, duty = (
            Mode.IDLE,
            settings.up_idle,
            settings.down_idle,
            settings.cpu_duty_idle,
        )
        reasons = [_idle_text(inputs.idle_s)]

    room, room_reasons = _new_share_room(inputs, settings)
    return (
        Allowance(
            mode=mode,
            upload_bps=up,
            download_bps=down,
            accept_new_shares=room > 0,
            new_share_room=room,
            cpu_duty=duty,
            reasons=(*reasons, *room_reasons),
        ),
        new_state,
    )


def floor_rate(settings: Settings) -> int:
    """The serving floor, clipped so that it never exceeds any configured cap."""
    caps = [
        settings.up_active,
        settings.down_active,
        settings.up_idle,
        settings.down_idle,
    ]
    return min([settings.floor_rate, *(cap for cap in caps if cap is not None)])


def _floor(mode: Mode, reasons: list[str], settings: Settings) -> Allowance:
    rate = floor_rate(settings)
    return Allowance(
        mode=mode,
        upload_bps=rate,
        download_bps=rate,
        accept_new_shares=False,
        new_share_room=0,
        cpu_duty=0.0,
        reasons=tuple(reasons),
    )


def _stop_reasons(inputs: PolicyInputs, settings: Settings, state: HysteresisState) -> list[str]:
    reasons = []
    if not settings.windows.allows(inputs.now):
        reasons.append("outside time window")
    if settings.daily_cap is not None and inputs.transferred_today >= settings.daily_cap:
        reasons.append(f"daily cap reached ({format_size(settings.daily_cap)})")
    if state.battery_suspended:
        reasons.append(_battery_text(inputs))
    if state.cpu_suspended:
        reasons.append(f"CPU busy (load {inputs.cpu_load:.2f})")
    return reasons


def _battery_suspended(inputs: PolicyInputs, settings: Settings, was: bool) -> bool:
    if not inputs.on_battery:
        return False
    if settings.suspend_on_battery:
        return True
    level = inputs.battery_pct
    if level is None:
        return was
    threshold = settings.battery_suspend_below
    if was:
        return level < threshold + settings.battery_resume_margin
    return level < threshold


def _cpu_suspended(inputs: PolicyInputs, settings: Settings, was: bool) -> bool:
    if settings.cpu_suspend_above is None:
        return False
    if was:
        return inputs.cpu_load >= settings.cpu_resume_below
    return inputs.cpu_load > settings.cpu_suspend_above


def _new_share_room(inputs: PolicyInputs, settings: Settings) -> tuple[int, list[str]]:
    quota_left = settings.donated - inputs.store_used
    disk_left = inputs.disk_free - settings.min_free
    reasons = []
    if quota_left <= 0:
        reasons.append(f"donated space full ({format_size(settings.donated)})")
    if disk_left <= 0:
        reasons.append(
            f"disk nearly full ({format_size(inputs.disk_free)} free, "
            f"keeping {format_size(settings.min_free)})"
        )
    return max(0, min(quota_left, disk_left)), reasons


def _battery_text(inputs: PolicyInputs) -> str:
    if inputs.battery_pct is None:
        return "on battery"
    return f"on battery ({inputs.battery_pct:.0f}%)"


def _idle_text(idle_s: float) -> str:
    if math.isinf(idle_s):
        return "idle (no user session)"
    return f"idle since {format_duration(idle_s)}"
