"""A real HTTP server on loopback that replays scripted responses, for the API connector tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


Route = Callable[[dict[str, str], dict[str, str]], Reply]
"""(query parameters, request headers) -> reply."""


class APIServer:
    """``server.route("/path", fn)``; ``server.url``; every request is logged in ``server.log``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                outer.log.append((parts.path, query))
                route = outer.routes.get(parts.path)
                reply = (
                    route(query, {k.lower(): v for k, v in self.headers.items()})
                    if route
                    else Reply(404, {"message": "Not Found"})
                )
                data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v.replace("{base}", outer.url))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def route(self, path: str, fn: Route) -> None:
        self.routes[path] = fn

    def script(self, path: str, *replies: Reply) -> None:
        """Serve ``replies`` in order; the last one repeats."""
        queue = list(replies)

        def serve(query: dict[str, str], headers: dict[str, str]) -> Reply:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.routes[path] = serve

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
