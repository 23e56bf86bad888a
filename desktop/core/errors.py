"""Errors whose message is fit to show a user on one line.

Every layer raises subclasses of `PermaCloudError` for conditions a user can cause or fix; the CLI
prints `str(error)` and exits non-zero instead of a traceback.
"""


class PermaCloudError(Exception):
    """Base of all user-facing errors; the message is one line, no traceback is shown."""

    exit_code = 1


class ParamsError(PermaCloudError):
    """Encoding parameters (k, n, segment size) are out of range or inconsistent."""


class CapError(PermaCloudError):
    """A capability string is malformed, has a typo, or is of an unknown version."""


class ShareCorrupt(PermaCloudError):
    """One share failed a check; the caller can drop it and take another share instead."""

    def __init__(self, shnum: int, reason: str) -> None:
        super().__init__(f"share {shnum} is corrupt: {reason}")
        self.shnum = shnum
        self.reason = reason


class NotEnoughShares(PermaCloudError):
    """Fewer than k good shares are available, so the data cannot be rebuilt."""


class FileCorrupt(PermaCloudError):
    """Every share checked out but the file itself does not decrypt: it was encoded wrongly."""


class InputSizeError(PermaCloudError):
    """The plaintext did not have the size announced up front (the file changed while read)."""
