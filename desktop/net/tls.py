"""TLS contexts: TLS 1.3 with the node's self-signed Ed25519 certificate; clients pin by node ID.

The client context verifies nothing by CA on purpose: after the handshake the caller compares the
node ID derived from the peer certificate's key with the one it expected (`peer_node_id`).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trio

from desktop.net.identity import node_id_from_certificate


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_path, key_path)
    return context


def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def peer_node_id(stream: trio.SSLStream[trio.SocketStream]) -> str:
    """The node ID proved by the peer's certificate (the handshake must be done)."""
    der = stream.getpeercert(binary_form=True)
    if not der:
        return "(no certificate)"
    return node_id_from_certificate(der)
