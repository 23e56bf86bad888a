"""Errors whose message is fit to show a user on one line.

Every layer raises subclasses of `PermaCloudError` for conditions a user can cause or fix; the CLI
prints `str(error)` and exits non-zero instead of a traceback.
"""


class PermaCloudError(Exception):
    """Base of all user-facing errors; the message is one line, no traceback is shown."""

    exit_code = 1
