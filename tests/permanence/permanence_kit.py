"""Helpers of the permanence tests: shares made in memory, and where a file's shares are on the
nodes' disks."""

from __future__ import annotations

import io
import json
from pathlib import Path

from helpers_daemon import Device

from desktop.core.caps import ReadCap, parse_read_cap, storage_index_to_str
from desktop.core.encoder import encode_stream
from desktop.core.params import EncodingParams


def storage_index(device: Device, path: str) -> str:
    link = device.cli("share", path).stdout.strip()
    cap = parse_read_cap(link.removeprefix("permacloud:").split("#", 1)[0].split("?", 1)[0])
    return storage_index_to_str(cap.storage_index)


def shares_on_disk(data_dirs: dict[str, Path], si: str) -> dict[str, list[int]]:
    """node id -> sealed share numbers of `si` found in that node's store."""
    found: dict[str, list[int]] = {}
    for node_id, data_dir in data_dirs.items():
        folder = data_dir / "store" / "shares" / si[:2] / si
        if not folder.is_dir():
            continue
        for share in sorted(folder.iterdir()):
            meta = share / "meta.json"
            if meta.exists() and json.loads(meta.read_text()).get("sealed"):
                found.setdefault(node_id, []).append(int(share.name))
    return found


def encode_in_memory(data: bytes, params: EncodingParams) -> tuple[ReadCap, list[bytearray]]:
    """Every share of `data` (all n), whole, as the nodes would store them."""
    stream = encode_stream(io.BytesIO(data).read, params, len(data))
    shares = [bytearray(stream.layout.share_size) for _ in range(params.n)]
    for segment in stream:
        offset, length = stream.layout.block_range(segment.index)
        for shnum, block in enumerate(segment.blocks):
            shares[shnum][offset : offset + length] = block
    finished = stream.finish()
    for shnum in range(params.n):
        for offset, chunk in finished.share_metadata(shnum):
            shares[shnum][offset : offset + len(chunk)] = chunk
    return finished.cap, shares
