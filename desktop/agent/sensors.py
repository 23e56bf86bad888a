"""What the scheduler needs to know about the machine: user idle time, battery, load, free disk.

Blocking calls (X11 round trip, D-Bus, statvfs): the daemon calls `read_sensors` through
`trio.to_thread.run_sync`. Every source that is missing logs ONCE and falls back to a safe value:

- idle time: the X11 screensaver extension (exact, per input event) when `DISPLAY` works;
  else logind's `IdleHint`/`IdleSinceHint` of the user's display session on the system bus (coarse:
  the desktop sets the hint only after its own idle delay, so idle time is under-reported, which
  errs on the gentle side); else no user session at all (a headless server): always idle (inf).
- battery: `psutil.sensors_battery()`; no battery = on AC.
- load: the 1-minute load average divided by the CPU count (1.0 = every core busy).
- disk: `shutil.disk_usage` of the share store's filesystem.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from jeepney import DBusAddress, Properties
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import unwrap_msg

logger = logging.getLogger(__name__)

LOGIN1 = "org.freedesktop.login1"
DBUS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SensorReadings:
    idle_s: float
    """Seconds since the last keyboard/mouse input; math.inf when no user session is known."""
    idle_source: str
    """"x11", "logind" or "none"."""
    on_battery: bool
    battery_pct: float | None
    cpu_load: float
    disk_free: int
    disk_total: int


class Sensors:
    """Keeps the X11 and D-Bus connections open between reads (one X round trip per read)."""

    def __init__(
        self,
        store_dir: Path,
        *,
        display: str | None = None,
        system_bus: str = "SYSTEM",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`display` defaults to $DISPLAY; `system_bus` may be a D-Bus address (tests)."""
        self._store_dir = store_dir
        self._display_name = display if display is not None else os.environ.get("DISPLAY")
        self._system_bus = system_bus
        self._wall_clock = wall_clock
        self._display: Any = None
        self._x_usable = bool(self._display_name)
        self._bus: DBusConnection | None = None
        self._logind_usable = True
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def read(self) -> SensorReadings:
        with self._lock:
            idle_s, source = self._idle()
            on_battery, battery_pct = self._battery()
            disk = shutil.disk_usage(_existing_ancestor(self._store_dir))
            return SensorReadings(
                idle_s=idle_s,
                idle_source=source,
                on_battery=on_battery,
                battery_pct=battery_pct,
                cpu_load=self._load(),
                disk_free=disk.free,
                disk_total=disk.total,
            )

    def close(self) -> None:
        with self._lock:
            self._close_x()
            if self._bus is not None:
                self._bus.close()
                self._bus = None

    def _idle(self) -> tuple[float, str]:
        if self._x_usable:
            idle = self._x11_idle()
            if idle is not None:
                return idle, "x11"
        if self._logind_usable:
            idle = self._logind_idle()
            if idle is not None:
                return idle, "logind"
        self._log_once(
            "idle-none",
            logging.INFO,
            "no X11 display and no logind session: treating the user as always idle",
        )
        return math.inf, "none"

    def _x11_idle(self) -> float | None:
        # Any failure (no server, no extension, connection lost) must only cost the sensor.
        try:
            if self._display is None:
                from Xlib import display as xdisplay  # import only where X is wanted

                self._display = xdisplay.Display(self._display_name)
                if not self._display.has_extension("MIT-SCREEN-SAVER"):
                    raise RuntimeError("the X server has no MIT-SCREEN-SAVER extension")
            info = self._display.screen().root.screensaver_query_info()
            return float(info.idle) / 1000.0
        except Exception as error:
            self._log_once(
                "x11",
                logging.WARNING,
                f"X11 idle time unavailable on {self._display_name!r} ({error}); falling back",
            )
            self._close_x()
            self._x_usable = False
            return None

    def _logind_idle(self) -> float | None:
        try:
            if self._bus is None:
                self._bus = open_dbus_connection(bus=self._system_bus)
            user = DBusAddress(
                "/org/freedesktop/login1/user/self",
                bus_name=LOGIN1,
                interface=f"{LOGIN1}.User",
            )
            _, (_, session_path) = self._call(Properties(user).get("Display"))[0]
            if session_path == "/":
                raise RuntimeError("the user has no graphical session")
            session = DBusAddress(session_path, bus_name=LOGIN1, interface=f"{LOGIN1}.Session")
            props = self._call(Properties(session).get_all())[0]
            idle_hint = bool(props["IdleHint"][1])
            since_us = int(props["IdleSinceHint"][1])
        except Exception as error:
            self._log_once(
                "logind", logging.INFO, f"logind idle hint unavailable ({error}); falling back"
            )
            self._logind_usable = False
            if self._bus is not None:
                self._bus.close()
                self._bus = None
            return None
        if not idle_hint:
            return 0.0
        return max(0.0, self._wall_clock() - since_us / 1e6)

    def _call(self, message: Any) -> Any:
        assert self._bus is not None
        return unwrap_msg(self._bus.send_and_get_reply(message, timeout=DBUS_TIMEOUT_S))

    def _battery(self) -> tuple[bool, float | None]:
        try:
            battery = psutil.sensors_battery()
        except (OSError, RuntimeError) as error:
            self._log_once("battery", logging.WARNING, f"cannot read the battery ({error})")
            return False, None
        if battery is None:
            self._log_once("battery", logging.INFO, "no battery found: running as on AC power")
            return False, None
        if battery.power_plugged is None:
            self._log_once(
                "battery-plug", logging.INFO, "cannot tell whether on AC: assuming AC power"
            )
        return battery.power_plugged is False, float(battery.percent)

    def _load(self) -> float:
        try:
            one_minute = psutil.getloadavg()[0]
        except OSError as error:
            self._log_once("load", logging.WARNING, f"no load average ({error}): assuming 0")
            return 0.0
        return float(one_minute) / (psutil.cpu_count() or 1)

    def _close_x(self) -> None:
        if self._display is not None:
            try:
                self._display.close()
            except Exception:  # closing a broken connection may fail the same way: ignore
                logger.debug("closing the X display failed", exc_info=True)
            self._display = None

    def _log_once(self, key: str, level: int, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            logger.log(level, message)


_shared: dict[Path, Sensors] = {}
_shared_lock = threading.Lock()


def read_sensors(store_dir: Path) -> SensorReadings:
    """Read all sensors for the store at `store_dir` (blocking; one `Sensors` per store, kept)."""
    with _shared_lock:
        sensors = _shared.get(store_dir)
        if sensors is None:
            sensors = _shared[store_dir] = Sensors(store_dir)
    return sensors.read()


def _existing_ancestor(path: Path) -> Path:
    """The store may not exist yet; its future filesystem is that of its nearest parent."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")
