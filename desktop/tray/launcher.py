"""Starting the daemon and opening folders from the tray, without tying the tray to either.

The systemd user unit is preferred when installed so the daemon is supervised and restarts on
failure; otherwise the daemon is spawned in its own session so quitting the tray leaves it alive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from desktop.core.errors import PermaCloudError
from desktop.daemon.paths import HOME_ENV

UNIT = "permacloud.service"


class LaunchError(PermaCloudError):
    """The daemon could not be started, or a folder could not be opened."""


def systemd_unit_installed() -> bool:
    """True when the user's systemd manager knows `permacloud.service`."""
    if shutil.which("systemctl") is None:
        return False
    try:
        result = subprocess.run(
            ["systemctl", "--user", "cat", UNIT],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def start_command(use_systemd: bool) -> list[str]:
    """The command that starts the daemon: through systemd, or the same install as this tray."""
    if use_systemd:
        return ["systemctl", "--user", "start", UNIT]
    return [sys.executable, "-m", "desktop", "daemon"]


def spawn_detached(command: list[str]) -> None:
    """Run `command` in its own session, detached from the tray's terminal and lifetime."""
    try:
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        raise LaunchError(f"cannot run {command[0]}: {error.strerror or error}") from None


def start_daemon() -> str:
    """Start the daemon; returns how, for the log.

    With `PERMACLOUD_HOME` set the daemon is spawned directly: the systemd unit would not see
    that variable and would start the daemon of another home, not the one this tray watches.
    """
    if not os.environ.get(HOME_ENV) and systemd_unit_installed():
        result = subprocess.run(
            start_command(True), capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode == 0:
            return f"started {UNIT}"
        detail = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise LaunchError(f"systemctl --user start {UNIT} failed: {detail}")
    spawn_detached(start_command(False))
    return "spawned the daemon"


def open_path(path: str) -> None:
    """Open a folder in the user's file manager."""
    if not os.path.isdir(path):
        raise LaunchError(f"folder does not exist: {path}")
    opener = shutil.which("xdg-open")
    if opener is None:
        raise LaunchError("xdg-open is not installed, cannot open folders")
    spawn_detached([opener, path])
