"""A TLS client stream that decrypts everything one socket read brought in, in one call.

trio's `SSLStream` hands back at most one TLS record (16 KiB) per `receive_some` and reads the
socket 64 KiB at a time: a 2.7 MiB share range cost ~170 trips through the scheduler, TLS and
h11, and the mount's cold reads were bound by the daemon's CPU. This stream reads up to
`receive_size` bytes of ciphertext per syscall and decrypts every whole record in them into one
buffer. It serves one request at a time (a `NodeClient` connection is never shared by two
tasks), which keeps it small: no send/receive interleaving, no renegotiation (TLS 1.3 only).
"""

from __future__ import annotations

import ssl
from typing import cast

import trio

RECEIVE_SIZE = 256 * 1024
_SEND_PIECE = 256 * 1024


class ClientTLSStream(trio.abc.Stream):
    def __init__(
        self,
        transport: trio.SocketStream,
        context: ssl.SSLContext,
        *,
        receive_size: int = RECEIVE_SIZE,
    ) -> None:
        self.transport = transport
        self.receive_size = receive_size
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=False)
        # Reused for every read: a fresh 256 KiB buffer per call is an mmap, page faults and
        # a memset each time (above glibc's mmap threshold), dearer than the data it carries.
        self._cipher = bytearray(receive_size)
        self._plain = bytearray(receive_size)

    async def do_handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except ssl.SSLError as error:
                raise trio.BrokenResourceError(f"TLS handshake failed: {error}") from error
        await self._flush()

    def getpeercert(self, binary_form: bool = True) -> bytes | None:
        return self._ssl.getpeercert(binary_form=True)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for start in range(0, len(view), _SEND_PIECE):
            try:
                self._ssl.write(view[start : start + _SEND_PIECE])
            except ssl.SSLError as error:
                raise trio.BrokenResourceError(f"TLS error: {error}") from error
            await self._flush()
        if not view:
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Up to `max_bytes` of plaintext: all the records already in, or the next ones.
        b"" at the end of the stream (a close without close_notify counts as the end, like
        trio's https_compatible mode; HTTP framing catches truncation)."""
        size = min(max_bytes or self.receive_size, self.receive_size)
        view = memoryview(self._plain)
        got = 0
        try:
            while True:
                try:
                    got = _read_into(self._ssl, size, view)
                    break
                except ssl.SSLWantReadError:
                    if await self._fill():
                        continue
                    return b""
            while got < size:  # whatever else was decrypted or buffered: no more syscalls
                try:
                    more = _read_into(self._ssl, size - got, view[got:])
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
                if not more:
                    break
                got += more
            data = bytes(view[:got])
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""
        except ssl.SSLError as error:
            raise trio.BrokenResourceError(f"TLS error: {error}") from error
        finally:
            view.release()
        if self._outgoing.pending:  # e.g. a TLS 1.3 key update answer
            await self._flush()
        else:
            await trio.lowlevel.checkpoint()
        return data

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            await self.transport.send_all(data)

    async def _fill(self) -> bool:
        """Read ciphertext from the socket; False at EOF."""
        with memoryview(self._cipher) as view:
            count = await self.transport.socket.recv_into(view)
            if not count:
                self._incoming.write_eof()
                return False
            self._incoming.write(view[:count])
        return True


def _read_into(ssl_object: ssl.SSLObject, size: int, view: memoryview) -> int:
    """Decrypt into `view` without an intermediate bytes (typeshed types only the bytes form)."""
    return cast(int, ssl_object.read(size, view))
