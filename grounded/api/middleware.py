"""ASGI middleware around every request: request id, size limit, latency metric, access log.

- ``X-Request-ID``: the caller's (when short and plain) or a new one; echoed in the response and
  carried by every log record of the request (:data:`grounded.ops.logs.REQUEST_ID`).
- Bodies over ``max_body_bytes`` get 413, whether announced by ``Content-Length`` or streamed;
  a body that has not arrived whole ``body_timeout_s`` after the headers gets 408 (a slow client
  must not hold a request open; the header deadline is in :mod:`grounded.api.connections`).
- ``grounded_request_duration_seconds{route, method, status}`` with the route *template*
  (``/v1/sources/{name}/refresh``), so paths never explode the label set.
- One JSON log line per request: method, path, route, status, duration, caller's key id.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grounded.errors import RequestTooLarge
from grounded.ops.logs import REQUEST_ID
from grounded.ops.metrics import REQUEST_LATENCY

__all__ = ["ServingMiddleware"]

log = logging.getLogger("grounded.ops.keys")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class ServingMiddleware:
    """Wraps the app; see the module docstring."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _SAFE_ID.match(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500
        limit = self.max_body_bytes

        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            status = 413
            await self._too_large(scope, send, request_id, int(declared))
            self._finish(scope, status, started)
            REQUEST_ID.reset(token)
            return

        if scope.get("method") in ("POST", "PUT", "PATCH"):
            # Read the whole body here, before the route, under the body deadline: a client that
            # sends its body slowly gets 408 instead of holding a worker's request open, and a
            # streamed one (no Content-Length) over the limit gets a clean 413 instead of failing
            # inside body parsing. The route then reads it from memory.
            body, complete, too_large = bytearray(), False, False
            with anyio.move_on_after(self.body_timeout_s) as deadline:
                while not complete:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    body += message.get("body", b"")
                    complete = not message.get("more_body", False)
                    if len(body) > limit:
                        too_large = True
                        break
            if too_large or deadline.cancelled_caught:
                if too_large:
                    status = 413
                    await self._too_large(scope, send, request_id, len(body))
                else:
                    status = 408
                    await self._problem(
                        scope,
                        send,
                        request_id,
                        408,
                        "Request timeout",
                        f"the request body did not arrive within {self.body_timeout_s:g} s "
                        f"({len(body)} bytes received)",
                    )
                self._finish(scope, status, started)
                REQUEST_ID.reset(token)
                return
            replayed = False
            upstream = receive  # replay's own name is rebound below: keep the server's receive

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await upstream()  # e.g. a streaming response waiting for the disconnect

            receive = replay

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(f"the request body is over the limit of {limit} bytes")
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, tagged_send)
        finally:
            self._finish(scope, status, started)
            REQUEST_ID.reset(token)

    async def _too_large(self, scope: Scope, send: Send, request_id: str, size: int) -> None:
        detail = f"the request body has {size} bytes; the limit is {self.max_body_bytes}"
        await self._problem(scope, send, request_id, 413, "Request too large", detail)

    @staticmethod
    async def _problem(scope: Scope, send: Send, request_id: str, status: int, title: str, detail: str) -> None:
        """A problem+json answer sent before the route ran; the connection closes after it."""
        body = json.dumps(
            {
                "type": f"https://grounded.dev/problems/{title.lower().replace(' ', '-')}",
                "title": title,
                "status": status,
                "detail": detail,
                "instance": scope.get("path", ""),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _finish(scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = _route_template(scope)
        method = str(scope.get("method", ""))
        REQUEST_LATENCY.labels(route=route, method=method, status=str(status)).observe(elapsed)
        state: dict[str, Any] = scope.get("state") or {}
        principal = state.get("principal")
        client = scope.get("client")
        log.info(
            "%s %s %d",
            method,
            scope.get("path", ""),
            status,
            extra={
                "method": method,
                "path": scope.get("path", ""),
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "client": client[0] if client else None,
                "key_id": getattr(principal, "key_id", None),
            },
        )
