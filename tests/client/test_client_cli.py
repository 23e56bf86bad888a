"""`permacloud put/get` and `demo nodes` as subprocesses, like a user runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_testkit import random_file
from helpers_nodes import REPO_ROOT, NodeFactory, write_nodes_toml

from desktop.net.nodes_file import NodeAddress, load_nodes_file, write_nodes_file


def permacloud(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERMACLOUD_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "desktop", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("permacloud: error:") and needle in lines[0], lines[0]


def test_put_get_round_trip_and_clear_errors(node_factory: NodeFactory, tmp_path: Path) -> None:
    nodes = node_factory.start_many(4)
    nodes_file = write_nodes_toml(tmp_path / "nodes.toml", nodes)
    home = tmp_path / "home"
    source = tmp_path / "in.bin"
    data = random_file(source, 3_000_000)
    small = ["--k", "2", "--n", "4", "--happy", "3", "--spare", "0"]

    put = permacloud("put", str(source), "--nodes", str(nodes_file), *small, home=home)
    assert put.returncode == 0, put.stderr
    cap = put.stdout.strip()
    assert put.stdout == cap + "\n" and cap.startswith("pc1r:")

    out = tmp_path / "out.bin"
    get = permacloud("get", cap, str(out), "--nodes", str(nodes_file), home=home)
    assert get.returncode == 0, get.stderr
    assert get.stdout == ""
    assert out.read_bytes() == data

    bad_cap = permacloud(
        "get", cap[:-3], str(tmp_path / "x"), "--nodes", str(nodes_file), home=home
    )
    assert_one_line_error(bad_cap, "read cap")
    assert not (tmp_path / "x").exists()

    missing = permacloud("put", str(tmp_path / "nope"), "--nodes", str(nodes_file), home=home)
    assert_one_line_error(missing, "does not exist")

    no_nodes = permacloud("put", str(source), "--nodes", str(tmp_path / "none.toml"), home=home)
    assert_one_line_error(no_nodes, "nodes file")

    # Each ID pinned to another node's address: no TLS peer matches, nothing is trusted.
    entries = load_nodes_file(nodes_file)
    rotated = [
        NodeAddress(entry.node_id, nxt.host, nxt.port)
        for entry, nxt in zip(entries, entries[1:] + entries[:1], strict=True)
    ]
    wrong = tmp_path / "wrong.toml"
    write_nodes_file(wrong, rotated)
    wrong_put = permacloud("put", str(source), "--nodes", str(wrong), *small, home=home)
    assert_one_line_error(wrong_put, "wrong node identity")
    assert "need 3, reachable 0" in wrong_put.stderr
    wrong_get = permacloud("get", cap, str(out), "--nodes", str(wrong), home=home)
    assert_one_line_error(wrong_get, "wrong node identity")

    for node in nodes:
        node.kill()
    dead = permacloud("get", cap, str(tmp_path / "y"), "--nodes", str(nodes_file), home=home)
    assert_one_line_error(dead, "cannot read the file: no share is readable")
    assert not (tmp_path / "y").exists()


def test_demo_nodes_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PERMACLOUD_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    command = [sys.executable, "-m", "desktop", "demo", "nodes", "--count", "3"]
    command += ["--dir", str(tmp_path / "net")]
    ids: list[list[str]] = []
    for _ in range(2):  # restartable on the same directory, with the same identities
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
            env=env,
            text=True,
        )
        try:
            nodes_file = tmp_path / "net" / "nodes.toml"
            deadline = time.monotonic() + 60
            while not nodes_file.exists() and time.monotonic() < deadline:
                assert process.poll() is None, process.communicate()
                time.sleep(0.1)
            time.sleep(0.3)
            nodes = load_nodes_file(nodes_file)
            assert len(nodes) == 3
            ids.append(sorted(n.node_id for n in nodes))
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, stderr
        assert "permacloud put" in stdout and nodes[0].node_id in stdout
        assert "Traceback" not in stderr
        for node in nodes:  # every node process is gone: its port refuses
            with pytest.raises(OSError):
                socket.create_connection((node.host, node.port), timeout=2).close()
        nodes_file.unlink()
    assert ids[0] == ids[1]
