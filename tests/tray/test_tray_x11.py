"""The tray on a real X server, against the REAL daemon: Xvfb, the `trayer` tray host, a
private D-Bus session bus with `dunst`, real `permacloud daemon` processes (tests/helpers_daemon.py)
on real storage node processes, and `python -m desktop tray` as its own process.

Only the error icon is driven through `standin_daemon.py` (the real `IpcServer` with in-memory
handlers), because the real daemon cannot be put into `sync.state == "error"` on demand. Instead
of `dbus-run-session` the test runs its own `dbus-daemon --session` so it can also watch Notify
calls with `dbus-monitor`. Screenshots go to test-artifacts/tray/ (their paths are printed).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers_daemon import Device, DeviceFactory, cli_env
from helpers_nodes import NodeFactory, write_nodes_toml
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
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The device's CLI environment (so a daemon the tray spawns finds the same home)."""
        return {
            **cli_env(self.home),
            "DISPLAY": self.display,
            "DBUS_SESSION_BUS_ADDRESS": self.bus,
            "NO_AT_BRIDGE": "1",
            "PYSTRAY_BACKEND": "gtk",
        }

    def start(self, command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        process = subprocess.Popen(command, **{"env": self.env, **kwargs})
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

    def click_menu_item(self, downs: int, name: str) -> Image.Image:
        """Right-click the icon, walk `downs` sensitive items down the menu with the keyboard,
        then click the highlighted item with the mouse; returns the menu's screenshot."""
        x, y, w, h = self.tray_box()
        subprocess.run(
            ["xdotool", "mousemove", str(x + w // 2), str(y + h // 2), "click", "3"],
            env=self.env,
            check=True,
        )
        time.sleep(1.0)
        subprocess.run(["xdotool", "key", *["Down"] * downs], env=self.env, check=True)
        time.sleep(0.5)
        menu = self.screenshot(name)
        rows = [
            row
            for row in range(menu.height)
            if sum(1 for col in range(menu.width) if menu.getpixel((col, row)) == HIGHLIGHT) > 100
        ]
        assert rows, "no highlighted menu item found"
        middle = rows[len(rows) // 2]
        cols = [col for col in range(menu.width) if menu.getpixel((col, middle)) == HIGHLIGHT]
        target = (sum(cols) // len(cols), (rows[0] + rows[-1]) // 2)
        subprocess.run(
            ["xdotool", "mousemove", str(target[0]), str(target[1]), "click", "1"],
            env=self.env,
            check=True,
        )
        return menu

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


@pytest.fixture(scope="module")
def nodes_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Eight real storage node processes on 127.0.0.1, shared by the tests of this module."""
    base = tmp_path_factory.mktemp("tray-nodes")
    factory = NodeFactory(base)
    try:
        yield write_nodes_toml(base / "nodes.toml", factory.start_many(8))
    finally:
        factory.stop_all()


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[DeviceFactory]:
    factory = DeviceFactory(tmp_path / "devices")
    yield factory
    factory.stop_all()


@pytest.fixture
def alice(devices: DeviceFactory, nodes_file: Path) -> Device:
    """A real device (`permacloud init`), its daemon not started yet."""
    return devices.init("alice", nodes_file)


@contextlib.contextmanager
def desktop_session(x_session: tuple[str, str], home: Path) -> Iterator[Desktop]:
    """A desktop session whose processes (tray, dbus-monitor, ...) are stopped on exit."""
    env = Desktop(x_session[0], x_session[1], home)
    try:
        yield env
    finally:
        for process in reversed(env.processes):
            _stop(process)


@pytest.fixture
def desktop(x_session: tuple[str, str], alice: Device) -> Iterator[Desktop]:
    """The desktop session of alice's device: the tray watches her home."""
    with desktop_session(x_session, alice.home) as session:
        yield session


def start_tray(desktop: Desktop, *extra: str) -> subprocess.Popen[Any]:
    return desktop.start(
        [sys.executable, "-m", "desktop", "tray", "--notify-interval", "3", *extra],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )


def daemon_lock_held(home: Path) -> bool:
    """True while a daemon of `home` runs (the kernel drops its flock when it exits)."""
    with open(home / "data" / "daemon.lock", "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def stop_spawned_daemon(home: Path) -> None:
    """SIGTERM the daemon the tray spawned for `home` (pid from its lock file) and wait."""
    lock = home / "data" / "daemon.lock"
    if not lock.exists() or not daemon_lock_held(home):
        return
    pid = int(lock.read_text().strip())
    process = psutil.Process(pid)
    cmdline = process.cmdline()
    assert cmdline[-2:] == ["desktop", "daemon"], f"pid {pid} is not our daemon: {cmdline}"
    process.send_signal(signal.SIGTERM)
    wait_until(lambda: not daemon_lock_held(home), 20, "the spawned daemon to stop")


class NotifyWatch:
    """`dbus-monitor` on the session bus, collecting Notify calls as they happen."""

    def __init__(self, desktop: Desktop) -> None:
        self.process = desktop.start(
            [
                "dbus-monitor",
                "--address",
                desktop.bus,
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def calls(self) -> int:
        return self.log.count("member=Notify")


def test_icon_shows_state_and_pause_from_the_menu(desktop: Desktop, alice: Device) -> None:
    alice.start()
    start_tray(desktop)
    before = desktop.wait_for_icon(IconState.IN_SYNC, "1-in-sync", timeout=20)
    assert alice.call("status")["sync"]["state"] == "idle"
    # Sensitive items from the top: Open mount, Pause sync ("Open sync folder" is greyed out:
    # the real daemon has no sync folder configured).
    desktop.click_menu_item(2, "2-menu-pause-sync-highlighted")
    wait_until(
        lambda: alice.call("status")["sync"]["state"] == "paused", 5, "the daemon to pause sync"
    )
    after = desktop.wait_for_icon(IconState.PAUSED, "3-paused")
    assert desktop.icon_pixels(after, IconState.IN_SYNC) < 10
    box = desktop.tray_box()
    crop = (box[0], box[1], box[0] + box[2], box[1] + box[3])
    assert list(before.crop(crop).get_flattened_data()) != list(
        after.crop(crop).get_flattened_data()
    )
    assert any(item["text"] == "sync paused" for item in alice.call("activity", {"limit": 5}))


def test_daemon_stopping_turns_the_icon_offline_and_back(desktop: Desktop, alice: Device) -> None:
    alice.start()
    start_tray(desktop)
    desktop.wait_for_icon(IconState.IN_SYNC, "4-online", timeout=20)
    assert alice.stop() == 0  # SIGTERM
    stopped = time.monotonic()
    desktop.wait_for_icon(IconState.OFFLINE, "5-offline", timeout=6)
    assert time.monotonic() - stopped < 6
    alice.start()
    desktop.wait_for_icon(IconState.IN_SYNC, "6-reconnected", timeout=20)


def test_open_mount_from_the_menu_mounts_through_the_real_daemon(
    desktop: Desktop, alice: Device, tmp_path: Path
) -> None:
    """Needs FUSE (root here, see ENVIRONMENT-NOTES.md); HOME points the default mountpoint
    (~/PermaCloud) into the test's temporary folder."""
    user_home = tmp_path / "user"
    user_home.mkdir()
    alice.start()
    desktop.start(
        [sys.executable, "-m", "desktop", "tray"],
        cwd=REPO,
        env={**desktop.env, "HOME": str(user_home)},
        stderr=subprocess.PIPE,
        text=True,
    )
    desktop.wait_for_icon(IconState.IN_SYNC, "14-before-mount", timeout=20)
    try:
        desktop.click_menu_item(1, "15-menu-open-mount-highlighted")
        mount = alice.wait_until(
            lambda: (status := alice.call("mount.status"))["mounted"] and status,
            what="the mount",
        )
        assert mount["path"] == str(user_home / "PermaCloud")
    finally:
        if alice.call("mount.status")["mounted"]:
            alice.call("unmount")


def test_open_sync_folder_opens_the_daemons_sync_folder(
    desktop: Desktop, alice: Device, tmp_path: Path
) -> None:
    """The daemon and its sync folder are real; `xdg-open` is replaced by a script that records
    its argument, because a file manager is not part of this headless session."""
    folder = tmp_path / "PermaCloudSync"
    folder.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opened = tmp_path / "opened.txt"
    fake = bin_dir / "xdg-open"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> {opened}\n')
    fake.chmod(0o755)
    alice.start()
    alice.cli("sync", "add", str(folder))
    alice.wait_until(
        lambda: alice.call("status")["sync"].get("folder") == str(folder), what="the sync folder"
    )
    desktop.start(
        [sys.executable, "-m", "desktop", "tray", "--notify-interval", "3"],
        cwd=REPO,
        env={**desktop.env, "PATH": f"{bin_dir}:{desktop.env.get('PATH', os.defpath)}"},
        stderr=subprocess.PIPE,
        text=True,
    )
    desktop.wait_for_icon(IconState.IN_SYNC, "16-with-sync-folder", timeout=20)
    # "Open sync folder" is now the first sensitive item of the menu.
    desktop.click_menu_item(1, "17-menu-open-sync-folder-highlighted")
    wait_until(opened.exists, 10, "the tray to open the sync folder")
    assert opened.read_text().splitlines() == [str(folder)]


def test_start_permacloud_from_the_menu_starts_the_real_daemon(
    desktop: Desktop, alice: Device
) -> None:
    assert not daemon_lock_held(alice.home)
    start_tray(desktop)
    desktop.wait_for_icon(IconState.OFFLINE, "7-not-running")
    try:
        # With no daemon, "Start PermaCloud" is the first sensitive item of the menu.
        desktop.click_menu_item(1, "8-menu-start-highlighted")
        wait_until(lambda: daemon_lock_held(alice.home), 20, "the tray to spawn the daemon")
        desktop.wait_for_icon(IconState.IN_SYNC, "9-started-from-the-tray", timeout=30)
        status = desktop.call("status")
        assert status["device"]["name"] == "alice"
        assert status["sync"]["state"] == "idle"
    finally:
        stop_spawned_daemon(alice.home)


def test_real_conflicts_make_one_notification_then_one_summary(
    x_session: tuple[str, str], devices: DeviceFactory, alice: Device, tmp_path: Path
) -> None:
    alice.start()
    bob = devices.join("bob", alice.cli_json("invite")["code"]).start()
    with desktop_session(x_session, alice.home) as desktop:
        watch = NotifyWatch(desktop)
        start_tray(desktop, "--notify-interval", "15")
        desktop.wait_for_icon(IconState.IN_SYNC, "10-before-conflicts", timeout=20)
        alice.cli("mkdir", "/notes")
        bob.wait_until(
            lambda: any(row["name"] == "notes" for row in bob.call("ls", {"path": "/"})),
            what="/notes on bob",
        )
        alice.call("sync.pause")
        bob.call("sync.pause")
        files = [f"f{index}.txt" for index in range(6)]
        for device in (alice, bob):
            for name in files:
                local = tmp_path / f"{device.name}-{name}"
                local.write_bytes(f"{device.name}'s version of {name}".encode())
                device.call("put", {"local": str(local), "path": f"/notes/{name}"})
        alice.call("sync.resume")
        bob.call("sync.resume")
        alice.wait_until(
            lambda: alice.call("status")["sync"]["conflicts"] == 6, 60, "6 conflicts on alice"
        )
        wait_until(lambda: watch.calls() >= 2, 25, "the conflict notification and its summary")
        time.sleep(1.0)
        desktop.screenshot("11-conflict-notification")
        log = watch.log
        assert watch.calls() == 2, log
        first, summary = log.split("member=Notify")[1:]
        assert 'string "Conflict"' in first
        assert re.search(r"/notes/f\d\.txt was changed on two devices", first), first
        assert ".sync-conflict-" in first
        assert 'string "PermaCloud: 5 conflicts"' in summary, summary
        conflicts = [
            item for item in alice.call("activity", {"limit": 50}) if item["kind"] == "conflict"
        ]
        assert len(conflicts) == 6


def test_error_state_shows_the_error_icon(x_session: tuple[str, str], tmp_path: Path) -> None:
    """Uses the stand-in daemon (the real IpcServer with in-memory handlers): the real daemon
    never reports `sync.state == "error"` on demand, so this icon cannot be reached through it."""
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    with desktop_session(x_session, home) as desktop:
        standin = desktop.start(
            [
                sys.executable,
                str(STANDIN),
                str(home / "run" / "daemon.sock"),
                str(tmp_path / "Sync"),
                str(tmp_path / "mnt"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert standin.stdout is not None
        assert standin.stdout.readline().strip() == "ready"
        start_tray(desktop)
        desktop.wait_for_icon(IconState.IN_SYNC, "12-standin-in-sync")
        desktop.call("standin.set", {"sync": {"state": "error", "error": "disk full"}})
        shot = desktop.wait_for_icon(IconState.ERROR, "13-standin-error")
        assert desktop.icon_pixels(shot, IconState.IN_SYNC) < 10


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
