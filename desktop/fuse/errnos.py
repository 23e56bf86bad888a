"""Which errno a failure becomes at the FUSE boundary (pure, so it is tested without a mount)."""

from __future__ import annotations

import errno

import trio

from desktop.core.errors import PermaCloudError
from desktop.core.namespace import InvalidPath, VersionNotFound

NAME_MAX = 255


def errno_for(error: BaseException) -> int:
    """The errno the kernel should see for `error` (EIO when nothing more precise fits)."""
    if isinstance(error, OSError) and error.errno:
        return error.errno
    if isinstance(error, VersionNotFound):
        return errno.ENOENT
    if isinstance(error, InvalidPath):
        text = str(error)
        if "longer than" in text:
            return errno.ENAMETOOLONG
        if "destination exists" in text:
            return errno.EEXIST
        return errno.EINVAL
    if isinstance(error, trio.TooSlowError):
        return errno.EIO
    if isinstance(error, PermaCloudError):
        return errno.EIO
    return errno.EIO


def check_name(name: bytes) -> str:
    """A directory entry name from the kernel as text, or the errno it deserves."""
    if len(name) > NAME_MAX:
        raise OSError(errno.ENAMETOOLONG, "name too long")
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError(errno.EINVAL, "names must be UTF-8") from None
    if text in ("", ".", "..") or "/" in text or "\x00" in text:
        raise OSError(errno.EINVAL, "bad name")
    return text
