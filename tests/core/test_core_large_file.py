"""A 2 GiB file through the real pipeline in a subprocess, with peak RSS under 200 MiB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("large_file_child.py")
ROOT = Path(__file__).resolve().parents[2]
SIZE = 2 * 1024**3
RSS_LIMIT_KIB = 200 * 1024


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_gib_round_trip_in_bounded_memory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(CHILD), str(SIZE), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["output_size"] == SIZE
    assert report["output_hash"] == report["input_hash"]
    assert report["used_shares"] == [0, 1, 3]
    assert report["corrupt_shares"] == {}
    assert report["disk_share_size"] == report["share_size"]
    assert report["peak_rss_kib"] < RSS_LIMIT_KIB, f"peak RSS {report['peak_rss_kib']} KiB"
