"""A bounded HTTP/1.1 keep-alive load generator, run as its own process.

    python bench/loadgen.py URL --concurrency 4 --seconds 3 --max-requests 20000

It keeps ``concurrency`` connections busy with GET requests for ``seconds`` (or until
``max_requests`` are sent), and prints one JSON line: requests, errors, elapsed
seconds, throughput and latency percentiles in milliseconds. asyncio streams with
minimal response parsing keep the client cheap, so that the server, not the client,
is what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def _worker(host: str, port: int, request: bytes, deadline: float, budget: list[int],
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status >= 400:
                errors[0] += 1
    finally:
        writer.close()


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def run(url: str, concurrency: int, seconds: float, max_requests: int) -> dict:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()
    latencies: list[float] = []
    errors = [0]
    budget = [max_requests]
    started = time.perf_counter()
    await asyncio.gather(*(
        _worker(parts.hostname, parts.port or 80, request, started + seconds, budget,
                latencies, errors) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies), "errors": errors[0], "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.url, args.concurrency, args.seconds, args.max_requests))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
