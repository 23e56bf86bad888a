"""Real programs on a real mount (one daemon, 8 real nodes): cp -r/diff -r, rsync -a, tar x, git
clone, an editor's atomic save, sqlite3, append/truncate/sparse writes and random reads."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers_daemon import Device, DeviceFactory
from helpers_nodes import NodeFactory
from mount_testkit import force_unmount, mount, start_device, wait_uploaded


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Device, Path, Path]]:
    base = tmp_path_factory.mktemp("mountwork")
    nodes = NodeFactory(base / "nodes")
    factory = DeviceFactory(base / "devices")
    mnt = base / "mnt"
    try:
        device = start_device(factory, nodes, base)
        mount(device, mnt)
        yield device, mnt, base
    finally:
        factory.stop_all()
        force_unmount(mnt)
        nodes.stop_all()


def _tree(root: Path) -> Path:
    rng = random.Random(7)
    for d in range(5):
        folder = root / f"dir{d}" / "sub"
        folder.mkdir(parents=True)
        for i in range(30):
            (folder.parent / f"small{i}.txt").write_bytes(rng.randbytes(rng.randint(0, 5000)))
        (folder / "nested.dat").write_bytes(rng.randbytes(100))
    (root / "big1.bin").write_bytes(os.urandom(9 * 1024 * 1024 + 5))
    (root / "big2.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    os.symlink("big1.bin", root / "link-to-big")
    return root


def _run(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def test_cp_tree_in_and_out_then_diff(mounted: tuple[Device, Path, Path]) -> None:
    device, mnt, base = mounted
    src = _tree(base / "tree-src")
    _run("cp", "-r", str(src), str(mnt / "tree"))
    _run("diff", "-r", str(src), str(mnt / "tree"))
    out = base / "tree-out"
    _run("cp", "-r", str(mnt / "tree"), str(out))
    _run("diff", "-r", str(src), str(out))
    wait_uploaded(device)
    names = {row["name"] for row in device.call("ls", {"path": "/tree"})}
    assert {"big1.bin", "big2.bin", "link-to-big", "dir0"} <= names
    _run("diff", "-r", str(src), str(mnt / "tree"))


def test_rsync_and_tar(mounted: tuple[Device, Path, Path]) -> None:
    device, mnt, base = mounted
    src = _tree(base / "rsync-src")
    for age, folder in enumerate(sorted(p for p in src.rglob("*") if p.is_dir())):
        os.utime(folder, ns=(1_500_000_000 * 10**9 + age * 10**9,) * 2)  # old, distinct times
    _run("rsync", "-a", f"{src}/", f"{mnt / 'rsynced'}/")
    _run("diff", "-r", str(src), str(mnt / "rsynced"))
    assert (mnt / "rsynced" / "big2.bin").stat().st_mtime_ns // 10**9 == (
        src / "big2.bin"
    ).stat().st_mtime_ns // 10**9
    # rsync -a sets folder times last: they are stored in the namespace, not only in the kernel.
    folders = [p for p in src.rglob("*") if p.is_dir()]
    assert folders
    for folder in folders:
        rel = folder.relative_to(src)
        row = next(
            r
            for r in device.call("ls", {"path": f"/rsynced/{rel.parent}".rstrip("/.")})
            if r["name"] == rel.name
        )
        assert row["mtime_ns"] // 10**9 == folder.stat().st_mtime_ns // 10**9
    archive = base / "tree.tar"
    _run("tar", "cf", str(archive), "-C", str(src), ".")
    (mnt / "untarred").mkdir()
    _run("tar", "xf", str(archive), "-C", str(mnt / "untarred"))
    _run("diff", "-r", str(src), str(mnt / "untarred"))
    wait_uploaded(device)


def test_git_clone_status_log(mounted: tuple[Device, Path, Path]) -> None:
    _device, mnt, base = mounted
    repo = base / "repo"
    repo.mkdir()
    _run("git", "init", "-q", cwd=repo)
    for i in range(3):
        (repo / f"file{i}.txt").write_text(f"content {i}\n" * 50)
        _run("git", "add", ".", cwd=repo)
        _run(
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "-m",
            f"commit {i}",
            cwd=repo,
        )
    _run("git", "clone", "-q", str(repo), str(mnt / "clone"))
    assert _run("git", "status", "--porcelain", cwd=mnt / "clone") == ""
    log = _run("git", "log", "--oneline", cwd=mnt / "clone")
    assert len(log.strip().splitlines()) == 3


def test_atomic_save_over_existing(mounted: tuple[Device, Path, Path]) -> None:
    device, mnt, _base = mounted
    target = mnt / "notes.txt"
    target.write_text("first version\n")
    wait_uploaded(device)
    tmp = mnt / ".notes.txt.swp"
    with open(tmp, "w") as handle:
        handle.write("second version\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, target)
    assert target.read_text() == "second version\n"
    assert not tmp.exists()
    wait_uploaded(device)
    names = {row["name"] for row in device.call("ls", {"path": "/"})}
    assert "notes.txt" in names and ".notes.txt.swp" not in names
    versions = device.call("versions", {"path": "/notes.txt"})
    assert len(versions) >= 2


def test_sqlite_database(mounted: tuple[Device, Path, Path]) -> None:
    _device, mnt, _base = mounted
    path = mnt / "db.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    with db:
        db.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(500)])
    db.close()
    again = sqlite3.connect(path)
    assert again.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 500
    assert again.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again.close()


def test_append_truncate_sparse_random_reads(mounted: tuple[Device, Path, Path]) -> None:
    device, mnt, base = mounted
    path = mnt / "edit.bin"
    path.write_bytes(b"a" * 1000)
    with open(path, "ab") as handle:
        handle.write(b"b" * 500)
    assert path.read_bytes() == b"a" * 1000 + b"b" * 500
    os.truncate(path, 700)
    assert path.read_bytes() == b"a" * 700
    with open(path, "r+b") as handle:
        handle.seek(5 * 1024 * 1024)
        handle.write(b"end")
    data = path.read_bytes()
    assert len(data) == 5 * 1024 * 1024 + 3
    assert data[:700] == b"a" * 700 and data[700:-3] == bytes(len(data) - 703)
    # Random reads of a large stored file, also after its cache is dropped.
    big = os.urandom(12 * 1024 * 1024 + 11)
    (mnt / "random.bin").write_bytes(big)
    wait_uploaded(device)
    rng = random.Random(3)
    with open(mnt / "random.bin", "rb") as handle:
        for _ in range(50):
            offset = rng.randrange(len(big))
            length = rng.randint(1, 200_000)
            handle.seek(offset)
            assert handle.read(length) == big[offset : offset + length]
    shutil.copyfile(mnt / "random.bin", base / "random-copy.bin")
    assert (base / "random-copy.bin").read_bytes() == big
