"""Child process for the 2 GiB test: encode a generated stream to disk, decode, report RSS.

Runs in its own process so its peak RSS (ru_maxrss) measures only the pipeline. Only shares
0, 1, 2 (primaries) and 3 (parity) are kept on disk; decoding uses 0, 1 and 3 so the zfec
parity path runs. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import blake3

from desktop.core.decoder import decode_stream
from desktop.core.encoder import encode_stream
from desktop.core.params import EncodingParams
from desktop.memory import bound_allocator

KEEP = (0, 1, 2, 3)
DECODE_FROM = (0, 1, 3)


class GeneratedInput:
    """Deterministic pseudo-random bytes from BLAKE3's XOF, hashed as they are handed out."""

    def __init__(self, size: int, seed: bytes) -> None:
        self.size = size
        self.pos = 0
        self._xof = blake3.blake3(seed)
        self.hasher = blake3.blake3()

    def read(self, n: int) -> bytes:
        n = min(n, self.size - self.pos)
        chunk = bytes(self._xof.digest(length=n, seek=self.pos)) if n else b""
        self.pos += n
        self.hasher.update(chunk)
        return chunk


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak
    across fork+exec into it, so under a big pytest process it reported ~500 MiB for nothing."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(size: int, directory: Path) -> None:
    bound_allocator()  # as every `permacloud` process does at start
    params = EncodingParams()
    source = GeneratedInput(size, b"permacloud large file test")
    stream = encode_stream(source.read, params, size, workers=2)
    fds = {s: os.open(directory / f"share{s}", os.O_RDWR | os.O_CREAT, 0o600) for s in KEEP}
    try:
        for segment in stream:
            offset, _ = stream.layout.block_range(segment.index)
            for shnum in KEEP:
                os.pwrite(fds[shnum], segment.blocks[shnum], offset)
        finished = stream.finish()
        for shnum in KEEP:
            for offset, data in finished.share_metadata(shnum):
                os.pwrite(fds[shnum], data, offset)

        def reader(fd: int):  # type: ignore[no-untyped-def]
            def read(offset: int, length: int) -> bytes:
                return os.pread(fd, length, offset)

            return read

        decoded = blake3.blake3()
        decoded_size = 0
        out = decode_stream(finished.cap, {s: reader(fds[s]) for s in DECODE_FROM}, workers=2)
        for chunk in out:
            decoded.update(chunk)
            decoded_size += len(chunk)
    finally:
        for fd in fds.values():
            os.close(fd)
    print(
        json.dumps(
            {
                "input_hash": source.hasher.hexdigest(),
                "output_hash": decoded.hexdigest(),
                "output_size": decoded_size,
                "used_shares": sorted(out.used_shares),
                "corrupt_shares": out.corrupt_shares,
                "share_size": finished.layout.share_size,
                "disk_share_size": os.path.getsize(directory / "share3"),
                "peak_rss_kib": peak_rss_kib(),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
