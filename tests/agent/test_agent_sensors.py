"""Sensors on real parts: Xvfb moved by xdotool, a private dbus-daemon, psutil, statvfs."""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from jeepney import HeaderFields, MessageType, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

from desktop.agent.sensors import Sensors

NO_BUS = "unix:path=/nonexistent/permacloud-test-bus"


def _free_display() -> int:
    for number in range(90, 200):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    raise RuntimeError("no free X display number")


@pytest.fixture
def xvfb() -> Iterator[str]:
    number = _free_display()
    name = f":{number}"
    process = subprocess.Popen(
        ["Xvfb", name, "-nolisten", "tcp", "-screen", "0", "640x480x24"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert process.poll() is None, "Xvfb exited"
            assert time.monotonic() < deadline, "Xvfb did not start"
            time.sleep(0.05)
        yield name
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_x11_idle_time_grows_and_resets_on_mouse_move(xvfb: str, tmp_path: Path) -> None:
    sensors = Sensors(tmp_path, display=xvfb, system_bus=NO_BUS)
    try:
        subprocess.run(
            ["xdotool", "mousemove", "10", "10"], env={**os.environ, "DISPLAY": xvfb}, check=True
        )
        time.sleep(1.5)
        before = sensors.read()
        assert before.idle_source == "x11"
        assert before.idle_s >= 1.4
        subprocess.run(
            ["xdotool", "mousemove", "200", "150"], env={**os.environ, "DISPLAY": xvfb}, check=True
        )
        after = sensors.read()
        assert after.idle_source == "x11"
        assert after.idle_s < 0.5 < before.idle_s
    finally:
        sensors.close()


def test_no_display_and_no_logind_means_always_idle_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The honest headless case of this container: no X server on the display, no system bus."""
    sensors = Sensors(tmp_path, display=f":{_free_display()}", system_bus=NO_BUS)
    with caplog.at_level(logging.INFO, logger="desktop.agent.sensors"):
        first = sensors.read()
        second = sensors.read()
    assert (first.idle_source, second.idle_source) == ("none", "none")
    assert math.isinf(first.idle_s)
    messages = [r.getMessage() for r in caplog.records]
    for fragment in ("X11 idle time unavailable", "logind idle hint unavailable", "always idle"):
        assert sum(fragment in m for m in messages) == 1, messages


def test_empty_display_skips_x11(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="desktop.agent.sensors"):
        readings = Sensors(tmp_path, display="", system_bus=NO_BUS).read()
    assert readings.idle_source == "none"
    assert not any("X11 idle time unavailable" in r.getMessage() for r in caplog.records)


def test_battery_load_and_disk_match_the_system(tmp_path: Path) -> None:
    store = tmp_path / "not-created-yet" / "shares"
    readings = Sensors(store, display="", system_bus=NO_BUS).read()
    usage = shutil.disk_usage(tmp_path)
    assert readings.disk_total == usage.total
    assert abs(readings.disk_free - usage.free) < 64 * 2**20
    assert readings.cpu_load == pytest.approx(
        psutil.getloadavg()[0] / (psutil.cpu_count() or 1), abs=0.2
    )
    battery = psutil.sensors_battery()
    if battery is None:  # this container: no battery, so "on AC"
        assert (readings.on_battery, readings.battery_pct) == (False, None)
    else:
        assert readings.on_battery is (battery.power_plugged is False)
        assert readings.battery_pct == pytest.approx(battery.percent, abs=2)


# --- logind over a real (private) D-Bus ---


@pytest.fixture
def private_bus() -> Iterator[str]:
    process = subprocess.Popen(
        [
            "dbus-daemon",
            "--config-file=/usr/share/dbus-1/session.conf",
            "--nofork",
            "--print-address=1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        assert address.startswith("unix:"), address
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)


class StandInLogind:
    """Answers the two property reads the sensor makes, like logind would.

    A stand-in: no systemd-logind runs in this container (there is no system bus at all), so this
    checks our D-Bus requests and reply parsing against the documented logind interface.
    """

    def __init__(self, address: str, idle_hint: bool, idle_since_us: int) -> None:
        self.idle_hint = idle_hint
        self.idle_since_us = idle_since_us
        self._connection = open_dbus_connection(address)
        self._connection.send_and_get_reply(message_bus.RequestName("org.freedesktop.login1"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._connection.receive(timeout=0.1)
            except TimeoutError:
                continue
            if message.header.message_type != MessageType.method_call:
                continue
            path = message.header.fields[HeaderFields.path]
            member = message.header.fields[HeaderFields.member]
            if path == "/org/freedesktop/login1/user/self" and member == "Get":
                session = ("c7", "/org/freedesktop/login1/session/c7")
                reply = new_method_return(message, "v", (("(so)", session),))
            elif path == "/org/freedesktop/login1/session/c7" and member == "GetAll":
                props = {
                    "IdleHint": ("b", self.idle_hint),
                    "IdleSinceHint": ("t", self.idle_since_us),
                }
                reply = new_method_return(message, "a{sv}", (props,))
            else:
                continue
            self._connection.send(reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._connection.close()


def test_logind_idle_hint_over_dbus(private_bus: str, tmp_path: Path) -> None:
    now = 1_700_000_000.0
    logind = StandInLogind(private_bus, idle_hint=True, idle_since_us=int((now - 720) * 1e6))
    sensors = Sensors(tmp_path, display="", system_bus=private_bus, wall_clock=lambda: now)
    try:
        idle = sensors.read()
        assert idle.idle_source == "logind"
        assert idle.idle_s == pytest.approx(720)
        logind.idle_hint = False
        active = sensors.read()
        assert (active.idle_source, active.idle_s) == ("logind", 0.0)
    finally:
        sensors.close()
        logind.close()
