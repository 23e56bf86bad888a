"""The scheduler at run time: sensors -> `decide` -> limiters, share admission, background pacing.

`policy.decide` is pure; this module is its trio edge inside the daemon. Every `tick` seconds it
reads the sensors in a worker thread, decides, and applies the allowance:

- the send/receive `SharedRateLimiter`s get the new caps (waiters re-read them at once);
- `admit(size, used)` is the hook `ShareStore.create` calls for NEW shares only, so a paused,
  suspended or full node refuses them (507 with a reason a person can read) while every stored
  share is still served, at the floor rate at worst;
- `run_background(work)` paces background work (the lease sweep) to the CPU duty by resting
  `spent * (1 - duty) / duty` after each piece. Pacing rather than `os.nice`: nice applies to the
  whole process, and the daemon's IPC and serving must stay responsive;
- bytes through both limiters are counted per local day and saved in the daemon's data dir, so a
  restart keeps today's count (the daily cap's input).

Settings live in `<data_dir>/agent.toml` (`settings.py`); the user's sharing choice and pause in
`<data_dir>/agent_state.json`. A change through `set`/`pause`/`resume` is decided and applied at
once with the last sensor readings, without waiting for the next tick.

Test hook: `PERMACLOUD_AGENT_FAKE_IDLE` replaces ONLY the keyboard/mouse idle sensor (headless
test machines have none). Its value is seconds of idle time, or the path of a file holding that
number, re-read on every tick, so a test can switch a running daemon between "in use" and "idle".
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import trio

from desktop.agent.daily_transfer import DailyTransfer
from desktop.agent.human_values import format_rate, format_size
from desktop.agent.policy import Allowance, HysteresisState, Mode, Pause, PolicyInputs, decide
from desktop.agent.sensors import SensorReadings, read_sensors
from desktop.agent.settings import (
    Settings,
    SettingsError,
    load_settings,
    save_settings,
    setting_names,
)
from desktop.agent.store import ShareStore
from desktop.agent.throttle import SharedRateLimiter
from desktop.core.errors import PermaCloudError

logger = logging.getLogger(__name__)

T = TypeVar("T")

FAKE_IDLE_ENV = "PERMACLOUD_AGENT_FAKE_IDLE"
TICK_SECONDS = 1.0
SAVE_EVERY_SECONDS = 10.0
SETTINGS_FILE = "agent.toml"
STATE_FILE = "agent_state.json"
TRANSFER_FILE = "agent_transfer.json"
SHARING_MODES = ("always", "idle", "never")

BackgroundRunner = Callable[[Callable[[], T]], Awaitable[T]]


class AgentError(PermaCloudError):
    """A sharing choice or pause request the agent cannot take."""


SensorReader = Callable[[], SensorReadings]


class CountingLimiter:
    """One direction's rate limiter that also counts what passed (for today's transfer)."""

    def __init__(self, limiter: SharedRateLimiter, counter: DailyTransfer) -> None:
        self.limiter = limiter
        self.counter = counter

    async def consume(self, nbytes: int, peer: str) -> None:
        await self.limiter.consume(nbytes, peer)
        self.counter.add(nbytes)


def fake_idle_from_env(environ: dict[str, str] | None = None) -> Callable[[], float] | None:
    """The test hook (see the module docstring); None when it is not set."""
    raw = (os.environ if environ is None else environ).get(FAKE_IDLE_ENV)
    if not raw:
        return None
    try:
        constant = float(raw)
    except ValueError:
        path = Path(raw)

        def from_file() -> float:
            try:
                return float(path.read_text().strip())
            except (OSError, ValueError):
                return math.inf

        return from_file
    return lambda: constant


def default_sensor_reader(store_dir: Path) -> SensorReader:
    """`read_sensors` for the store's filesystem, with the idle test hook applied if set."""
    fake_idle = fake_idle_from_env()
    if fake_idle is not None:
        logger.warning("%s is set: the idle sensor is replaced (test hook)", FAKE_IDLE_ENV)

    def read() -> SensorReadings:
        readings = read_sensors(store_dir)
        if fake_idle is None:
            return readings
        return dataclasses.replace(readings, idle_s=fake_idle(), idle_source="test-hook")

    return read


_UNKNOWN_READINGS = SensorReadings(
    idle_s=0.0,
    idle_source="unavailable",
    on_battery=False,
    battery_pct=None,
    cpu_load=0.0,
    disk_free=0,
    disk_total=0,
)
"""Used when the sensors fail before any good reading: the gentle side (in use, disk unknown)."""


class AgentRuntime:
    """The agent's live state; create it, then `await nursery.start(runtime.run)`."""

    def __init__(
        self,
        data_dir: Path,
        store_dir: Path,
        *,
        default_donated: int | None = None,
        sensors: SensorReader | None = None,
        clock: Callable[[], datetime] = datetime.now,
        publish: Callable[[str, Any], None] | None = None,
        tick: float = TICK_SECONDS,
    ) -> None:
        """`default_donated` is the donated size until the user sets one (the node quota)."""
        self.data_dir = data_dir
        self.settings_path = data_dir / SETTINGS_FILE
        self._state_path = data_dir / STATE_FILE
        self._transfer_path = data_dir / TRANSFER_FILE
        self._read = sensors if sensors is not None else default_sensor_reader(store_dir)
        self.clock = clock
        self._publish = publish
        self.tick = tick
        self.settings_problem: str | None = None
        self.settings = self._load_settings(default_donated)
        self.sharing, self._pause_until = self._load_state()
        self.sent, self.received = self._load_transfer()
        self._send = SharedRateLimiter(None)
        self._receive = SharedRateLimiter(None)
        self.send_limiter = CountingLimiter(self._send, self.sent)
        self.receive_limiter = CountingLimiter(self._receive, self.received)
        self.readings: SensorReadings | None = None
        self.allowance: Allowance | None = None
        self._decision: tuple[Allowance, Settings, int, int] | None = None
        self._hysteresis = HysteresisState()
        self._store: ShareStore | None = None
        self._duty_changed = trio.Event()
        self._published: tuple[Any, ...] | None = None

    # ---- wiring ----------------------------------------------------------------------------

    def attach_store(self, store: ShareStore) -> None:
        """The node's store: its usage feeds the policy and its quota follows `donated`."""
        self._store = store
        store.quota = self.settings.donated
        self._decide_and_apply()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Decide once, report started (limiters set before the node listens), then every tick."""
        try:
            await self.tick_once()
            task_status.started()
            last_save = trio.current_time()
            while True:
                await trio.sleep(self.tick)
                await self.tick_once()
                if trio.current_time() - last_save >= SAVE_EVERY_SECONDS:
                    await trio.to_thread.run_sync(self.save_transfer)
                    last_save = trio.current_time()
        finally:
            try:
                self.save_transfer()  # a few bytes; must happen even when cancelled
            except OSError as error:
                logger.warning("cannot save today's transfer count: %s", error)

    async def tick_once(self) -> Allowance:
        try:
            self.readings = await trio.to_thread.run_sync(self._read)
        except Exception as error:  # a broken sensor must never stop serving; keep the last view
            logger.warning("agent sensors failed: %s", error)
        return self._decide_and_apply()

    # ---- user actions ----------------------------------------------------------------------

    async def set(self, key: str, value: str) -> None:
        """`permacloud agent set KEY VALUE`: validated, saved, applied at once."""
        if key.strip().lower() == "sharing":
            await self._set_sharing(value.strip().lower())
        else:
            new = self.settings.set(key, value)
            await trio.to_thread.run_sync(save_settings, new, self.settings_path)
            self.settings = new
            self.settings_problem = None
            if self._store is not None:
                self._store.quota = new.donated
        self._decide_and_apply()

    async def pause(self, seconds: float | None) -> None:
        """Pause for `seconds`, or (None) until resumed, which is the "never" sharing choice."""
        if seconds is None:
            self.sharing = "never"
        elif not (seconds > 0 and math.isfinite(seconds)):
            raise AgentError("pause: the duration must be above zero (or omitted: until resumed)")
        else:
            self._pause_until = self.clock().timestamp() + seconds
        await trio.to_thread.run_sync(self._save_state)
        self._decide_and_apply()

    async def resume(self) -> None:
        if self.sharing == "never":
            self.sharing = "idle"
        self._pause_until = None
        await trio.to_thread.run_sync(self._save_state)
        self._decide_and_apply()

    async def _set_sharing(self, value: str) -> None:
        if value not in SHARING_MODES:
            raise AgentError(f"sharing: {value!r} must be one of {', '.join(SHARING_MODES)}")
        self.sharing = value
        if value != "never":
            self._pause_until = None
        await trio.to_thread.run_sync(self._save_state)

    # ---- enforcement hooks -----------------------------------------------------------------

    def admit(self, size: int, used: int) -> str | None:
        """`ShareStore` hook for a new share of `size` (store holds `used`): None or why not.

        Called from the store's worker thread: it reads one tuple, replaced whole by trio.
        """
        decision = self._decision
        if decision is None:
            return None
        allowance, settings, used_then, disk_free = decision
        if allowance.mode in (Mode.PAUSED, Mode.SUSPENDED):
            return f"this node is not accepting new shares now ({allowance.reason})"
        grown = used - used_then
        quota_left = settings.donated - used
        disk_left = disk_free - grown - settings.min_free
        if size <= min(quota_left, disk_left):
            return None
        if quota_left < size:
            why = (
                f"donated space full ({format_size(used)} of {format_size(settings.donated)} "
                f"used, share needs {format_size(size)})"
            )
        else:
            why = (
                f"disk nearly full ({format_size(max(0, disk_free - grown))} free, keeping "
                f"{format_size(settings.min_free)} free, share needs {format_size(size)})"
            )
        return f"this node is not accepting new shares now ({why})"

    async def run_background(self, work: Callable[[], T]) -> T:
        """Run blocking background `work` in a thread, then rest so it uses at most the duty."""
        await self._wait_for_duty()
        started = trio.current_time()
        result = await trio.to_thread.run_sync(work)
        spent = trio.current_time() - started
        await self._wait_for_duty()
        duty = self.cpu_duty()
        if duty < 1.0:
            await trio.sleep(spent * (1.0 - duty) / duty)
        return result

    def cpu_duty(self) -> float:
        return self.allowance.cpu_duty if self.allowance is not None else 0.0

    async def _wait_for_duty(self) -> None:
        while self.cpu_duty() <= 0:
            await self._duty_changed.wait()

    # ---- deciding --------------------------------------------------------------------------

    def _pause(self) -> Pause:
        if self.sharing == "never":
            return Pause.until_resumed()
        if self._pause_until is not None:
            return Pause(paused=True, until=datetime.fromtimestamp(self._pause_until))
        return Pause()

    def _decide_and_apply(self) -> Allowance:
        readings = self.readings or _UNKNOWN_READINGS
        used = self._store.used if self._store is not None else 0
        now = self.clock()
        if self._pause_until is not None and now.timestamp() >= self._pause_until:
            self._pause_until = None  # expired: forget it (saved with the next change)
        inputs = PolicyInputs(
            now=now,
            idle_s=math.inf if self.sharing == "always" else readings.idle_s,
            on_battery=readings.on_battery,
            battery_pct=readings.battery_pct,
            cpu_load=readings.cpu_load,
            disk_free=readings.disk_free,
            store_used=used,
            transferred_today=self.sent.today() + self.received.today(),
            pause=self._pause(),
        )
        allowance, self._hysteresis = decide(inputs, self.settings, self._hysteresis)
        self._send.set_rate(allowance.upload_bps)
        self._receive.set_rate(allowance.download_bps)
        old_duty = self.cpu_duty()
        self.allowance = allowance
        self._decision = (allowance, self.settings, used, readings.disk_free)
        if allowance.cpu_duty != old_duty:
            self._duty_changed.set()
            self._duty_changed = trio.Event()
        self._maybe_publish(allowance)
        return allowance

    def _maybe_publish(self, allowance: Allowance) -> None:
        key = (
            allowance.mode,
            allowance.accept_new_shares,
            allowance.upload_bps,
            allowance.download_bps,
            self.sharing,
            self._pause_until,
        )
        if key == self._published:
            return
        if self._published is not None:
            logger.info("agent: %s (%s)", allowance.mode.value, allowance.reason)
        self._published = key
        if self._publish is not None:
            self._publish("agent", self.status())
            self._publish("status", {"agent": self.tray_status()})

    # ---- reporting -------------------------------------------------------------------------

    def tray_status(self) -> dict[str, Any]:
        """The `status.agent` shape of docs/ipc.md."""
        allowance = self.allowance
        return {
            "mode": allowance.mode.value if allowance else "starting",
            "reason": allowance.reason if allowance else "",
            "sharing": self.sharing,
            "paused_until": self._pause_until,
        }

    def status(self) -> dict[str, Any]:
        """Everything `permacloud agent status` shows (JSON-safe)."""
        allowance = self.allowance
        readings = self.readings or _UNKNOWN_READINGS
        store = self._store
        return {
            **self.tray_status(),
            "reasons": list(allowance.reasons) if allowance else [],
            "upload_bps": allowance.upload_bps if allowance else None,
            "download_bps": allowance.download_bps if allowance else None,
            "upload": format_rate(allowance.upload_bps) if allowance else "",
            "download": format_rate(allowance.download_bps) if allowance else "",
            "accepting_new_shares": bool(allowance and allowance.accept_new_shares),
            "new_share_room": allowance.new_share_room if allowance else 0,
            "cpu_duty": self.cpu_duty(),
            "served_today": self.sent.today(),
            "received_today": self.received.today(),
            "donated": self.settings.donated,
            "used": store.used if store is not None else 0,
            "shares": len(store) if store is not None else 0,
            "node_running": store is not None,
            "disk_free": readings.disk_free,
            "min_free": self.settings.min_free,
            "sensors": {
                "idle_s": None if math.isinf(readings.idle_s) else readings.idle_s,
                "idle_source": readings.idle_source,
                "on_battery": readings.on_battery,
                "battery_pct": readings.battery_pct,
                "cpu_load": readings.cpu_load,
            },
            "settings": {key: self.settings.get_text(key) for key in setting_names()},
            "settings_problem": self.settings_problem,
        }

    # ---- persistence -----------------------------------------------------------------------

    def _load_settings(self, default_donated: int | None) -> Settings:
        if not self.settings_path.exists():
            if default_donated is None:
                return Settings()
            return dataclasses.replace(Settings(), donated=default_donated).validate()
        try:
            return load_settings(self.settings_path)
        except SettingsError as error:
            # A typo in a hand-edited file must not stop the daemon (and the user's sync).
            self.settings_problem = f"{self.settings_path}: {error}; using defaults"
            logger.error("agent settings: %s", self.settings_problem)
            return Settings()

    def _load_state(self) -> tuple[str, float | None]:
        data = _read_json(self._state_path)
        sharing = data.get("sharing", "idle")
        until = data.get("pause_until")
        if sharing not in SHARING_MODES:
            sharing = "idle"
        if not isinstance(until, int | float) or isinstance(until, bool):
            until = None
        return sharing, None if until is None else float(until)

    def _save_state(self) -> None:
        _write_json(self._state_path, {"sharing": self.sharing, "pause_until": self._pause_until})

    def _load_transfer(self) -> tuple[DailyTransfer, DailyTransfer]:
        data = _read_json(self._transfer_path)
        try:
            day: date | None = date.fromisoformat(str(data["day"]))
            sent, received = int(data["sent"]), int(data["received"])
        except (KeyError, ValueError, TypeError):
            day, sent, received = None, 0, 0
        if day is not None and day != self.clock().date():
            sent = received = 0  # a count saved on another day does not carry over
        day = self.clock().date()
        return (
            DailyTransfer(self.clock, day=day, total=max(0, sent)),
            DailyTransfer(self.clock, day=day, total=max(0, received)),
        )

    def save_transfer(self) -> None:
        day, sent = self.sent.snapshot()
        _, received = self.received.snapshot()
        _write_json(
            self._transfer_path, {"day": day.isoformat(), "sent": sent, "received": received}
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable %s: %s", path, error)
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic (temp file + rename): a crash leaves the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(data, file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
