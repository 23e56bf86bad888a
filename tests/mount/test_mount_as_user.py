"""The mount run by a normal user (not root): init, daemon, mount, write, upload, unmount.

Needs root (to switch to the `nobody` user with setpriv) and a /dev/fuse that a normal user may
open (mode 0666, the udev default on desktops). libfuse then mounts through the setuid
`fusermount3`. Where /dev/fuse is 0600 (as on this build machine) no normal user can mount at
all, and the test says so instead of running.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_daemon import REPO_ROOT, cli_env
from helpers_nodes import NodeFactory, write_nodes_toml
from mount_testkit import MOUNT_ENV, force_unmount, is_mounted, wait_for

from desktop.daemon.ipc_client import IpcClient

NOBODY = 65534


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "switching to another user needs root"
    if shutil.which("setpriv") is None or shutil.which("fusermount3") is None:
        return "setpriv and fusermount3 are needed"
    mode = os.stat("/dev/fuse").st_mode
    if not (mode & stat.S_IROTH and mode & stat.S_IWOTH):
        return f"/dev/fuse is {stat.S_IMODE(mode):04o}: a normal user cannot mount (needs 0666)"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


def as_nobody(*args: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *args]


@pytest.fixture
def user_home() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="pc-user-", dir="/tmp"))
    os.chmod(base, 0o755)
    os.chown(base, NOBODY, NOBODY)
    try:
        yield base
    finally:
        force_unmount(base / "mnt")
        shutil.rmtree(base, ignore_errors=True)


def test_a_normal_user_mounts_writes_and_unmounts(
    node_factory: NodeFactory, user_home: Path
) -> None:
    nodes_file = write_nodes_toml(user_home / "nodes.toml", node_factory.start_many(8))
    os.chmod(nodes_file, 0o644)
    home = user_home / "home"
    env = cli_env(home) | MOUNT_ENV | {"HOME": str(user_home)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            as_nobody(sys.executable, "-m", "desktop", *args),
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )

    cli("init", "--name", "user", "--nodes", str(nodes_file))
    log = open(user_home / "daemon.log", "wb")  # noqa: SIM115 - closed in finally
    daemon = subprocess.Popen(
        as_nobody(sys.executable, "-m", "desktop", "-v", "daemon"),
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    mnt = user_home / "mnt"
    try:
        wait_for(
            lambda: "daemon ready" in (user_home / "daemon.log").read_text(errors="replace"),
            what="daemon start",
        )
        cli("mount", str(mnt))
        assert is_mounted(mnt)
        # Only the mounting user may enter the mount (no allow_other), not even root.
        with pytest.raises(PermissionError):
            os.stat(mnt)
        owner = subprocess.run(
            as_nobody("stat", "-c", "%u", str(mnt)), capture_output=True, text=True, check=True
        )
        assert owner.stdout.strip() == str(NOBODY)
        payload = os.urandom(300_000)
        subprocess.run(
            as_nobody("sh", "-c", f"cat > {mnt}/from-user.bin"), input=payload, check=True
        )
        back = subprocess.run(
            as_nobody("cat", f"{mnt}/from-user.bin"), capture_output=True, check=True
        )
        assert back.stdout == payload
        socket_path = home / "run" / "daemon.sock"

        def uploaded() -> bool:
            with IpcClient(socket_path, timeout=30) as client:
                return bool(client.call("mount.status", {})["pending_files"] == 0)

        wait_for(uploaded, timeout=60, what="upload")
        result = cli("unmount")
        assert "pending" in result.stdout or result.returncode == 0
        assert not is_mounted(mnt)
        with IpcClient(socket_path, timeout=30) as client:
            rows = client.call("ls", {"path": "/"})
        assert [r["size"] for r in rows if r["name"] == "from-user.bin"] == [len(payload)]
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        deadline = time.monotonic() + 10
        while is_mounted(mnt) and time.monotonic() < deadline:
            time.sleep(0.2)
