"""Shared helpers for core tests: encode into in-memory shares (imported by path-less rootdir)."""

from __future__ import annotations

import io

from desktop.core.caps import ReadCap
from desktop.core.encoder import FinishedEncoding, encode_stream
from desktop.core.params import EncodingParams


def encode_to_memory(
    data: bytes,
    params: EncodingParams,
    *,
    key: bytes | None = None,
    workers: int = 1,
) -> tuple[ReadCap, list[bytearray], FinishedEncoding]:
    stream = encode_stream(io.BytesIO(data).read, params, len(data), key=key, workers=workers)
    shares = [bytearray(stream.layout.share_size) for _ in range(params.n)]
    for segment in stream:
        offset, length = stream.layout.block_range(segment.index)
        for shnum, block in enumerate(segment.blocks):
            assert len(block) == length
            shares[shnum][offset : offset + length] = block
    finished = stream.finish()
    for shnum in range(params.n):
        for offset, chunk in finished.share_metadata(shnum):
            shares[shnum][offset : offset + len(chunk)] = chunk
    return finished.cap, shares, finished
