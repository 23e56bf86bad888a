"""Which paths of a sync folder stay on this device: `.permacloudignore` plus sane defaults.

Pure: patterns in, a matcher out. Gitignore syntax (via `pathspec`), matched against paths
relative to the folder root, so one file of patterns means the same thing on every device.
"""

from __future__ import annotations

from collections.abc import Iterable

import pathspec

IGNORE_FILE = ".permacloudignore"
TEMP_PREFIX = ".permacloud-sync-"

# Temporary and lock files of editors and office programs, OS litter, and this engine's own
# temp files: syncing them would only spread half-written or machine-specific junk.
DEFAULT_PATTERNS: tuple[str, ...] = (
    f"{TEMP_PREFIX}*",
    "*.swp",
    "*.swo",
    "*.swx",
    ".*.sw?",
    "*~",
    ".#*",
    "#*#",
    "~$*",
    ".~lock.*#",
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "desktop.ini",
    ".directory",
    ".Trash-*",
    "*.part",
    "*.crdownload",
    "4913",
)


class IgnoreMatcher:
    """`ignored(rel, is_dir)` for paths relative to the folder root ("a/b.txt")."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        lines = [*DEFAULT_PATTERNS, *patterns]
        self._spec = pathspec.GitIgnoreSpec.from_lines(lines)

    @classmethod
    def from_text(cls, text: str) -> IgnoreMatcher:
        return cls(text.splitlines())

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        if rel in ("", IGNORE_FILE):
            return False
        if self._spec.match_file(rel + "/" if is_dir else rel):
            return True
        # A path inside an ignored folder is ignored too, whatever its own name.
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            if self._spec.match_file("/".join(parts[:depth]) + "/"):
                return True
        return False
