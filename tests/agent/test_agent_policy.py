"""The scheduler's decisions for concrete situations, with a fake clock (plain datetimes)."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop.agent.policy import (
    Allowance,
    HysteresisState,
    Mode,
    Pause,
    PolicyInputs,
    decide,
)
from desktop.agent.settings import Settings
from desktop.agent.time_windows import parse_schedule

GB = 10**9
MONDAY_NOON = datetime(2024, 6, 10, 12, 0)  # 2024-06-10 is a Monday

SETTINGS = Settings(
    donated=10 * GB,
    min_free=5 * GB,
    up_active=500_000,
    down_active=400_000,
    up_idle=5_000_000,
    down_idle=4_000_000,
    daily_cap=None,
    idle_after=300,
    battery_suspend_below=30,
    battery_resume_margin=10,
    cpu_suspend_above=0.9,
    cpu_resume_below=0.6,
    cpu_duty_active=0.1,
    cpu_duty_idle=0.5,
    floor_rate=64_000,
).validate()

IDLE = {"mode": Mode.IDLE, "up": 5_000_000, "down": 4_000_000, "accept": True, "duty": 0.5}
ACTIVE = {"mode": Mode.ACTIVE, "up": 500_000, "down": 400_000, "accept": True, "duty": 0.1}
SUSPENDED = {"mode": Mode.SUSPENDED, "up": 64_000, "down": 64_000, "accept": False, "duty": 0.0}
PAUSED = {**SUSPENDED, "mode": Mode.PAUSED}


def inputs(**changes: Any) -> PolicyInputs:
    base = PolicyInputs(
        now=MONDAY_NOON,
        idle_s=3600,
        on_battery=False,
        battery_pct=None,
        cpu_load=0.2,
        disk_free=100 * GB,
        store_used=1 * GB,
        transferred_today=0,
    )
    return dataclasses.replace(base, **changes)


def check(allowance: Allowance, expected: dict[str, Any], reason: str) -> None:
    assert allowance.mode is expected["mode"]
    assert allowance.upload_bps == expected["up"]
    assert allowance.download_bps == expected["down"]
    assert allowance.accept_new_shares is expected["accept"]
    assert allowance.cpu_duty == expected["duty"]
    assert reason in allowance.reason


SITUATIONS = [
    pytest.param(inputs(), SETTINGS, IDLE, "idle since 1h00", id="away-for-an-hour-idle"),
    pytest.param(inputs(idle_s=720), SETTINGS, IDLE, "idle since 12 min", id="idle-12-min"),
    pytest.param(inputs(idle_s=20), SETTINGS, ACTIVE, "in use", id="user-typing-active"),
    pytest.param(inputs(idle_s=299), SETTINGS, ACTIVE, "in use", id="just-under-idle-after"),
    pytest.param(inputs(idle_s=300), SETTINGS, IDLE, "idle since 5 min", id="exactly-idle-after"),
    pytest.param(
        inputs(idle_s=math.inf), SETTINGS, IDLE, "no user session", id="headless-always-idle"
    ),
    pytest.param(
        inputs(on_battery=True, battery_pct=80),
        SETTINGS,
        ACTIVE,
        "on battery (80%)",
        id="battery-high-runs-at-in-use-rate",
    ),
    pytest.param(
        inputs(on_battery=True, battery_pct=29),
        SETTINGS,
        SUSPENDED,
        "on battery (29%)",
        id="battery-below-threshold-suspends",
    ),
    pytest.param(
        inputs(on_battery=True, battery_pct=95),
        dataclasses.replace(SETTINGS, suspend_on_battery=True),
        SUSPENDED,
        "on battery (95%)",
        id="suspend-on-any-battery",
    ),
    pytest.param(
        inputs(now=datetime(2024, 6, 10, 12, 0)),
        dataclasses.replace(SETTINGS, windows=parse_schedule("mon-fri 18:00-08:00; sat,sun all")),
        SUSPENDED,
        "outside time window",
        id="weekday-noon-outside-night-window",
    ),
    pytest.param(
        inputs(now=datetime(2024, 6, 10, 23, 30)),
        dataclasses.replace(SETTINGS, windows=parse_schedule("mon-fri 18:00-08:00; sat,sun all")),
        IDLE,
        "idle",
        id="weekday-2330-inside-window-before-midnight",
    ),
    pytest.param(
        inputs(now=datetime(2024, 6, 11, 7, 59)),
        dataclasses.replace(SETTINGS, windows=parse_schedule("mon-fri 18:00-08:00; sat,sun all")),
        IDLE,
        "idle",
        id="tuesday-0759-inside-window-after-midnight",
    ),
    pytest.param(
        inputs(now=datetime(2024, 6, 11, 8, 0)),
        dataclasses.replace(SETTINGS, windows=parse_schedule("mon-fri 18:00-08:00; sat,sun all")),
        SUSPENDED,
        "outside time window",
        id="tuesday-0800-window-closed",
    ),
    pytest.param(
        inputs(now=datetime(2024, 6, 15, 12, 0)),
        dataclasses.replace(SETTINGS, windows=parse_schedule("mon-fri 18:00-08:00; sat,sun all")),
        IDLE,
        "idle",
        id="saturday-noon-weekend-all-day",
    ),
    pytest.param(
        inputs(now=datetime(2024, 6, 15, 12, 0)),
        dataclasses.replace(SETTINGS, windows=parse_schedule("mon-fri 18:00-08:00")),
        SUSPENDED,
        "outside time window",
        id="saturday-without-weekend-clause",
    ),
    pytest.param(
        inputs(transferred_today=2 * GB),
        dataclasses.replace(SETTINGS, daily_cap=2 * GB),
        SUSPENDED,
        "daily cap reached (2GB)",
        id="daily-cap-reached",
    ),
    pytest.param(
        inputs(transferred_today=2 * GB - 1),
        dataclasses.replace(SETTINGS, daily_cap=2 * GB),
        IDLE,
        "idle",
        id="daily-cap-one-byte-left",
    ),
    pytest.param(
        inputs(pause=Pause.until_resumed()),
        SETTINGS,
        PAUSED,
        "paused until resumed",
        id="paused-until-resumed",
    ),
    pytest.param(
        inputs(pause=Pause.for_period(MONDAY_NOON, 3 * 3600)),
        SETTINGS,
        PAUSED,
        "paused until 15:00",
        id="paused-for-3h",
    ),
    pytest.param(
        inputs(now=MONDAY_NOON + timedelta(hours=3), pause=Pause.for_period(MONDAY_NOON, 3 * 3600)),
        SETTINGS,
        IDLE,
        "idle",
        id="pause-expired",
    ),
    pytest.param(
        inputs(disk_free=5 * GB),
        SETTINGS,
        {**IDLE, "accept": False},
        "disk nearly full (5GB free, keeping 5GB)",
        id="disk-nearly-full-still-serving",
    ),
    pytest.param(
        inputs(idle_s=10, disk_free=4 * GB),
        SETTINGS,
        {**ACTIVE, "accept": False},
        "disk nearly full",
        id="disk-nearly-full-while-in-use",
    ),
    pytest.param(
        inputs(store_used=10 * GB),
        SETTINGS,
        {**IDLE, "accept": False},
        "donated space full (10GB)",
        id="donated-quota-full",
    ),
    pytest.param(
        inputs(cpu_load=0.95), SETTINGS, SUSPENDED, "CPU busy (load 0.95)", id="cpu-load-high"
    ),
    pytest.param(
        inputs(cpu_load=0.95),
        dataclasses.replace(SETTINGS, cpu_suspend_above=None),
        IDLE,
        "idle",
        id="cpu-suspension-off",
    ),
    pytest.param(
        inputs(pause=Pause.until_resumed(), on_battery=True, battery_pct=10),
        SETTINGS,
        PAUSED,
        "paused until resumed; on battery (10%)",
        id="paused-wins-and-lists-other-reasons",
    ),
]


@pytest.mark.parametrize(("situation", "settings", "expected", "reason"), SITUATIONS)
def test_policy_situation(
    situation: PolicyInputs, settings: Settings, expected: dict[str, Any], reason: str
) -> None:
    allowance, _ = decide(situation, settings.validate(), HysteresisState())
    check(allowance, expected, reason)


def test_new_share_room_is_the_tighter_of_quota_and_disk() -> None:
    allowance, _ = decide(
        inputs(store_used=9 * GB, disk_free=100 * GB), SETTINGS, HysteresisState()
    )
    assert allowance.new_share_room == 1 * GB
    allowance, _ = decide(inputs(store_used=1 * GB, disk_free=7 * GB), SETTINGS, HysteresisState())
    assert allowance.new_share_room == 2 * GB
    allowance, _ = decide(inputs(pause=Pause.until_resumed()), SETTINGS, HysteresisState())
    assert allowance.new_share_room == 0


# Battery level sequence on battery, then plugged in: suspend below 30%, resume at >= 40% or AC.
BATTERY_SEQUENCE = [
    (True, 50, Mode.ACTIVE),
    (True, 31, Mode.ACTIVE),
    (True, 29, Mode.SUSPENDED),  # crosses 30% downwards
    (True, 31, Mode.SUSPENDED),  # back above 30% but below 40%: no flapping
    (True, 39, Mode.SUSPENDED),
    (True, 40, Mode.ACTIVE),  # resume threshold reached
    (True, 35, Mode.ACTIVE),  # falling again but above 30%: keeps running
    (True, 20, Mode.SUSPENDED),
    (False, 20, Mode.IDLE),  # on AC: resume at once, whatever the level
    (True, 20, Mode.SUSPENDED),
]


def test_battery_hysteresis_both_ways() -> None:
    state = HysteresisState()
    for step, (on_battery, level, expected_mode) in enumerate(BATTERY_SEQUENCE):
        situation = inputs(on_battery=on_battery, battery_pct=level)
        allowance, state = decide(situation, SETTINGS, state)
        assert allowance.mode is expected_mode, f"step {step}: {on_battery=} {level=}"


CPU_SEQUENCE = [
    (0.5, Mode.IDLE),
    (0.9, Mode.IDLE),  # at the threshold, not above
    (0.91, Mode.SUSPENDED),
    (0.7, Mode.SUSPENDED),  # below suspend, above resume: stays suspended
    (0.6, Mode.SUSPENDED),
    (0.59, Mode.IDLE),
    (0.8, Mode.IDLE),
]


def test_cpu_hysteresis_both_ways() -> None:
    state = HysteresisState()
    for step, (load, expected_mode) in enumerate(CPU_SEQUENCE):
        allowance, state = decide(inputs(cpu_load=load), SETTINGS, state)
        assert allowance.mode is expected_mode, f"step {step}: {load=}"


def test_unknown_battery_level_keeps_previous_battery_decision() -> None:
    _, state = decide(inputs(on_battery=True, battery_pct=10), SETTINGS, HysteresisState())
    allowance, state = decide(inputs(on_battery=True, battery_pct=None), SETTINGS, state)
    assert allowance.mode is Mode.SUSPENDED
    assert allowance.reason == "on battery"


def test_floor_never_above_a_configured_cap() -> None:
    settings = dataclasses.replace(SETTINGS, up_active=10_000, floor_rate=64_000).validate()
    allowance, _ = decide(inputs(pause=Pause.until_resumed()), settings, HysteresisState())
    assert allowance.upload_bps == 10_000
    assert allowance.download_bps == 10_000


# --- property: stored shares are never served at 0 B/s, and no cap is ever exceeded ---

rates = st.one_of(st.none(), st.integers(min_value=1, max_value=10**9))


@st.composite
def settings_strategy(draw: st.DrawFn) -> Settings:
    suspend_above = draw(st.one_of(st.none(), st.floats(min_value=0.01, max_value=4)))
    resume_below = (
        0.0 if suspend_above is None else draw(st.floats(min_value=0, max_value=suspend_above))
    )
    if suspend_above is not None and resume_below >= suspend_above:
        resume_below = 0.0
    return Settings(
        donated=draw(st.integers(min_value=0, max_value=10**13)),
        min_free=draw(st.integers(min_value=0, max_value=10**12)),
        up_active=draw(rates),
        down_active=draw(rates),
        up_idle=draw(rates),
        down_idle=draw(rates),
        daily_cap=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=10**12))),
        idle_after=draw(st.integers(min_value=0, max_value=86400)),
        windows=parse_schedule(
            draw(st.sampled_from(["always", "never", "22:00-07:00", "mon-fri 18:00-08:00"]))
        ),
        suspend_on_battery=draw(st.booleans()),
        battery_suspend_below=draw(st.floats(min_value=0, max_value=100)),
        battery_resume_margin=draw(st.floats(min_value=0, max_value=100)),
        cpu_suspend_above=suspend_above,
        cpu_resume_below=resume_below,
        cpu_duty_active=draw(st.floats(min_value=0, max_value=1)),
        cpu_duty_idle=draw(st.floats(min_value=0, max_value=1)),
        floor_rate=draw(st.integers(min_value=1, max_value=10**8)),
    ).validate()


situations = st.builds(
    PolicyInputs,
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    idle_s=st.one_of(st.floats(min_value=0, max_value=10**7), st.just(math.inf)),
    on_battery=st.booleans(),
    battery_pct=st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    cpu_load=st.floats(min_value=0, max_value=64),
    disk_free=st.integers(min_value=0, max_value=10**13),
    store_used=st.integers(min_value=0, max_value=10**13),
    transferred_today=st.integers(min_value=0, max_value=10**13),
    pause=st.one_of(
        st.just(Pause()),
        st.just(Pause.until_resumed()),
        st.builds(
            Pause,
            paused=st.just(True),
            until=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
        ),
    ),
)
states = st.builds(HysteresisState, battery_suspended=st.booleans(), cpu_suspended=st.booleans())


def _within(rate: int | None, cap: int | None) -> bool:
    if cap is None:
        return True
    return rate is not None and rate <= cap


@given(situation=situations, settings=settings_strategy(), state=states)
def test_property_always_serving_and_within_caps(
    situation: PolicyInputs, settings: Settings, state: HysteresisState
) -> None:
    allowance, _ = decide(situation, settings, state)
    for rate in (allowance.upload_bps, allowance.download_bps):
        assert rate is None or rate > 0
    if allowance.mode is Mode.IDLE:
        assert _within(allowance.upload_bps, settings.up_idle)
        assert _within(allowance.download_bps, settings.down_idle)
    else:
        # ACTIVE, SUSPENDED and PAUSED never exceed the "in use" caps.
        assert _within(allowance.upload_bps, settings.up_active)
        assert _within(allowance.download_bps, settings.down_active)
    if allowance.mode in (Mode.SUSPENDED, Mode.PAUSED):
        assert not allowance.accept_new_shares
        assert allowance.cpu_duty == 0
        assert allowance.upload_bps is not None and allowance.upload_bps <= settings.floor_rate
    assert 0 <= allowance.new_share_room <= max(0, settings.donated - situation.store_used)
    assert allowance.new_share_room <= max(0, situation.disk_free - settings.min_free)
    assert allowance.reason
