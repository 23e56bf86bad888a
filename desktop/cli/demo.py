"""`permacloud demo ...`: self-contained demonstrations that need no running network.

`demo core` pushes a file through the real storage core: encode into share files, destroy
n-k-1 shares, flip one bit in another, decode from what is left and check the bytes.

To add a demo (e.g. `demo nodes`) from another module: give it
`register_demo(demo_subparsers) -> None` that adds a sub-parser with `set_defaults(func=...)`,
and add the module to `DEMO_MODULES` below.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import blake3
from rich.console import Console
from rich.table import Table

from desktop.cli import demo_nodes
from desktop.core.decoder import ShareReader, decode_stream
from desktop.core.encoder import encode_stream
from desktop.core.errors import PermaCloudError
from desktop.core.params import DEFAULT_SEGMENT_SIZE, EncodingParams

DEMO_MODULES: list[ModuleType] = [demo_nodes]
GENERATED_SIZE = 32 * 1024 * 1024

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


class DemoFailed(PermaCloudError):
    """The decoded bytes differ from the input: a bug, reported instead of hidden."""


def register(subparsers: SubParsers) -> None:
    demo = subparsers.add_parser("demo", help="demonstrations that run locally")
    demo_sub = demo.add_subparsers(dest="demo", metavar="DEMO", required=True)
    register_demo(demo_sub)
    for module in DEMO_MODULES:
        module.register_demo(demo_sub)


def register_demo(demo_sub: SubParsers) -> None:
    core = demo_sub.add_parser(
        "core",
        help="encode a file into shares, lose and corrupt some, decode from the rest",
    )
    core.add_argument("file", nargs="?", type=Path, help="file to use (default: 32 MiB generated)")
    core.add_argument("--k", type=int, default=3, help="shares needed to decode (default 3)")
    core.add_argument("--n", type=int, default=10, help="shares created (default 10)")
    core.add_argument(
        "--segment-size", type=int, default=DEFAULT_SEGMENT_SIZE, help="segment size in bytes"
    )
    core.set_defaults(func=run_core)


def _generate(path: Path, size: int) -> None:
    xof = blake3.blake3(b"permacloud demo")
    with path.open("wb") as out:
        for pos in range(0, size, 1 << 20):
            out.write(xof.digest(length=min(1 << 20, size - pos), seek=pos))


def _file_reader(fd: int) -> ShareReader:
    def read(offset: int, length: int) -> bytes:
        return os.pread(fd, length, offset)

    return read


def run_core(args: argparse.Namespace) -> int:
    params = EncodingParams(args.k, args.n, args.segment_size)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="permacloud-demo-") as tmp:
        workdir = Path(tmp)
        source: Path = args.file
        if source is None:
            source = workdir / "generated.bin"
            _generate(source, GENERATED_SIZE)
        size = source.stat().st_size
        share_paths = [workdir / f"share-{s:03d}" for s in range(params.n)]

        input_hash = blake3.blake3()
        started = time.perf_counter()
        with source.open("rb") as infile:

            def read(count: int) -> bytes:
                chunk = infile.read(count)
                input_hash.update(chunk)
                return chunk

            stream = encode_stream(read, params, size)
            fds = [os.open(p, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600) for p in share_paths]
            try:
                for segment in stream:
                    offset, _ = stream.layout.block_range(segment.index)
                    for fd, block in zip(fds, segment.blocks, strict=True):
                        os.pwrite(fd, block, offset)
                finished = stream.finish()
                for shnum, fd in enumerate(fds):
                    for offset, data in finished.share_metadata(shnum):
                        os.pwrite(fd, data, offset)
            finally:
                for fd in fds:
                    os.close(fd)
        encode_seconds = time.perf_counter() - started

        # Keep share 0 (a primary, tried first) and the last k; destroy the rest.
        keep = sorted({0, *range(params.n - params.k, params.n)})
        destroyed = [s for s in range(params.n) if s not in keep]
        for shnum in destroyed:
            share_paths[shnum].unlink()
        corrupted: int | None = None
        if len(keep) > params.k:
            corrupted = 0
            layout = finished.layout
            offset, length = layout.block_range(layout.num_segments // 2)
            with share_paths[corrupted].open("r+b") as share:
                share.seek(offset + length // 2)
                byte = share.read(1)[0]
                share.seek(offset + length // 2)
                share.write(bytes([byte ^ 0x04]))

        output_hash = blake3.blake3()
        started = time.perf_counter()
        fds = [os.open(share_paths[s], os.O_RDONLY) for s in keep]
        try:
            out = decode_stream(
                finished.cap, {s: _file_reader(fd) for s, fd in zip(keep, fds, strict=True)}
            )
            for chunk in out:
                output_hash.update(chunk)
        finally:
            for fd in fds:
                os.close(fd)
        decode_seconds = time.perf_counter() - started

    ok = output_hash.digest() == input_hash.digest()
    mb = size / 1e6
    table = Table(title="PermaCloud core demo", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("input", f"{source if args.file else 'generated'} ({size:,} bytes)")
    table.add_row("parameters", f"{params.k}-of-{params.n}, {params.segment_size:,} B segments")
    table.add_row("segments", str(finished.layout.num_segments))
    table.add_row("share size", f"{finished.layout.share_size:,} bytes x {params.n}")
    table.add_row("read cap", finished.cap.to_string())
    table.add_row("shares destroyed", ", ".join(map(str, destroyed)) or "none")
    table.add_row("share corrupted (1 bit)", "none" if corrupted is None else str(corrupted))
    detected = ", ".join(f"share {s}: {why}" for s, why in sorted(out.corrupt_shares.items()))
    table.add_row("corruption detected", detected or "none")
    table.add_row("shares whose blocks were used", ", ".join(map(str, sorted(out.used_shares))))
    table.add_row("encode", f"{mb / encode_seconds:,.1f} MB/s")
    table.add_row("decode", f"{mb / decode_seconds:,.1f} MB/s")
    table.add_row("bytes match", "[green]yes[/green]" if ok else "[red]NO[/red]")
    console.print(table)
    if not ok:
        raise DemoFailed("decoded bytes differ from the input")
    if corrupted is not None and corrupted not in out.corrupt_shares:
        raise DemoFailed(f"the flipped bit in share {corrupted} went unnoticed")
    return 0
