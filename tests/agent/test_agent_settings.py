"""Settings: human values, `set KEY VALUE`, one-line errors, TOML round-trip, the day counter."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop.agent import human_values as hv
from desktop.agent.daily_transfer import DailyTransfer
from desktop.agent.settings import Settings, SettingsError, load_settings, save_settings
from desktop.agent.time_windows import WeeklySchedule, Window, parse_schedule
from desktop.core.errors import PermaCloudError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500K", 500_000),
        ("2G", 2_000_000_000),
        ("10 MB", 10_000_000),
        ("1.5GiB", 1_610_612_736),
        ("64KiB", 65_536),
        ("1234", 1234),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert hv.parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5MB/s", 5_000_000),
        ("500K", 500_000),
        ("500k/s", 500_000),
        ("80Mbit/s", 10_000_000),
        ("1MiB/s", 1_048_576),
        ("unlimited", None),
        ("off", None),
    ],
)
def test_parse_rate(text: str, expected: int | None) -> None:
    assert hv.parse_rate(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2 days", 172800), ("0", 0)],
)
def test_parse_duration(text: str, expected: int) -> None:
    assert hv.parse_duration(text) == expected


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (hv.parse_rate, "fast", "'fast' is not a rate (e.g. 5MB/s, 500K/s, unlimited)"),
        (hv.parse_rate, "0", "rate '0' must be above zero (use 'pause' to stop)"),
        (hv.parse_size, "2X", "'2X' is not a size (e.g. 2G, 500MB, 1.5GiB)"),
        (hv.parse_duration, "10", "'10' is not a duration (e.g. 90s, 10m, 1h30m)"),
        (hv.parse_percent, "130%", "'130%' is not between 0% and 100%"),
        (parse_schedule, "mon-fri 25:00-07:00", "'25:00' is not a time of day (e.g. 07:30)"),
        (parse_schedule, "moon 10:00-11:00", "'moon' is not a weekday"),
        (parse_schedule, "08:00-08:00", "time range '08:00-08:00' is empty"),
        (parse_schedule, "mon-fri", "time window 'mon-fri' has no times"),
    ],
)
def test_bad_values_give_one_line_errors(parse: object, text: str, message: str) -> None:
    assert callable(parse)
    with pytest.raises(PermaCloudError) as info:
        parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_schedule_weekday_windows() -> None:
    schedule = parse_schedule("mon-fri 18:00-08:00; sat,sun all")
    assert schedule.days[0] == (Window(18 * 60, 8 * 60),)
    assert schedule.days[5] == (Window(0, 24 * 60),)
    assert str(schedule) == "mon-fri 18:00-08:00; sat,sun all"
    assert parse_schedule("22:00-07:00").days == tuple((Window(22 * 60, 7 * 60),) for _ in range(7))
    assert parse_schedule("fri-mon 10:00-12:00").days[6] == (Window(600, 720),)  # range wraps
    assert parse_schedule("always").is_always
    assert not parse_schedule("never").allows(datetime(2024, 6, 10, 12, 0))


schedule_texts = st.lists(
    st.tuples(
        st.sets(st.integers(0, 6), min_size=1),
        st.lists(
            st.tuples(st.integers(0, 1439), st.integers(1, 1440)).filter(lambda w: w[0] != w[1]),
            min_size=1,
            max_size=3,
        ),
    ),
    min_size=1,
    max_size=4,
)


@given(schedule_texts)
def test_schedule_text_round_trip(clauses: list[tuple[set[int], list[tuple[int, int]]]]) -> None:
    names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

    def hhmm(minute: int) -> str:
        return f"{minute // 60:02d}:{minute % 60:02d}"

    text = "; ".join(
        ",".join(names[d] for d in sorted(days))
        + " "
        + ",".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in w)
        for days, w in clauses
    )
    schedule = parse_schedule(text)
    assert parse_schedule(str(schedule)) == schedule


def test_set_parses_human_values_and_returns_new_settings() -> None:
    base = Settings()
    changed = (
        base.set("up-active", "5MB/s")
        .set("down_idle", "unlimited")
        .set("donated", "2G")
        .set("min_free", "500M")
        .set("idle_after", "10m")
        .set("daily_cap", "50G")
        .set("windows", "mon-fri 18:00-08:00; sat,sun all")
        .set("suspend_on_battery", "yes")
        .set("battery_suspend_below", "25%")
        .set("cpu_suspend_above", "off")
        .set("cpu_duty_idle", "80%")
    )
    assert base == Settings()  # immutable
    assert changed.up_active == 5_000_000
    assert changed.down_idle is None
    assert changed.donated == 2_000_000_000
    assert changed.min_free == 500_000_000
    assert changed.idle_after == 600
    assert changed.daily_cap == 50_000_000_000
    assert changed.windows == parse_schedule("mon-fri 18:00-08:00; sat,sun all")
    assert changed.suspend_on_battery is True
    assert changed.battery_suspend_below == 25
    assert changed.cpu_suspend_above is None
    assert changed.cpu_duty_idle == pytest.approx(0.8)
    assert changed.get_text("up_active") == "5MB/s"
    assert changed.get_text("idle_after") == "10 min"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("up_actve", "1M", "unknown setting 'up_actve' (known: donated, min_free"),
        ("up_active", "fast", "up_active: 'fast' is not a rate"),
        ("cpu_suspend_above", "0.5", "cpu_resume_below: must be below cpu_suspend_above (0.5)"),
        ("floor_rate", "unlimited", "floor_rate: the floor rate must be a number"),
        ("cpu_duty_active", "1.5", "cpu_duty_active: must be between 0 and 1"),
        ("windows", "mon 9:00", "windows: '9:00' is not a time range"),
    ],
)
def test_set_rejects_bad_values_with_one_line(key: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings().set(key, value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_toml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    assert load_settings(path) == Settings()  # missing file: defaults
    settings = Settings().set("up_active", "2MB/s").set("windows", "sat,sun all; mon 22:00-06:00")
    settings = settings.set("daily_cap", "10G").set("cpu_suspend_above", "off")
    save_settings(settings, path)
    assert load_settings(path) == settings
    assert [p.name for p in tmp_path.iterdir()] == ["agent.toml"]  # no temp file left


def test_hand_edited_toml_accepts_human_strings(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('up_idle = "20MB/s"\nidle_after = "15m"\ndonated = "1T"\n')
    settings = load_settings(path)
    assert (settings.up_idle, settings.idle_after, settings.donated) == (20_000_000, 900, 10**12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("up_idle = 0\n", "up_idle: must be above zero"),
        ("speed = 5\n", "unknown setting 'speed'"),
        ("windows = 5\n", "windows: 5 is not a time window"),
        ("up_idle = [\n", "agent.toml"),
    ],
)
def test_bad_toml_file_gives_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert message in str(info.value)


def test_daily_transfer_resets_at_local_midnight() -> None:
    now = [datetime(2024, 6, 10, 23, 59, 0)]
    counter = DailyTransfer(lambda: now[0])
    counter.add(1000)
    counter.add(500)
    assert counter.today() == 1500
    now[0] += timedelta(seconds=59)
    assert counter.today() == 1500
    now[0] += timedelta(seconds=1)  # 00:00:00 the next day
    assert counter.today() == 0
    counter.add(7)
    assert counter.snapshot() == (date(2024, 6, 11), 7)


def test_daily_transfer_restored_from_yesterday_starts_at_zero() -> None:
    clock = lambda: datetime(2024, 6, 11, 9, 0)  # noqa: E731
    assert DailyTransfer(clock, day=date(2024, 6, 11), total=42).today() == 42
    assert DailyTransfer(clock, day=date(2024, 6, 10), total=42).today() == 0


def test_weekly_schedule_default_is_always() -> None:
    assert Settings().windows == WeeklySchedule.always()
    assert str(Settings().windows) == "always"
