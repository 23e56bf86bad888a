"""The tray on a real X server: Xvfb, the `trayer` tray host, a private D-Bus session bus with
`dunst`, a daemon on a real Unix socket, and `python -m desktop tray` as its own process.

The daemon is `standin_daemon.py` (the real `IpcServer` with in-memory handlers) and stands in
for the daemon until `permacloud daemon` exists. Instead of `dbus-run-session` the test runs its
own `dbus-daemon --session` so it can also watch Notify calls with `dbus-monitor`.
Screenshots go to test-artifacts/tray/ (their paths are printed).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from desktop.daemon.ipc_client import IpcClient
from desktop.tray.icons import COLOURS
from desktop.tray.state import IconState

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "tray"
STANDIN = Path(__file__).with_name("standin_daemon.py")
HIGHLIGHT = (53, 132, 228)  # GTK (Adwaita) selected menu item

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("Xvfb", "trayer", "xdotool", "import", "dunst")),
    reason="needs Xvfb, trayer, xdotool, imagemagick and dunst (see ENVIRONMENT-NOTES.md)",
)


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _free_display() -> int:
    for number in range(60, 200):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            return number
    raise RuntimeError("no free X display number")


@dataclass
class Desktop:
    display: str
    bus: str
    home: Path
    processes: list[subprocess.Popen[Any]]

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DISPLAY": self.display,
            "DBUS_SESSION_BUS_ADDRESS": self.bus,
            "NO_AT_BRIDGE": "1",
            "PYSTRAY_BACKEND": "gtk",
            "PERMACLOUD_HOME": str(self.home),
        }

    def start(self, command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        process = subprocess.Popen(command, env=self.env, **kwargs)
        self.processes.append(process)
        return process

    def screenshot(self, name: str) -> Image.Image:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, check=True)
        print(f"screenshot: {path}")
        return Image.open(path).convert("RGB")

    def tray_box(self) -> tuple[int, int, int, int]:
        """(x, y, width, height) of the trayer panel, where the icon sits."""
        out = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--class", "trayer", "getwindowgeometry", "%@"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        boxes = [
            (int(x), int(y), int(w), int(h))
            for x, y, w, h in re.findall(
                r"Position: (-?\d+),(-?\d+).*?Geometry: (\d+)x(\d+)", out, re.S
            )
        ]
        boxes = [box for box in boxes if box[1] >= 0 and box[3] >= 16]
        assert boxes, f"no trayer window found: {out!r}"
        return max(boxes, key=lambda box: box[2])

    def icon_pixels(self, image: Image.Image, state: IconState) -> int:
        """How many pixels of the tray panel are (close to) the colour of `state`."""
        x, y, w, h = self.tray_box()
        target = COLOURS[state][:3]
        region = image.crop((x, y, x + w, y + h))
        return sum(
            1
            for px in region.get_flattened_data()
            if isinstance(px, tuple)
            and sum(abs(a - b) for a, b in zip(px, target, strict=True)) < 40
        )

    def wait_for_icon(self, state: IconState, name: str, timeout: float = 8.0) -> Image.Image:
        shots: list[Image.Image] = []

        def shows() -> bool:
            shots.append(self.screenshot(name))
            return self.icon_pixels(shots[-1], state) > 60

        wait_until(shows, timeout, f"the {state.value} icon")
        return shots[-1]

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with IpcClient(self.home / "run" / "daemon.sock", timeout=5) as client:
            return client.call(method, params)


@pytest.fixture(scope="module")
def x_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Xvfb + a private session bus + dunst + trayer, shared by the tests of this module."""
    processes: list[subprocess.Popen[Any]] = []
    number = _free_display()
    display = f":{number}"
    try:
        processes.append(
            subprocess.Popen(
                ["Xvfb", display, "-screen", "0", "800x480x24", "-nolisten", "tcp"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_until(lambda: Path(f"/tmp/.X11-unix/X{number}").exists(), 10, "Xvfb")
        bus_process = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        processes.append(bus_process)
        assert bus_process.stdout is not None
        bus = bus_process.stdout.readline().strip()
        env = {**os.environ, "DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": bus}
        for command in (
            ["dunst"],
            [
                "trayer",
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "request",
                "--height",
                "32",
                "--SetDockType",
                "true",
            ],
        ):
            processes.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        time.sleep(1.0)
        yield display, bus
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture
def desktop(x_session: tuple[str, str], tmp_path: Path) -> Iterator[Desktop]:
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    (tmp_path / "Sync").mkdir()
    env = Desktop(x_session[0], x_session[1], home, [])
    try:
        yield env
    finally:
        for process in reversed(env.processes):
            _stop(process)


def start_daemon(desktop: Desktop) -> subprocess.Popen[Any]:
    sock = desktop.home / "run" / "daemon.sock"
    process = desktop.start(
        [
            sys.executable,
            str(STANDIN),
            str(sock),
            str(desktop.home.parent / "Sync"),
            str(desktop.home.parent / "mnt"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def start_tray(desktop: Desktop, *extra: str) -> subprocess.Popen[Any]:
    return desktop.start(
        [sys.executable, "-m", "desktop", "tray", "--notify-interval", "3", *extra],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_icon_shows_state_and_pause_from_the_menu(desktop: Desktop) -> None:
    start_daemon(desktop)
    start_tray(desktop)
    before = desktop.wait_for_icon(IconState.IN_SYNC, "1-in-sync")
    x, y, w, h = desktop.tray_box()
    # Open the menu with a right click, walk to "Pause sync" and click it with the mouse.
    subprocess.run(
        ["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3"],
        env=desktop.env,
        check=True,
    )
    time.sleep(1.0)
    subprocess.run(["xdotool", "key", "Down", "Down", "Down"], env=desktop.env, check=True)
    time.sleep(0.5)
    menu = desktop.screenshot("2-menu-pause-sync-highlighted")
    rows = [
        row
        for row in range(menu.height)
        if sum(1 for col in range(menu.width) if menu.getpixel((col, row)) == HIGHLIGHT) > 100
    ]
    assert rows, "no highlighted menu item found"
    cols = [
        col for col in range(menu.width) if menu.getpixel((col, rows[len(rows) // 2])) == HIGHLIGHT
    ]
    target = (sum(cols) // len(cols), (rows[0] + rows[-1]) // 2)
    subprocess.run(
        ["xdotool", "mousemove", str(target[0]), str(target[1]), "click", "1"],
        env=desktop.env,
        check=True,
    )
    wait_until(
        lambda: desktop.call("status")["sync"]["state"] == "paused", 5, "the daemon to pause sync"
    )
    after = desktop.wait_for_icon(IconState.PAUSED, "3-paused")
    assert desktop.icon_pixels(after, IconState.IN_SYNC) < 10
    box = desktop.tray_box()
    crop = (box[0], box[1], box[0] + box[2], box[1] + box[3])
    assert list(before.crop(crop).get_flattened_data()) != list(
        after.crop(crop).get_flattened_data()
    )


def test_daemon_stopping_turns_the_icon_offline_and_back(desktop: Desktop) -> None:
    daemon = start_daemon(desktop)
    start_tray(desktop)
    desktop.wait_for_icon(IconState.IN_SYNC, "4-online")
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(5)
    stopped = time.monotonic()
    desktop.wait_for_icon(IconState.OFFLINE, "5-offline", timeout=6)
    assert time.monotonic() - stopped < 6
    start_daemon(desktop)
    desktop.call("standin.set", {"sync": {"state": "syncing", "pending": 7}})
    desktop.wait_for_icon(IconState.SYNCING, "6-reconnected-syncing", timeout=8)


def test_conflict_burst_makes_one_notification_then_one_summary(desktop: Desktop) -> None:
    monitor = desktop.start(
        [
            "dbus-monitor",
            "--address",
            desktop.bus,
            "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    start_daemon(desktop)
    start_tray(desktop)
    desktop.wait_for_icon(IconState.IN_SYNC, "7-before-conflicts")
    for index in range(6):
        desktop.call(
            "standin.notify",
            {
                "kind": "conflict",
                "title": "Conflict",
                "text": f"f{index}.txt changed on two devices",
            },
        )
    time.sleep(6.5)  # interval 3 s + one 2 s status poll to flush the summary
    desktop.screenshot("8-notification")
    _stop(monitor)
    assert monitor.stdout is not None
    log = monitor.stdout.read()
    calls = log.count("member=Notify")
    assert calls == 2, log
    assert 'string "Conflict"' in log and "f0.txt changed on two devices" in log
    assert 'string "PermaCloud: 5 conflicts"' in log
    assert "f5.txt changed on two devices" in log


def test_without_display_or_tray_host_a_one_line_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PERMACLOUD_HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [sys.executable, "-m", "desktop", "tray"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "permacloud: error: no graphical display (DISPLAY is not set): the tray needs a desktop"
    )
    number = _free_display()
    xvfb = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", "320x200x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: Path(f"/tmp/.X11-unix/X{number}").exists(), 10, "Xvfb")
        result = subprocess.run(
            [
                "dbus-run-session",
                "--",
                "sh",
                "-c",
                'dunst >/dev/null 2>&1 & exec "$@"',
                "sh",
                sys.executable,
                "-m",
                "desktop",
                "tray",
                "--wait-for-tray",
                "2",
            ],
            env={**env, "DISPLAY": f":{number}", "NO_AT_BRIDGE": "1"},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        _stop(xvfb)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert (
        "permacloud: error: no system tray found on this display (is a tray/panel running?)"
        in result.stderr.splitlines()
    )
