"""The sync planner, ignore rules and folder checks: pure functions, no I/O beyond tmp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from desktop.sync.folders import SyncFolder, SyncFolderError, check_new_folder
from desktop.sync.ignore import IgnoreMatcher
from desktop.sync.planner import (
    Action,
    BaseEntry,
    LocalEntry,
    RemoteEntry,
    local_rename_source,
    needs_hash,
    plan,
    remote_rename_source,
)

FP = {"size": 5, "mtime_ns": 100, "inode": 7, "mode": 0o644}


def local(h: str = "h1", **kw: int) -> LocalEntry:
    return LocalEntry("file", **{**FP, **kw}, content_hash=h)  # type: ignore[arg-type]


def base(h: str = "h1", cap: str = "cap1") -> BaseEntry:
    return BaseEntry("file", **FP, content_hash=h, cap=cap)  # type: ignore[arg-type]


def remote(h: str = "h1", cap: str = "cap1", mode: int = 0o644) -> RemoteEntry:
    return RemoteEntry("file", 5, 100, mode, None, h, cap)


@pytest.mark.parametrize(
    ("loc", "b", "r", "expected"),
    [
        (None, None, None, Action.NOTHING),
        (None, None, remote(), Action.PULL),
        (local(), None, None, Action.PUSH),
        (local(), None, remote(), Action.ADOPT),
        (local("h2"), None, remote(), Action.CONFLICT),
        (None, base(), None, Action.FORGET),
        (None, base(), remote(), Action.DELETE_REMOTE),
        (None, base(), remote("h2", "cap2"), Action.PULL),
        (local(), base(), None, Action.DELETE_LOCAL),
        (local("h2", mtime_ns=200), base(), None, Action.PUSH),
        (local(), base(), remote(), Action.NOTHING),
        (local("h2", mtime_ns=200), base(), remote(), Action.PUSH),
        (local(), base(), remote("h2", "cap2"), Action.PULL),
        (local("h2", mtime_ns=200), base(), remote("h2", "cap2"), Action.ADOPT),
        (local("h2", mtime_ns=200), base(), remote("h3", "cap3"), Action.CONFLICT),
        (local(mtime_ns=999), base(), remote(), Action.ADOPT),  # touched, same bytes
        (local(mode=0o600), base(), remote(), Action.PUSH),  # chmod travels
        (local(), base(), remote(mode=0o755), Action.PULL),
        (local(), base(), remote(cap="other-cap"), Action.ADOPT),
    ],
)
def test_three_way_table(
    loc: LocalEntry | None, b: BaseEntry | None, r: RemoteEntry | None, expected: Action
) -> None:
    assert plan(loc, b, r) is expected


def test_conflict_copies_never_conflict_again() -> None:
    changed = local("h2", mtime_ns=200)
    assert plan(changed, base(), remote("h3", "cap3"), conflict_copy=True) is Action.PUSH
    assert plan(changed, None, remote("h3", "cap3"), conflict_copy=True) is Action.PUSH


def test_directories_and_links() -> None:
    folder = LocalEntry("dir", inode=3, mode=0o755)
    assert plan(folder, None, RemoteEntry("dir")) is Action.ADOPT
    assert plan(folder, BaseEntry("dir"), None) is Action.DELETE_LOCAL
    assert plan(folder, BaseEntry("dir"), remote()) is Action.CONFLICT  # never drop a folder
    link = LocalEntry("link", target="a")
    assert plan(link, BaseEntry("link", target="a"), RemoteEntry("link", target="b")) is (
        Action.PULL
    )
    assert plan(link, BaseEntry("link", target="b"), RemoteEntry("link", target="b")) is (
        Action.PUSH
    )


def test_hashing_is_needed_only_when_the_fingerprint_moved() -> None:
    unhashed = LocalEntry("file", **FP)  # type: ignore[arg-type]
    assert not needs_hash(unhashed, base())
    assert needs_hash(LocalEntry("file", 6, 100, 7, 0o644), base())
    assert needs_hash(unhashed, None)
    with pytest.raises(ValueError):
        plan(unhashed, None, None)
    assert plan(unhashed, base(), remote()) is Action.NOTHING


def test_rename_sources() -> None:
    moved = local()
    assert local_rename_source(moved, base(), None, remote())
    assert not local_rename_source(moved, base(), local(), remote())  # still there
    assert not local_rename_source(moved, base(), None, remote("h9", "cap9"))  # changed remotely
    new_remote = remote()
    assert remote_rename_source(new_remote, base(), local(), None)
    assert not remote_rename_source(new_remote, base(), local(), remote())  # not gone remotely
    assert not remote_rename_source(new_remote, base(), local("h2", mtime_ns=5), None)


states = st.sampled_from(["h1", "h2", "h3", None])


@given(states, states, states)
def test_no_plan_loses_an_unpushed_local_change(
    lh: str | None, bh: str | None, rh: str | None
) -> None:
    """Whatever the three states, a local version that differs from the base is pushed, kept
    (adopted) or moved aside (conflict): never deleted and never overwritten by a pull."""
    loc = None if lh is None else local(lh, mtime_ns=100 if lh == bh else 200)
    b = None if bh is None else base(bh)
    r = None if rh is None else remote(rh, f"cap-{rh}")
    action = plan(loc, b, r)
    local_changed = loc is not None and (b is None or lh != bh)
    if local_changed:
        assert action in (Action.PUSH, Action.ADOPT, Action.CONFLICT)
    if loc is not None and r is not None and lh == rh:
        assert action in (Action.ADOPT, Action.NOTHING)  # equal content never conflicts


def test_default_and_custom_ignores() -> None:
    matcher = IgnoreMatcher.from_text("build/\n*.log\n!keep.log\n")
    for rel in [
        ".DS_Store",
        "a/Thumbs.db",
        "~$report.docx",
        "docs/.~lock.sheet.ods#",
        "x.swp",
        "notes~",
        ".permacloud-sync-0abc",
        "debug.log",
        "build/out.o",
    ]:
        assert matcher.ignored(rel), rel
    assert matcher.ignored("build", is_dir=True)
    for rel in ["report.docx", "keep.log", "builder/x", ".permacloudignore", "photo.jpg"]:
        assert not matcher.ignored(rel), rel


def test_new_folder_checks(tmp_path: Path) -> None:
    synced = tmp_path / "synced"
    (synced / "inner").mkdir(parents=True)
    existing = [SyncFolder(synced, "/Sync")]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert check_new_folder(fresh, "/Photos", existing, None) == SyncFolder(fresh, "/Photos")
    bad = [
        (tmp_path / "missing", "/X", None, "does not exist"),
        (synced / "inner", "/X", None, "overlaps the sync folder"),
        (tmp_path, "/X", None, "overlaps the sync folder"),
        (fresh, "/Sync/sub", None, "overlaps /Sync"),
        (fresh, "/X/", None, "not canonical"),
        (fresh, "/", None, "whole namespace"),
        (fresh, "/X", tmp_path, "overlaps the PermaCloud mount"),
    ]
    for folder, remote_path, mountpoint, message in bad:
        with pytest.raises(SyncFolderError, match=message):
            check_new_folder(folder, remote_path, existing, mountpoint)
