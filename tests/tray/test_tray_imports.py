"""The tray process must not load the engine: only the daemon's IPC client, protocol and paths.

Checked in a fresh interpreter so modules imported by other tests cannot hide a violation.
`desktop.core.errors` is allowed: the IPC client's exceptions derive from `PermaCloudError`.
"""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN_PREFIXES = (
    "desktop.agent",
    "desktop.net",
    "desktop.client",
    "desktop.fuse",
    "desktop.sync",
)
ALLOWED_CORE = {"desktop.core", "desktop.core.errors"}
ALLOWED_DAEMON = {
    "desktop.daemon",
    "desktop.daemon.ipc_client",
    "desktop.daemon.ipc_protocol",
    "desktop.daemon.paths",
}

PROBE = """
import json, sys
import desktop.tray.app, desktop.tray.__main__, desktop.cli.tray
print(json.dumps(sorted(m for m in sys.modules if m.startswith("desktop"))))
"""


def test_tray_imports_no_engine_module() -> None:
    env_free = {"PATH": "/usr/bin:/bin"}  # no DISPLAY: importing must not need one either
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env_free, check=True
    )
    loaded = json.loads(result.stdout)
    assert "desktop.tray.app" in loaded
    bad = [m for m in loaded if m.startswith(FORBIDDEN_PREFIXES)]
    bad += [m for m in loaded if m.startswith("desktop.core") and m not in ALLOWED_CORE]
    bad += [m for m in loaded if m.startswith("desktop.daemon") and m not in ALLOWED_DAEMON]
    assert bad == [], f"the tray imports engine modules: {bad}"
    assert "pystray" not in result.stdout  # loaded lazily in run(), it needs a display
