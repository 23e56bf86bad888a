"""Errors of the namespace layer, each naming the device and sequence number at fault.

The daemon shows them to the user and drops the offending entry; the view is never touched by an
entry that raised one of these.
"""

from desktop.core.errors import PermaCloudError


class NamespaceError(PermaCloudError):
    """Base of namespace errors."""


class InvalidPath(NamespaceError):
    """A path that cannot name a file: not absolute, empty or `..` component, NUL, too long."""


class TamperedLog(NamespaceError):
    """An entry whose bytes, signature or hash chain do not check out (or a gap in a log)."""

    def __init__(self, device: str, seq: int | None, reason: str) -> None:
        where = f"device {device}" + (f" seq {seq}" if seq is not None else "")
        super().__init__(f"tampered namespace log: {where}: {reason}")
        self.device = device
        self.seq = seq
        self.reason = reason


class UnauthorizedDevice(NamespaceError):
    """An entry or certificate from a device with no valid certificate chain to the account root."""

    def __init__(self, device: str, seq: int | None, reason: str) -> None:
        where = f"device {device}" + (f" seq {seq}" if seq is not None else "")
        super().__init__(f"unauthorized device: {where}: {reason}")
        self.device = device
        self.seq = seq
        self.reason = reason


class VersionNotFound(NamespaceError):
    """A version number or path that has no recorded version."""
