"""HTTP layer throughput over TLS on 127.0.0.1: our h11 node + NodeClient vs hypercorn + httpx.

Each server runs in its own process (as in production), the client in this one. Both move the
same bytes in 8 MiB requests over one keep-alive connection: upload = PUTs written to a file,
download = ranged GETs of a file. `h11_upload` pays for the share store's fdatasync + journal
per write (its real behaviour); the hypercorn app writes without fsync, so compare it with
`h11_upload_nofsync` (node started with --no-fsync) for the HTTP layer alone.

    flock /tmp/team/cpu.lock .venv/bin/python bench/http_layer.py [--mib 200]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from desktop.net.identity import DeviceKey  # noqa: E402
from desktop.net.node_client import NodeClient  # noqa: E402

CHUNK = 8 * 1024 * 1024
MiB = 1024 * 1024


def metric(name: str, value: float, unit: str) -> None:
    print(f"metric={name} value={value:.1f} unit={unit}", flush=True)


# ---- hypercorn server (child process) -------------------------------------------------------


def _make_app(data_file: Path) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["method"] == "PUT":
            offset = int(scope["path"].rsplit("/", 1)[1])
            fd = os.open(data_file, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                while True:
                    message = await receive()
                    body = message.get("body", b"")
                    os.pwrite(fd, body, offset)
                    offset += len(body)
                    if not message.get("more_body"):
                        break
            finally:
                os.close(fd)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = dict(scope["headers"])
        match = re.fullmatch(rb"bytes=(\d+)-(\d+)", headers[b"range"])
        assert match is not None
        start, end = int(match.group(1)), int(match.group(2)) + 1
        await send(
            {
                "type": "http.response.start",
                "status": 206,
                "headers": [(b"content-length", str(end - start).encode())],
            }
        )
        fd = os.open(data_file, os.O_RDONLY)
        try:
            position = start
            while position < end:
                piece = os.pread(fd, min(MiB, end - position), position)
                position += len(piece)
                await send(
                    {"type": "http.response.body", "body": piece, "more_body": position < end}
                )
        finally:
            os.close(fd)

    return app


def serve_hypercorn(port: int, cert: str, key: str, data_file: str) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile = cert
    config.keyfile = key
    config.accesslog = None
    config.h11_max_incomplete_size = 16 * 1024
    trio.run(serve, _make_app(Path(data_file)), config)


# ---- clients ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def start_node(workdir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str, tuple[str, int]]:
    command = [sys.executable, "-m", "desktop", "node", "run", "--data", str(workdir / "node")]
    command += ["--listen", "127.0.0.1:0", "--quota", "10G", "--read-rate", "100000", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO)
    assert process.stdout is not None
    fields = dict(part.split("=", 1) for part in process.stdout.readline().decode().split())
    host, port = fields["listen"].rsplit(":", 1)
    return process, fields["node_id"], (host, int(port))


async def bench_node(node_id: str, address: tuple[str, int], payload: bytes) -> tuple[float, float]:
    si = os.urandom(16)
    view = memoryview(payload)
    async with NodeClient(node_id, address, DeviceKey.generate()) as client:
        await client.info()  # connect + handshake outside the timing
        await client.create_share(si, 0, len(payload), 3600)
        started = time.perf_counter()
        for offset in range(0, len(payload), CHUNK):
            await client.write(si, 0, offset, view[offset : offset + CHUNK])
        upload = time.perf_counter() - started
        await client.seal(si, 0)
        started = time.perf_counter()
        received = 0
        for offset in range(0, len(payload), CHUNK):
            received += len(await client.read(si, 0, offset, CHUNK))
        download = time.perf_counter() - started
        assert received == len(payload)
    return upload, download


def start_hypercorn(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    key = DeviceKey.generate()
    cert, key_file = workdir / "cert.pem", workdir / "key.pem"
    cert.write_bytes(key.certificate_pem())
    key_file.write_bytes(key.private_pem())
    port = _free_port()
    command = [sys.executable, __file__, "--serve-hypercorn", str(port), str(cert), str(key_file)]
    command.append(str(workdir / "hypercorn.data"))
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL, cwd=REPO)
    _wait_port(port)
    return process, port


async def bench_httpx(port: int, payload: bytes) -> tuple[float, float]:
    import httpx

    base = f"https://127.0.0.1:{port}"
    view = memoryview(payload)
    async with httpx.AsyncClient(verify=False, timeout=60) as client:
        await client.put(f"{base}/warmup/0", content=b"x")
        started = time.perf_counter()
        for offset in range(0, len(payload), CHUNK):
            response = await client.put(
                f"{base}/data/{offset}", content=bytes(view[offset : offset + CHUNK])
            )
            response.raise_for_status()
        upload = time.perf_counter() - started
        started = time.perf_counter()
        received = 0
        for offset in range(0, len(payload), CHUNK):
            end = min(offset + CHUNK, len(payload)) - 1
            response = await client.get(f"{base}/data", headers={"range": f"bytes={offset}-{end}"})
            received += len(response.content)
        download = time.perf_counter() - started
        assert received == len(payload)
    return upload, download


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(20)


def main(mib: int) -> None:
    payload = os.urandom(mib * MiB)
    with tempfile.TemporaryDirectory(prefix="pc-bench-http-") as tmp:
        workdir = Path(tmp)
        process, node_id, address = start_node(workdir)
        try:
            up, down = trio.run(bench_node, node_id, address, payload)
        finally:
            _stop(process)
        metric("h11_upload_mbps", mib / up, "MiB/s")
        metric("h11_download_mbps", mib / down, "MiB/s")
        process, node_id, address = start_node(workdir / "nofsync", "--no-fsync")
        try:
            up, down = trio.run(bench_node, node_id, address, payload)
        finally:
            _stop(process)
        metric("h11_upload_nofsync_mbps", mib / up, "MiB/s")
        hyper, port = start_hypercorn(workdir)
        try:
            up, down = trio.run(bench_httpx, port, payload)
        finally:
            _stop(hyper)
        metric("hypercorn_httpx_upload_mbps", mib / up, "MiB/s")
        metric("hypercorn_httpx_download_mbps", mib / down, "MiB/s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-hypercorn":
        serve_hypercorn(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("--mib", type=int, default=200, help="MiB to move each way")
        main(parser.parse_args().mib)
