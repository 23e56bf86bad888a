"""Where this device keeps config, data, cache and its IPC socket.

`appdirs` gives the platform's places; `PERMACLOUD_HOME` puts all of them under one folder so
tests and second devices on one machine never touch the user's real state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import appdirs

APP_NAME = "permacloud"
HOME_ENV = "PERMACLOUD_HOME"


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    runtime_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / "daemon.sock"

    def ensure(self) -> AppPaths:
        """Create the folders, private to this user (0700)."""
        for folder in (self.config_dir, self.data_dir, self.cache_dir, self.runtime_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self


def _runtime_base() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / APP_NAME
    return Path(appdirs.user_cache_dir(APP_NAME)) / "run"


def app_paths(environ: dict[str, str] | None = None) -> AppPaths:
    env = os.environ if environ is None else environ
    home = env.get(HOME_ENV)
    if home:
        base = Path(home).expanduser().resolve()
        return AppPaths(base / "config", base / "data", base / "cache", base / "run")
    return AppPaths(
        Path(appdirs.user_config_dir(APP_NAME)),
        Path(appdirs.user_data_dir(APP_NAME)),
        Path(appdirs.user_cache_dir(APP_NAME)),
        _runtime_base(),
    )
