"""Errors a node client raises; each maps one way a node can fail us, so callers can react.

The client engine places a share elsewhere on `QuotaExceeded` or `NodeUnavailable`, and never
trusts a node that raised `WrongNodeIdentity`.
"""

from __future__ import annotations

from desktop.core.errors import PermaCloudError


class NodeError(PermaCloudError):
    """Base of everything that went wrong talking to one node."""


class NodeUnavailable(NodeError):
    """The node could not be reached, or did not answer in time."""


class WrongNodeIdentity(NodeError):
    """The TLS peer is not the node we pinned."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"wrong node identity: expected {expected}, got {got}")
        self.expected = expected
        self.got = got


class ProtocolError(NodeError):
    """The node answered with something that is not valid protocol."""


class NodeRefused(NodeError):
    """The node answered with an error status; `reason` is its JSON `error` text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"node refused the request ({status}): {reason}")
        self.status = status
        self.reason = reason


class QuotaExceeded(NodeRefused):
    """507: the node has no room for the declared share size."""


class ShareNotFound(NodeRefused):
    """404: the node has no such share (or storage index)."""


class AuthError(NodeRefused):
    """401/403: the signature, its time or nonce, its target, or share ownership was rejected."""


class RateLimited(NodeRefused):
    """429: too many requests from us; retry later."""


def refused_error(status: int, reason: str) -> NodeRefused:
    """The most specific `NodeRefused` subclass for an HTTP status."""
    if status == 507:
        return QuotaExceeded(status, reason)
    if status == 404:
        return ShareNotFound(status, reason)
    if status in (401, 403):
        return AuthError(status, reason)
    if status == 429:
        return RateLimited(status, reason)
    return NodeRefused(status, reason)
