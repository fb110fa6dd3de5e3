"""`multiembed serve` under load: requests/s and latency with dynamic batching on vs off, then faults.

    python benchmarks/serve.py [--clients 16] [--requests 400] [--rounds 3] [--seconds 30] [--quick]

Takes about 2 minutes on a 2-core CPU; --quick (2 rounds of 120 text / 40 image requests) about one.

Two servers run in subprocesses on 127.0.0.1, one with batching (the default: 5 ms wait, batches up
to 64) and one with ``--no-batching``, driven in turn, round by round. ``--clients`` concurrent
clients (asyncio, one keep-alive connection each, in this process) send one-input /v1/embeddings
requests until ``--requests`` are done or ``--seconds`` pass: texts with the packaged
all-MiniLM-L6-v2, and 224x224 JPEGs (base64) with a small random ResNet (4 stages, 32-256
channels). It prints requests/s (median of the rounds), p50 and p99 latency and the on/off ratio
(target: >= 2x for text at 16 clients). Then, against the batching server: malformed JSON, wrong
base64, an oversized upload (declared and streamed), a client that hangs up mid-body and one that
leaves before its answer; /healthz must still say 200 and a request must still succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import add_quick, apply_sizes, rate_text

FULL = {"requests": 400, "image_requests": 120, "rounds": 3, "seconds": 30.0}
QUICK = {"requests": 120, "image_requests": 40, "rounds": 2, "seconds": 10.0}
#: the servers refuse bodies over this (the fault checks send more)
LIMIT_MB = 8
SENTENCE = "a red bicycle leans against the brick wall while the quick brown fox jumps over lazy dogs"
WORDS = SENTENCE.split()


@dataclass(frozen=True)
class Run:
    workload: str
    batching: bool
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def small_resnet(folder: Path) -> Path:
    """A random 4-stage ResNet (32-256 channels) with a 224-pixel processor: real image work, small."""
    import torch
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1])
    path = folder / "small-resnet"
    ResNetModel(config).eval().save_pretrained(path)
    ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875).save_pretrained(path)
    return path


def jpegs(count: int) -> list[str]:
    """Base64 224x224 JPEGs of noisy gradients."""
    from image import gradient_jpegs

    return [base64.b64encode(data).decode("ascii") for data in gradient_jpegs(count, 224, 224)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(folder: Path, image_model: Path, batching: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "multiembed", "serve", "--uri", str(folder / "bench.db"),
               "--port", str(port), "--device", "cpu", "--model", "text:minilm",
               "--model", f"image=image:{image_model}", "--max-request-mb", str(LIMIT_MB)]  # fmt: skip
    if not batching:
        command.append("--no-batching")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stderr.read().decode() if server.stderr else ''}")
        try:
            states = httpx.get(f"{url}/healthz", timeout=5).json()["models"]
            if all(state == "ok" for state in states.values()):
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not load its models in 3 minutes")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bytes:
    """One keep-alive HTTP/1.1 POST /v1/embeddings; the response body (any status but 200 raises).

    Written by hand on asyncio streams: a client library would spend more CPU per request than the
    server's own HTTP handling, on the same two cores, and blur what is measured.
    """
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    response = await reader.readuntil(b"\r\n\r\n")
    status = int(response.split(b" ", 2)[1])
    found = re.search(rb"(?i)\r\ncontent-length: *(\d+)", response)
    content = await reader.readexactly(int(found.group(1)) if found else 0)
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {content[:300]!r}")
    return content


async def drive(
    url: str, bodies: list[dict[str, object]], clients: int, total: int, seconds: float
) -> tuple[int, float, list[float]]:
    """``clients`` concurrent clients, one connection each, sending the bodies in turn until
    ``total`` requests or ``seconds`` have passed; returns requests done, seconds, latencies."""
    host, port = url.removeprefix("http://").split(":")
    payloads = [json.dumps(body).encode() for body in bodies]
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(clients)]
    # warm-up: every connection answered once, the first batches run
    await asyncio.gather(*(post(*pair, payloads[i % len(payloads)]) for i, pair in enumerate(connections)))
    latencies: list[float] = []
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        while sent < total and time.perf_counter() < deadline:
            payload = payloads[sent % len(payloads)]
            sent += 1
            began = time.perf_counter()
            await post(reader, writer, payload)
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(client(*pair) for pair in connections))
    elapsed = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return len(latencies), elapsed, latencies


def fault_checks(url: str) -> list[tuple[str, bool, str]]:
    """Each fault, whether the server answered as it should, and what it answered."""
    checks: list[tuple[str, bool, str]] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        headers = {"content-type": "application/json"}
        answer = http.post("/v1/embeddings", content=b'{"model": "minilm", "input": [', headers=headers)
        checks.append(("malformed JSON", answer.status_code == 400, str(answer.status_code)))
        answer = http.post("/v1/embeddings", json={"model": "image", "input": ["not base64 !!"]})
        checks.append(("wrong base64", answer.status_code == 400, str(answer.status_code)))
        big = b"0" * (LIMIT_MB + 1) * 1024 * 1024
        answer = http.post("/v1/embeddings", files={"file": ("big.jpg", big)}, data={"model": "image"})
        checks.append(("oversized upload (declared)", answer.status_code == 413, str(answer.status_code)))
        chunks = (big[start : start + 65536] for start in range(0, len(big), 65536))
        answer = http.post("/v1/embeddings", content=chunks, headers=headers)
        checks.append(("oversized upload (streamed)", answer.status_code == 413, str(answer.status_code)))
    host, port = url.removeprefix("http://").split(":")
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    body = json.dumps({"model": "minilm", "input": [" ".join(WORDS)] * 64}).encode()
    for name, request in [
        ("client leaves mid-body", head + b'Content-Length: 100000\r\n\r\n{"model": "minilm", "input": ['),
        ("client leaves before its answer", head + b"Content-Length: %d\r\n\r\n" % len(body) + body),
    ]:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(request)
        checks.append((name, True, "sent, hung up"))
    time.sleep(1.0)
    health = httpx.get(f"{url}/healthz", timeout=30)
    checks.append(("/healthz afterwards", health.status_code == 200, f"{health.status_code} {health.json()}"))
    answer = httpx.post(f"{url}/v1/embeddings", json={"model": "minilm", "input": "still here"}, timeout=30)
    checks.append(("a request afterwards", answer.status_code == 200, str(answer.status_code)))
    return checks


def print_table(runs: list[Run], clients: int) -> None:
    """One line per workload and mode: rounds pooled, req/s as the median of the rounds' rates."""
    columns = ("workload", "batching", "clients", "requests", "req/s", "p50 ms", "p99 ms")
    print(
        " ".join(f"{name:<8}" if i < 2 else f"{name:>{7 if i == 2 else 8}}" for i, name in enumerate(columns))
    )
    rates: dict[tuple[str, bool], float] = {}
    for workload in ("text", "image"):
        for batching in (True, False):
            mine = [run for run in runs if run.workload == workload and run.batching is batching]
            pooled = Run(workload, batching, sum(r.requests for r in mine), sum(r.seconds for r in mine),
                         [latency for r in mine for latency in r.latencies])  # fmt: skip
            rates[workload, batching] = statistics.median(run.rate for run in mine)
            rounds = ", ".join(rate_text(run.rate) for run in mine)
            print(f"{workload:<8} {'on' if batching else 'off':<8} {clients:>7} {pooled.requests:>8} "
                  f"{rate_text(rates[workload, batching]):>8} {pooled.percentile(0.5):8.1f} "
                  f"{pooled.percentile(0.99):8.1f}   (rounds: {rounds})")  # fmt: skip
    for workload in ("text", "image"):
        target = " (target >= 2x)" if workload == "text" else ""
        ratio = rates[workload, True] / rates[workload, False]
        print(f"ratio {workload} batching on / off: {ratio:.2f}x{target}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, help="text requests per round and mode (default 400)")
    parser.add_argument("--image-requests", type=int, help="image requests per round and mode (default 120)")
    parser.add_argument("--rounds", type=int, help="default 3")
    parser.add_argument("--seconds", type=float, help="most seconds per run (default 30)")
    add_quick(parser, QUICK)
    args = parser.parse_args()
    apply_sizes(args, FULL, QUICK)
    texts = [{"model": "minilm", "input": " ".join(WORDS[i % 7 : i % 7 + 6 + i % 9])} for i in range(64)]
    images = [{"model": "image", "input": image} for image in jpegs(16)]
    workloads = (("text", texts, args.requests), ("image", images, args.image_requests))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as folder:
        image_model = small_resnet(Path(folder))
        # Both servers run side by side (an idle one costs nothing) and the modes alternate round by
        # round, so a change in the machine's load falls on both.
        servers = {batching: start_server(Path(folder), image_model, batching) for batching in (True, False)}
        try:
            for round_number in range(args.rounds):
                for batching in (True, False) if round_number % 2 == 0 else (False, True):
                    url = servers[batching][1]
                    for workload, bodies, total in workloads:
                        done, seconds, latencies = asyncio.run(
                            drive(url, bodies, args.clients, total, args.seconds)
                        )
                        runs.append(Run(workload, batching, done, seconds, latencies))
            checks = fault_checks(servers[True][1])
        finally:
            for server, _ in servers.values():
                stop_server(server)
    print_table(runs, args.clients)
    for name, passed, answer in checks:
        print(f"fault: {name:<32} {'ok' if passed else 'FAILED':<6} ({answer})")
    if not all(passed for _, passed, _ in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
