"""`permacloud install-desktop` / `uninstall-desktop` with HOME and the XDG dirs in tmp_path,
checked by the real validators (`systemd-analyze verify`, `desktop-file-validate`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop.cli.desktop_install import DesktopInstallError, render, xdg_places

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "desktop", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or shutil.which("desktop-file-validate") is None,
    reason="needs systemd-analyze and desktop-file-validate",
)
def test_install_writes_valid_files_and_uninstall_removes_them(tmp_path: Path) -> None:
    pc_home = tmp_path / "device home"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PERMACLOUD_HOME": str(pc_home),
    }
    result = _run(["install-desktop", "--enable", "--no-reload"], env)
    assert result.returncode == 0, result.stderr
    places = xdg_places(env)
    assert places.unit == tmp_path / "cfg" / "systemd" / "user" / "permacloud.service"
    assert places.autostart == tmp_path / "cfg" / "autostart" / "permacloud-tray.desktop"
    assert places.launcher == tmp_path / "data" / "applications" / "permacloud.desktop"
    for path in (places.unit, places.autostart, places.launcher, *places.icons()):
        assert path.is_file(), path
        assert str(path) in result.stdout.replace("\n", "")
    assert places.wants_link.resolve() == places.unit

    unit = places.unit.read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    executable = exec_start.removeprefix("ExecStart=").split()[0]
    assert os.access(executable, os.X_OK) and exec_start.endswith(" daemon")
    assert f'Environment="PERMACLOUD_HOME={pc_home}"' in unit
    assert "KillMode=mixed" in unit and "Restart=on-failure" in unit
    assert f'Exec=env "PERMACLOUD_HOME={pc_home}" {executable} tray' in places.autostart.read_text()

    verify = subprocess.run(
        ["systemd-analyze", "verify", str(places.unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    validate = subprocess.run(
        ["desktop-file-validate", str(places.autostart), str(places.launcher)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert validate.returncode == 0 and validate.stdout == "", validate.stdout

    # The installed command really runs this installation.
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False)
    assert version.stdout.startswith("permacloud ")

    result = _run(["uninstall-desktop", "--no-reload"], env)
    assert result.returncode == 0, result.stderr
    for path in (
        places.wants_link,
        places.unit,
        places.autostart,
        places.launcher,
        *places.icons(),
    ):
        assert not path.exists() and not path.is_symlink(), path
    again = _run(["uninstall-desktop", "--no-reload"], env)
    assert again.returncode == 0 and "nothing was installed" in again.stdout


def test_without_permacloud_home_no_environment_line() -> None:
    text = render(
        "ExecStart=@EXEC@ daemon\n@ENVIRONMENT@\nRestart=on-failure\n",
        ["/opt/p c/bin/permacloud"],
        None,
        unit=True,
    )
    assert text == 'ExecStart="/opt/p c/bin/permacloud" daemon\nRestart=on-failure\n'


def test_paths_that_cannot_be_quoted_safely_are_refused() -> None:
    with pytest.raises(DesktopInstallError, match="cannot put"):
        render("Exec=@EXEC@ tray\n", ["/home/u/$HOME/bin/permacloud"], None, unit=False)
