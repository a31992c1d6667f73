"""Load test: N concurrent clients on /v1/search and /v1/query from a separate process.

Starts ``grounded serve --workers W`` on a knowledge base (building the demo one when the
directory does not exist), or drives an already running server with ``--url``. Prints
throughput and latency percentiles per route. Goal on the development machine:
``/v1/search`` >= 200 req/s at p95 <= 100 ms with 2 workers.

    .venv/bin/python benchmarks/load.py --kb .bench/demo-kb --workers 2 --clients 16 --duration 20
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8000 --key gk_... --routes search
    .venv/bin/python benchmarks/load.py --routes search --stacks asyncio+h11,auto   # side by side
    .venv/bin/python benchmarks/load.py --routes search --distinct --stacks torch-encoder,auto

The rate limit is switched off for the server it starts (``GROUNDED_SERVER__RATE_LIMIT=0``);
request logs go to ``--log`` (default: discarded) so the terminal shows only the table.
``/v1/query`` questions repeat, so after the first round they come from the answer cache, as
repeated questions do in production; ``--no-cache`` makes every one run the answer expert.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from _report import add_json_option, write_json

QUERIES = [
    "how does the with statement call __exit__",
    "operator precedence of not and or",
    "what happens when a generator is closed",
    "how do I leave the innermost loop early",
    "what does the pass statement do",
    "lambda expressions create anonymous functions",
    "when is the else clause of a for loop executed",
    "how are exceptions chained with raise from",
    "what does the global statement declare",
    "how does assert behave when optimisations are on",
    "del statement removes a binding",
    "return statement inside a finally clause",
]


def distinct_queries() -> list[str]:
    """Thousands of different questions-like strings: the opening words of each reference paragraph.

    With these no query repeats within a run, so every search embeds its query (the encoder's
    cost) and reads its rows from DuckDB: the uncached path.
    """
    from pydoc_data.topics import topics

    seen: dict[str, None] = {}
    for name in sorted(topics):
        for para in topics[name].split("\n\n"):
            words = para.split()
            if len(words) >= 6:
                seen.setdefault(" ".join(words[:8]), None)
    return list(seen)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


STACKS = {
    "auto": {},  # what `grounded serve` uses: uvloop + httptools when installed, the onnx encoder
    "asyncio+h11": {"GROUNDED_SERVER__LOOP": "asyncio", "GROUNDED_SERVER__HTTP": "h11"},  # pure-Python baseline
    # The query encoder before ONNX Runtime: sentence-transformers on torch, one query per call.
    "torch-encoder": {"GROUNDED_EMBED_RUNTIME": "torch"},
}


def start_server(
    kb: Path, workers: int, log: Path | None, stack: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    grounded = Path(sys.executable).with_name("grounded")
    if not (kb / "CURRENT").exists():
        print(f"building the demo knowledge base in {kb} ...", flush=True)
        subprocess.run([str(grounded), "demo", "--kb", str(kb), "--no-serve"], check=True, stdout=subprocess.DEVNULL)
    port = _free_port()
    env = {
        **os.environ,
        "GROUNDED_SERVER__RATE_LIMIT": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **(stack or {}),
    }
    sink = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(grounded), "serve", "--kb", str(kb), "--port", str(port), "--workers", str(workers), "--no-scheduler"],
        env=env,
        stdout=sink,
        stderr=sink,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}; see --log")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                # Every worker must have loaded the model: a few warm-up searches spread over them.
                for q in QUERIES:
                    httpx.post(f"{url}/v1/search", json={"query": q, "k": 5}, timeout=60)
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not become ready in 300 s")


async def drive(
    url: str,
    route: str,
    clients: int,
    duration: float,
    key: str | None,
    cache: bool,
    queries: list[str],
    *,
    distinct: bool = False,
) -> tuple[list[float], int, float]:
    """Run ``clients`` concurrent clients on one route; ``distinct``: each query is sent once."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration
    queries = list(reversed(queries))  # distinct ones are popped, first one first
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http:
            while time.perf_counter() < stop_at and queries:
                q = queries.pop() if distinct else rng.choice(queries)
                body: dict[str, object] = {"query": q, "k": 5} if route == "search" else {"query": q, "cache": cache}
                t = time.perf_counter()
                try:
                    r = await http.post(f"/v1/{route}", json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="drive this running server instead of starting one")
    parser.add_argument("--kb", type=Path, default=Path(".bench/demo-kb"), help="knowledge base to serve")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients per route")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per route")
    parser.add_argument("--routes", default="search,query", help="comma-separated: search, query")
    parser.add_argument("--key", help="API key (when the server has keys)")
    parser.add_argument("--no-cache", action="store_true", help="/v1/query without the answer cache")
    parser.add_argument("--log", type=Path, help="write the started server's logs here")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="never repeat a query (thousands of reference-paragraph openings) instead of the 12 repeated ones",
    )
    parser.add_argument(
        "--stacks",
        default="auto",
        help=f"comma-separated server stacks to start one after another: {', '.join(STACKS)} "
        "(e.g. asyncio+h11,auto for the side-by-side table)",
    )
    add_json_option(parser)
    args = parser.parse_args()
    stacks = [s.strip() for s in args.stacks.split(",") if s.strip()]
    unknown = [s for s in stacks if s not in STACKS]
    if unknown:
        parser.error(f"unknown stack {', '.join(unknown)}; choose from {', '.join(STACKS)}")
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]

    rows = []
    for stack in [None] if args.url else stacks:
        proc = None
        url = args.url
        if url is None:
            proc, url = start_server(args.kb, args.workers, args.log, STACKS[stack or "auto"])
        try:
            for route in routes:
                queries = distinct_queries() if args.distinct else QUERIES
                lat, errors, elapsed = asyncio.run(
                    drive(
                        url,
                        route,
                        args.clients,
                        args.duration,
                        args.key,
                        not args.no_cache,
                        queries,
                        distinct=args.distinct,
                    )
                )
                ms = np.array(lat) * 1000 if lat else np.array([float("nan")])
                rows.append(
                    (
                        stack or "external",
                        f"/v1/{route}",
                        len(lat),
                        errors,
                        len(lat) / elapsed,
                        *np.percentile(ms, [50, 95, 99]),
                    )
                )
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)  # graceful shutdown
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    workers = f"{args.workers} workers" if args.url is None else "external server"
    load = os.getloadavg()
    print(
        f"\n{args.clients} concurrent clients per route, {args.duration:g} s each, {workers}; load average {load[0]:.2f}\n"
    )
    print(f"| server | route | requests | errors | req/s | p50 ms | p95 ms | p99 ms |\n|{'---|' * 8}")
    for stack, route, n, errors, rps, p50, p95, p99 in rows:
        print(f"| {stack} | {route} | {n} | {errors} | {rps:.1f} | {p50:.1f} | {p95:.1f} | {p99:.1f} |")
    columns = ("server", "route", "requests", "errors", "req_per_s", "p50_ms", "p95_ms", "p99_ms")
    figures = {"clients": args.clients, "duration_s": args.duration, "workers": args.workers}
    write_json(args.json, {**figures, "rows": [dict(zip(columns, map(_plain, row), strict=True)) for row in rows]})


def _plain(value: object) -> object:
    # numpy scalars become JSON numbers.
    return value.item() if isinstance(value, np.generic) else value


if __name__ == "__main__":
    main()
