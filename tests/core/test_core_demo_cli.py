"""`permacloud demo core` end to end in a real subprocess with real share files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "desktop", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_demo_core_recovers_and_names_the_corrupt_share(tmp_path: Path) -> None:
    source = tmp_path / "input.bin"
    source.write_bytes(os.urandom(3 * 65536 + 123))
    result = run_cli("demo", "core", str(source), "--k", "2", "--n", "5", "--segment-size", "65536")
    assert result.returncode == 0, result.stderr
    assert "share 0: block 2 fails its hash check" in result.stdout
    assert "bytes match" in result.stdout and "yes" in result.stdout
    assert "1, 2" in result.stdout  # destroyed shares


def test_demo_core_bad_params_is_one_line_error(tmp_path: Path) -> None:
    result = run_cli("demo", "core", "--k", "5", "--n", "3")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "k <= n" in result.stderr
    missing = run_cli("demo", "core", str(tmp_path / "missing"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
