"""Benchmark of the core pipeline and of its parts alone, on the same data in the same run.

Prints `metric=NAME value=NUMBER unit=UNIT` lines. All MB/s are megabytes (10^6) of plaintext
per second; a part's figure is how fast that part alone processes the data of a segment (for
hashing: all n blocks of it), single-threaded, so `encode_vs_limit` compares the two-core
pipeline with the slowest part on one core. Run under `flock /tmp/team/cpu.lock`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import blake3
import zfec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from desktop.core.decoder import ShareReader, decode_stream, memory_reader
from desktop.core.encoder import encode_stream
from desktop.core.hashing import block_hash
from desktop.core.layout import TAG_SIZE, ShareLayout
from desktop.core.params import EncodingParams
from desktop.core.segment_cipher import segment_aad, segment_nonce

MB = 1e6


def report(name: str, value: float, unit: str) -> None:
    print(f"metric={name} value={value:.3f} unit={unit}", flush=True)


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def generate(size: int) -> bytes:
    return bytes(blake3.blake3(b"permacloud bench").digest(length=size))


def best_of(runs: int, func: Callable[[], object]) -> float:
    return min(timed(func) for _ in range(runs))


def measure_parts(data: memoryview, layout: ShareLayout, workers: int) -> dict[str, float]:
    params = layout.params
    k, n = params.k, params.n
    segs = [layout.segment_range(i) for i in range(layout.num_segments)]
    aead = AESGCM(bytes(range(32)))
    si = bytes(16)
    block_size = layout.block_size
    out = bytearray(k * block_size)
    out_view = memoryview(out)

    def aes() -> None:
        for i, (off, ln) in enumerate(segs):
            aead.encrypt_into(
                segment_nonce(i),
                data[off : off + ln],
                segment_aad(si, i, False),
                out_view[: ln + TAG_SIZE],
            )

    encoder = zfec.Encoder(k, n)
    primaries = tuple(out_view[i * block_size : (i + 1) * block_size] for i in range(k))
    parity_nums = tuple(range(k, n))
    parity = encoder.encode(primaries, parity_nums)
    blocks = [*primaries, *parity]

    def zfec_encode() -> None:
        for _ in segs:
            encoder.encode(primaries, parity_nums)

    def zfec_encode_threads() -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: encoder.encode(primaries, parity_nums), segs))

    def hashing() -> None:
        for i, _ in enumerate(segs):
            for shnum, block in enumerate(blocks):
                block_hash(shnum, i, block)

    total = len(data) / MB
    return {
        "aes_gcm_mbps": total / best_of(2, aes),
        "zfec_encode_mbps": total / best_of(2, zfec_encode),
        "hash_mbps": total / best_of(2, hashing),
        "zfec_encode_2threads_mbps": total / best_of(2, zfec_encode_threads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--segment-size", type=int, default=EncodingParams().segment_size)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    params = EncodingParams(args.k, args.n, args.segment_size)
    size = args.size_mib * 1024 * 1024
    raw = generate(size)
    data = memoryview(raw)
    layout = ShareLayout.for_file(params, size)
    total = size / MB

    parts = measure_parts(data, layout, args.workers)

    keep = sorted({*range(params.k), *range(params.k, min(params.n, 2 * params.k))})
    kept: dict[int, list[bytes | memoryview]] = {s: [] for s in keep}
    finished_holder: list[object] = []

    def encode() -> None:
        pos = 0

        def read(n: int) -> memoryview:
            nonlocal pos
            chunk = data[pos : pos + n]
            pos += len(chunk)
            return chunk

        stream = encode_stream(read, params, size, workers=args.workers)  # type: ignore[arg-type]
        for segment in stream:
            for s in keep:
                kept[s].append(segment.blocks[s])
        finished_holder.append(stream.finish())

    encode_seconds = timed(encode)
    finished = finished_holder[0]
    shares: dict[int, bytearray] = {}
    for s in keep:
        share = bytearray(layout.share_size)
        for index, block in enumerate(kept[s]):
            offset, length = layout.block_range(index)
            share[offset : offset + length] = block
        for offset, chunk in finished.share_metadata(s):  # type: ignore[attr-defined]
            share[offset : offset + len(chunk)] = chunk
        shares[s] = share
    kept.clear()
    cap = finished.cap  # type: ignore[attr-defined]

    def decode_from(subset: list[int]) -> float:
        readers: dict[int, ShareReader] = {s: memory_reader(shares[s]) for s in subset}
        hasher = blake3.blake3()

        def run() -> None:
            for chunk in decode_stream(cap, readers, workers=args.workers):
                hasher.update(chunk)

        seconds = timed(run)
        if hasher.digest() != blake3.blake3(raw).digest():
            raise SystemExit(f"decode from {subset} returned wrong bytes")
        return seconds

    primary = list(range(params.k))
    parity_only = keep[params.k :][: params.k]
    decode_seconds = decode_from(primary)
    parity_seconds = decode_from(parity_only) if len(parity_only) == params.k else None
    mixed = [*primary[:-1], keep[-1]]
    mixed_seconds = decode_from(mixed) if params.n > params.k else None

    encode_mbps = total / encode_seconds
    report("encode_mbps", encode_mbps, "MB/s")
    report("decode_mbps", total / decode_seconds, "MB/s")
    if parity_seconds is not None:
        report("decode_parity_mbps", total / parity_seconds, "MB/s")
    if mixed_seconds is not None:
        report("decode_mixed_mbps", total / mixed_seconds, "MB/s")
    for name, value in parts.items():
        report(name, value, "MB/s")
    slowest = min(parts["aes_gcm_mbps"], parts["zfec_encode_mbps"], parts["hash_mbps"])
    report("encode_vs_limit", encode_mbps / slowest, "ratio")


if __name__ == "__main__":
    main()
