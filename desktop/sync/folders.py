"""The configured sync folders of this device, kept in `sync.toml` in the config folder.

Checks for a new folder are here too, so the daemon and its tests share one set of rules: a
real folder, not inside (or around) another sync folder or the mount, a canonical namespace
path that does not overlap another folder's.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from desktop.core.errors import PermaCloudError
from desktop.core.namespace import InvalidPath, normalize_path
from desktop.core.namespace.paths import ROOT, is_under

DEFAULT_REMOTE = "/Sync"
DEFAULT_LOCAL = "~/PermaCloudSync"


class SyncFolderError(PermaCloudError):
    """A sync folder that cannot be added or removed as asked."""


@dataclass(frozen=True)
class SyncFolder:
    local: Path
    remote: str

    @property
    def id(self) -> str:
        """Stable name for the folder's state database."""
        return hashlib.sha256(os.fsencode(self.local)).hexdigest()[:16]


def load_folders(path: Path) -> list[SyncFolder]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (tomllib.TOMLDecodeError, OSError) as error:
        raise SyncFolderError(f"cannot read {path}: {error}") from None
    folders = []
    for item in data.get("folder", []):
        try:
            folders.append(SyncFolder(Path(str(item["local"])), str(item["remote"])))
        except (KeyError, TypeError):
            raise SyncFolderError(f"{path}: every [[folder]] needs 'local' and 'remote'") from None
    return folders


def save_folders(path: Path, folders: list[SyncFolder]) -> None:
    """Write atomically (temp + rename): a crash never leaves half a config."""
    text = tomli_w.dumps({"folder": [{"local": str(f.local), "remote": f.remote} for f in folders]})
    temp = path.with_suffix(".toml.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def _inside(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def check_new_folder(
    local: Path, remote: str, existing: list[SyncFolder], mountpoint: Path | None
) -> SyncFolder:
    """The folder to add, or SyncFolderError saying in one line what is wrong."""
    if not local.is_absolute():
        raise SyncFolderError(f"the local folder must be an absolute path: {local}")
    if not local.exists():
        raise SyncFolderError(f"{local} does not exist")
    if not local.is_dir():
        raise SyncFolderError(f"{local} is not a folder")
    local = local.resolve()
    try:
        canonical = normalize_path(remote)
    except InvalidPath as error:
        raise SyncFolderError(f"--as {remote!r}: {error}") from None
    if canonical != remote:
        raise SyncFolderError(f"--as {remote!r} is not canonical; use {canonical!r}")
    if remote == ROOT:
        raise SyncFolderError("--as / would sync the whole namespace; pick a folder like /Sync")
    if mountpoint is not None and (
        _inside(local, mountpoint.resolve()) or _inside(mountpoint.resolve(), local)
    ):
        raise SyncFolderError(f"{local} overlaps the PermaCloud mount at {mountpoint}")
    for folder in existing:
        if folder.local == local:
            raise SyncFolderError(f"{local} is already synced (with {folder.remote})")
        if _inside(local, folder.local) or _inside(folder.local, local):
            raise SyncFolderError(f"{local} overlaps the sync folder {folder.local}")
        if (
            remote == folder.remote
            or is_under(remote, folder.remote)
            or is_under(folder.remote, remote)
        ):
            raise SyncFolderError(f"{remote} overlaps {folder.remote}, synced with {folder.local}")
    return SyncFolder(local, remote)
