"""A real HTTP server on loopback that serves an OpenAPI 3 document and the API it describes.

``GET /openapi.json`` is the document (servers: ``/api``, relative to it); ``getWeather`` needs
``Authorization: Bearer <TOKEN>``; ``createOrder`` takes a JSON body (a ``$ref``'d schema);
``downloadReport`` answers 2 MB (over a small response limit). Every request is recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "s3cret-weather-token"

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Town services", "version": "1"},
    "servers": [{"url": "/api"}],
    "paths": {
        "/weather/{city}": {
            "get": {
                "operationId": "getWeather",
                "summary": "Current weather for a city",
                "description": "The temperature in degrees and the conditions right now.",
                "parameters": [
                    {
                        "name": "city",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "City name, e.g. Oslo.",
                    },
                    {
                        "name": "units",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["metric", "imperial"]},
                        "description": "Unit system.",
                    },
                ],
            }
        },
        "/orders": {
            "post": {
                "operationId": "createOrder",
                "summary": "Place an order for a catalogue item",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}},
                },
            }
        },
        "/report": {"get": {"operationId": "downloadReport", "summary": "Download the yearly sales report"}},
    },
    "components": {
        "schemas": {
            "Order": {
                "type": "object",
                "required": ["item", "quantity"],
                "properties": {
                    "item": {"type": "string", "description": "Catalogue item name."},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 10, "description": "How many."},
                },
            }
        }
    },
}


@dataclass
class Recorded:
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)


@contextmanager
def serve_openapi() -> Iterator[tuple[str, Recorded]]:
    """``(base URL, recorded requests)`` of a server running until the block ends."""
    recorded = Recorded()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if url.path != "/openapi.json":
                recorded.requests.append((method, self.path, dict(self.headers), body))
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/openapi.json":
                self._send(200, DOCUMENT)
            elif url.path.startswith("/api/weather/") and method == "GET":
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"error": "missing or wrong token"})
                    return
                city = url.path.rsplit("/", 1)[1]
                unit = "F" if query.get("units") == "imperial" else "C"
                self._send(
                    200, {"city": city, "temperature": 21 if unit == "C" else 70, "unit": unit, "conditions": "sunny"}
                )
            elif url.path == "/api/orders" and method == "POST":
                self._send(201, {"order_id": 7, **(body or {})})
            elif url.path == "/api/report":
                self._send(200, b'"' + b"x" * 2_000_000 + b'"')
            else:
                self._send(404, {"error": "not found"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorded
    finally:
        server.shutdown()
        server.server_close()
