"""Parallel plan speedup: two independent ``api`` calls, each answered in 200 ms by a loopback
HTTP server, run as one plan (concurrently) and one call after the other.

    .venv/bin/python benchmarks/parallel.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _report import add_json_option, write_json

DELAY_S = 0.2


class Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(DELAY_S)
        body = json.dumps([{"id": self.path, "text": f"value of {self.path}"}]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_json_option(parser)
    args = parser.parse_args()
    import grounded
    from grounded.grounding.executor import Call, Executor, Plan
    from grounded.tools import ToolContext, load_tools

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    source = {
        "type": "rest",
        "params": {"base_url": url, "endpoints": [{"name": "a", "path": "a"}, {"name": "b", "path": "b"}]},
    }
    with tempfile.TemporaryDirectory() as tmp:
        kb = grounded.open(Path(tmp) / "kb", sources={"live": source})
        # A request's view pins a published version, so publish one small document first.
        (Path(tmp) / "docs").mkdir()
        (Path(tmp) / "docs" / "note.txt").write_text("The live source answers on two endpoints.", encoding="utf-8")
        kb.ingest(Path(tmp) / "docs")
        executor = Executor(load_tools(), ToolContext(view=kb.store.view()))
        calls = (
            Call("c1", "api", {"source": "live", "endpoint": "a"}),
            Call("c2", "api", {"source": "live", "endpoint": "b"}),
        )
        executor.run(Plan("warm", calls))
        parallel, sequential = [], []
        for _ in range(5):
            t = time.perf_counter()
            run = executor.run(Plan("multi_step", calls))
            parallel.append(time.perf_counter() - t)
            assert all(r.ok for r in run.results.values()), run.results
            t = time.perf_counter()
            for call in calls:
                executor.run(Plan("one", (call,)))
            sequential.append(time.perf_counter() - t)
    server.shutdown()
    p, s = statistics.median(parallel), statistics.median(sequential)
    print(f"| two independent 200 ms API calls, one plan | {p * 1000:.0f} ms |")
    print(f"| the same calls one after the other | {s * 1000:.0f} ms |")
    print(f"| speedup (median of 5) | {s / p:.2f}x |")
    write_json(args.json, {"parallel_ms": p * 1000, "sequential_ms": s * 1000, "speedup": s / p})


if __name__ == "__main__":
    main()
