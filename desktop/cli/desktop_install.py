"""`permacloud install-desktop` / `uninstall-desktop`: systemd user unit, autostart and launcher.

Files go to the XDG places of the current user (never system-wide) from the templates in
`packaging/`, with the path of THIS installation's executable filled in, so a venv or /opt
install each point at themselves. With PERMACLOUD_HOME set, the unit and entries pass it on, so a
second device on one machine keeps using its own state.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from desktop.core.errors import PermaCloudError
from desktop.daemon.paths import HOME_ENV

UNIT_NAME = "permacloud.service"
ICON_SIZES = (32, 64, 128)


class DesktopInstallError(PermaCloudError):
    """The desktop files could not be installed or removed."""


@dataclass(frozen=True)
class Places:
    unit_dir: Path
    autostart_dir: Path
    applications_dir: Path
    icons_dir: Path

    @property
    def unit(self) -> Path:
        return self.unit_dir / UNIT_NAME

    @property
    def wants_link(self) -> Path:
        return self.unit_dir / "default.target.wants" / UNIT_NAME

    @property
    def autostart(self) -> Path:
        return self.autostart_dir / "permacloud-tray.desktop"

    @property
    def launcher(self) -> Path:
        return self.applications_dir / "permacloud.desktop"

    def icons(self) -> list[Path]:
        return [self.icons_dir / f"{s}x{s}" / "apps" / "permacloud.png" for s in ICON_SIZES]


def xdg_places(environ: dict[str, str] | None = None) -> Places:
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    return Places(
        config / "systemd" / "user",
        config / "autostart",
        data / "applications",
        data / "icons" / "hicolor",
    )


def template_dir() -> Path:
    """Where the templates live: installed data files, or the source checkout."""
    candidates = [
        Path(sys.prefix) / "share" / "permacloud" / "packaging",
        Path(__file__).resolve().parents[2] / "packaging",
    ]
    for candidate in candidates:
        if (candidate / "systemd" / "permacloud.service.in").is_file():
            return candidate
    raise DesktopInstallError(
        "packaging templates not found (looked in " + ", ".join(map(str, candidates)) + ")"
    )


def this_command() -> list[str]:
    """The command that runs this very installation of permacloud."""
    script = Path(sys.prefix) / "bin" / "permacloud"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("permacloud")
    if found:
        return [str(Path(found).resolve())]
    return [sys.executable, "-m", "desktop"]


def _exec_quote(arg: str) -> str:
    """Quote one argument so it reads the same in a unit's ExecStart and a .desktop Exec line.

    The two formats escape `$`, `%`, quotes and backslashes differently; such paths are refused
    rather than risk a unit that runs something else.
    """
    bad = sorted(set(arg) & set('$%"\\`\n'))
    if bad:
        raise DesktopInstallError(f"cannot put {arg!r} in a unit or .desktop file (contains {bad})")
    if arg and all(c.isalnum() or c in "/._-+=:," for c in arg):
        return arg
    return f'"{arg}"'


def render(template: str, command: list[str], permacloud_home: str | None, *, unit: bool) -> str:
    """Fill a template: the unit gets an Environment= line, .desktop files an `env` prefix."""
    environment = ""
    prefix: list[str] = []
    if permacloud_home and unit:
        environment = "Environment=" + _exec_quote(f"{HOME_ENV}={permacloud_home}") + "\n"
    elif permacloud_home:
        prefix = ["env", f"{HOME_ENV}={permacloud_home}"]
    exec_line = " ".join(_exec_quote(arg) for arg in prefix + command)
    text = template.replace("@EXEC@", exec_line).replace("@ENVIRONMENT@\n", environment)
    if "@EXEC@" in text or "@ENVIRONMENT@" in text:
        raise DesktopInstallError("a packaging template has unfilled placeholders")
    return text


def _user_manager_reachable() -> bool:
    if shutil.which("systemctl") is None:
        return False
    try:
        result = subprocess.run(
            ["systemctl", "--user", "show-environment"], capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _reload(console: Console, enabled: bool) -> None:
    if not _user_manager_reachable():
        console.print(
            "[yellow]No systemd user manager is reachable:[/] run "
            "'systemctl --user daemon-reload' in your desktop session."
        )
        return
    subprocess.run(["systemctl", "--user", "daemon-reload"], check=False, timeout=30)
    console.print("Reloaded the systemd user manager.")
    if enabled:
        console.print(f"Start it now with 'systemctl --user start {UNIT_NAME}'.")


def _write(path: Path, content: bytes, console: Console) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)
    console.print(f"  [green]wrote[/] {path}")


def install(
    places: Places, command: list[str], *, enable: bool, reload: bool, console: Console
) -> list[Path]:
    from io import BytesIO

    from desktop.tray.icons import draw_icon
    from desktop.tray.state import IconState

    templates = template_dir()
    home = os.environ.get(HOME_ENV)
    permacloud_home = str(Path(home).expanduser().resolve()) if home else None
    console.print("[bold]Installing PermaCloud desktop integration[/]")
    outputs = {
        places.unit: render(
            (templates / "systemd" / "permacloud.service.in").read_text(),
            command,
            permacloud_home,
            unit=True,
        ),
        places.autostart: render(
            (templates / "desktop" / "permacloud-tray.desktop.in").read_text(),
            command,
            permacloud_home,
            unit=False,
        ),
        places.launcher: render(
            (templates / "desktop" / "permacloud.desktop.in").read_text(),
            command,
            permacloud_home,
            unit=False,
        ),
    }
    written: list[Path] = []
    for path, text in outputs.items():
        _write(path, text.encode(), console)
        written.append(path)
    for size, path in zip(ICON_SIZES, places.icons(), strict=True):
        buffer = BytesIO()
        draw_icon(IconState.IN_SYNC, 0, size).save(buffer, "PNG")
        _write(path, buffer.getvalue(), console)
        written.append(path)
    if enable:
        places.wants_link.parent.mkdir(parents=True, exist_ok=True)
        if places.wants_link.is_symlink() or places.wants_link.exists():
            places.wants_link.unlink()
        places.wants_link.symlink_to(places.unit)
        console.print(f"  [green]enabled[/] {UNIT_NAME} (linked from {places.wants_link.parent})")
        written.append(places.wants_link)
    if permacloud_home:
        console.print(f"  {HOME_ENV}={permacloud_home} is passed to the daemon and the tray.")
    if reload:
        _reload(console, enable)
    return written


def uninstall(places: Places, *, reload: bool, console: Console) -> list[Path]:
    console.print("[bold]Removing PermaCloud desktop integration[/]")
    removed: list[Path] = []
    for path in [
        places.wants_link,
        places.unit,
        places.autostart,
        places.launcher,
        *places.icons(),
    ]:
        if path.is_symlink() or path.exists():
            path.unlink()
            console.print(f"  [red]removed[/] {path}")
            removed.append(path)
    if not removed:
        console.print("  nothing was installed")
    if reload:
        _reload(console, False)
    return removed


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inst = subparsers.add_parser(
        "install-desktop", help="install the systemd user unit, tray autostart and launcher"
    )
    inst.add_argument("--enable", action="store_true", help="start the daemon at every login")
    inst.add_argument(
        "--no-reload", action="store_true", help="do not run systemctl --user daemon-reload"
    )
    inst.set_defaults(func=install_command)
    uninst = subparsers.add_parser(
        "uninstall-desktop", help="remove what install-desktop installed"
    )
    uninst.add_argument(
        "--no-reload", action="store_true", help="do not run systemctl --user daemon-reload"
    )
    uninst.set_defaults(func=uninstall_command)


def install_command(args: argparse.Namespace) -> int:
    console = Console()
    command = this_command()
    console.print(f"Executable: {shlex.join(command)}")
    install(xdg_places(), command, enable=args.enable, reload=not args.no_reload, console=console)
    return 0


def uninstall_command(args: argparse.Namespace) -> int:
    uninstall(xdg_places(), reload=not args.no_reload, console=Console())
    return 0
