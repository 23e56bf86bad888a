"""TLS contexts: TLS 1.3 with the node's self-signed Ed25519 certificate; clients pin by node ID.

The client context verifies nothing by CA on purpose: after the handshake the caller compares the
node ID derived from the peer certificate's key with the one it expected (`peer_node_id`).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from desktop.net.identity import DeviceKey, node_id_from_certificate


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_path, key_path)
    return context


def server_context_for_key(key: DeviceKey, scratch_dir: Path) -> tuple[ssl.SSLContext, bytes]:
    """A server context for a key kept elsewhere (the OS keyring), and its certificate's DER.

    `ssl` only loads from files, so the PEM lives in a private scratch file just for the load.
    """
    scratch_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    certificate = key.certificate_pem()
    fd, name = tempfile.mkstemp(dir=scratch_dir, suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.private_pem() + certificate)
        return server_context(Path(name), Path(name)), pem_to_der(certificate)
    finally:
        os.unlink(name)


def pem_to_der(certificate_pem: bytes) -> bytes:
    """The DER form of a certificate: what a peer sees in the handshake."""
    return x509.load_pem_x509_certificate(certificate_pem).public_bytes(serialization.Encoding.DER)


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
