"""An OpenAI-compatible ``/v1/chat/completions`` server on loopback, serving a real local model.

It speaks the protocol the way vLLM and llama.cpp server do for what grounded sends: plain
completions, ``response_format`` json_schema (decoded under the schema) and ``tools`` with
``tool_choice`` (decoded under the calls' schema, answered as ``message.tool_calls`` with JSON
string arguments and ``finish_reason="tool_calls"``). The model behind it is a real generator
(the transformers backend with SmolLM2 in the tests), so the HTTP path is tested end to end.

``faults`` makes it fail first, the way a loaded or restarting server does: each entry is a
status and headers (e.g. ``(429, {"retry-after": "2"})``) answered to one request, in order,
before it serves completions again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from grounded.errors import ExpertError
from grounded.experts.base import Generation, Message, StructuredGenerator


@dataclass(frozen=True, slots=True)
class _Function:
    name: str
    description: str
    parameters: dict[str, Any]


def _usage(g: Generation) -> dict[str, int]:
    return {"prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens}


def complete(model: StructuredGenerator, body: dict[str, Any]) -> dict[str, Any]:
    """One chat completion response body for a request body."""
    messages = [Message(m["role"], m.get("content") or "") for m in body["messages"]]
    max_tokens = int(body.get("max_tokens") or 128)
    if body.get("tools"):
        tools = [_Function(**t["function"]) for t in body["tools"]]
        out = model.generate_tool_calls(
            messages, tools, max_calls=4 if body.get("parallel_tool_calls", True) else 1, max_tokens=max_tokens
        )
        calls = [
            {"id": f"call_{i}", "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for i, c in enumerate(out.calls)
        ]
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": calls}
        return {"choices": [{"message": message, "finish_reason": "tool_calls"}], "usage": _usage(out.generation)}
    if (body.get("response_format") or {}).get("type") == "json_schema":
        spec = body["response_format"]["json_schema"]
        value = model.generate_json(messages, spec["schema"], max_tokens=max_tokens, name=spec["name"])
        message = {"role": "assistant", "content": json.dumps(value.value)}
        return {"choices": [{"message": message, "finish_reason": "stop"}], "usage": _usage(value.generation)}
    g = model.generate(messages, max_tokens=max_tokens, stop=body.get("stop") or ())
    message = {"role": "assistant", "content": g.text}
    return {"choices": [{"message": message, "finish_reason": g.finish_reason}], "usage": _usage(g)}


@contextmanager
def serve(
    model: StructuredGenerator, *, faults: Sequence[tuple[int, dict[str, str]]] = ()
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Serve ``model`` on 127.0.0.1 (a free port); yields the base URL and the request bodies seen."""
    seen: list[dict[str, Any]] = []
    pending = list(faults)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            seen.append(body)
            with lock:
                fault = pending.pop(0) if pending else None
            if fault is not None:
                self._send(fault[0], {"error": {"message": f"injected HTTP {fault[0]}"}}, fault[1])
                return
            try:
                self._send(200, complete(model, body))
            except ExpertError as exc:
                self._send(400, {"error": {"message": str(exc)}})

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
