"""Tools served by a Model Context Protocol server, through the official ``mcp`` SDK's client.

A configured server (``[tools.sources.NAME] type = "mcp"``) is reached over stdio (``command``:
the SDK starts the process) or streamable HTTP (``url``). One session per source stays open in
a background event loop, so a call costs one round trip, not a process start; a session that
died (the server exited) is opened again on the next call.

The SDK's sessions are anyio task groups, which must be left by the task that entered them: one
long-lived task per source owns the session, and every request from the (synchronous) tool
layer reaches it through a queue and runs as its own task there, so parallel calls of a plan
run concurrently on the one session.

Each of the server's tools becomes a :class:`McpTool` named ``<source>_<tool>``, with the
server's ``inputSchema`` as its parameters: arguments are validated against it here, before
the request is sent. A result's text content becomes evidence, its structured content ``data``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fnmatch
import json
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from grounded.config import ToolSourceConfig
from grounded.errors import ConfigError
from grounded.tools.base import ToolContext, ToolResult, utc_now
from grounded.tools.openapi import MAX_TEXT_CHARS, tool_name
from grounded.tools.schema import SchemaTool

__all__ = ["McpSource", "McpTool"]

T = TypeVar("T")
Job = tuple[Callable[[Any], Awaitable[Any]], concurrent.futures.Future[Any]]


class McpSource:
    """One configured MCP server: its session (opened on first use) and its tools."""

    def __init__(self, name: str, config: ToolSourceConfig) -> None:
        self.name = name
        self.config = config
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Job | None] | None = None
        self._owner: concurrent.futures.Future[None] | None = None
        self._thread: threading.Thread | None = None

    # -- the session ---------------------------------------------------------------------------

    def _target(self) -> Any:
        from mcp.client.stdio import StdioServerParameters

        if self.config.command:
            env = {}
            for key, var in self.config.env.items():
                if var not in os.environ:
                    raise ConfigError(
                        f"tool source {self.name!r} passes ${var} to its server as {key}, but it is not set"
                    )
                env[key] = os.environ[var]
            command, *args = self.config.command
            return StdioServerParameters(command=command, args=args, env=env or None)
        assert self.config.url is not None
        auth = self.config.auth
        if auth is None:
            return self.config.url
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        secret = os.environ.get(auth.env)
        if not secret:
            raise ConfigError(f"tool source {self.name!r} needs the environment variable {auth.env}")
        if auth.scheme == "bearer":
            headers = {"Authorization": f"Bearer {secret}"}
        elif auth.scheme == "header" and auth.name:
            headers = {auth.name: secret}
        else:
            raise ConfigError(
                f"tool source {self.name!r}: an MCP server takes auth scheme bearer or header (with name)"
            )
        client = httpx2.AsyncClient(headers=headers, timeout=self.config.timeout_s)
        return streamable_http_client(self.config.url, http_client=client)

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        from mcp import Client

        queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._queue = queue
        try:
            async with Client(self._target(), read_timeout_seconds=self.config.timeout_s) as client:
                ready.set_result(None)
                async with asyncio.TaskGroup() as group:
                    while (job := await queue.get()) is not None:
                        group.create_task(_run_job(client, job))
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise
        finally:
            self._queue = None

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue[Job | None]]:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name=f"grounded-mcp-{self.name}", daemon=True)
                self._thread.start()
                self._loop = loop
            if self._owner is None or self._owner.done() or self._queue is None:
                ready: concurrent.futures.Future[None] = concurrent.futures.Future()
                self._owner = asyncio.run_coroutine_threadsafe(self._serve(ready), self._loop)
                try:
                    ready.result(timeout=self.config.timeout_s + 20)
                except concurrent.futures.TimeoutError as exc:
                    raise ConfigError(
                        f"MCP tool source {self.name!r} did not start within {self.config.timeout_s + 20:g}s"
                    ) from exc
                except Exception as exc:
                    raise ConfigError(f"cannot connect to MCP tool source {self.name!r}: {_reason(exc)}") from exc
            assert self._queue is not None
            return self._loop, self._queue

    def run(self, fn: Callable[[Any], Awaitable[T]], *, timeout_s: float | None = None) -> T:
        """``await fn(client)`` on the source's session, from synchronous code."""
        loop, queue = self._ensure()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        loop.call_soon_threadsafe(queue.put_nowait, (fn, future))
        result: T = future.result(timeout=(timeout_s or self.config.timeout_s) + 5)
        return result

    def close(self) -> None:
        """End the session (the stdio server exits) and the loop."""
        with self._lock:
            loop, queue, owner, thread = self._loop, self._queue, self._owner, self._thread
            self._loop = self._queue = self._owner = self._thread = None
        if loop is None:
            return
        if queue is not None:
            loop.call_soon_threadsafe(queue.put_nowait, None)
        if owner is not None:
            with contextlib.suppress(Exception):
                owner.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        loop.close()

    # -- tools ---------------------------------------------------------------------------------

    def tools(self) -> list[McpTool]:
        async def listing(client: Any) -> list[Any]:
            found: list[Any] = []
            cursor = None
            while True:
                page = await client.list_tools(cursor=cursor)
                found.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    return found

        include = self.config.include
        return [
            McpTool(self, t.name, t.description or t.name, t.input_schema)
            for t in self.run(listing)
            if not include or any(fnmatch.fnmatchcase(t.name, p) for p in include)
        ]


async def _run_job(client: Any, job: Job) -> None:
    fn, future = job
    try:
        future.set_result(await fn(client))
    except Exception as exc:
        future.set_exception(exc)


def _reason(exc: BaseException) -> str:
    """The first real error inside an exception group (anyio wraps connection failures in them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


class McpTool(SchemaTool):
    """One tool of an MCP server, called through the source's session."""

    kind = "mcp"

    def __init__(self, owner: McpSource, remote_name: str, description: str, schema: dict[str, Any]) -> None:
        super().__init__(
            tool_name(owner.name, remote_name),
            description[:1000],
            schema,
            source=owner.name,
            groups=tuple(owner.config.acl),
        )
        self.owner = owner
        self.remote_name = remote_name

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        timeout = self.owner.config.timeout_s

        async def call(client: Any) -> Any:
            return await client.call_tool(self.remote_name, args, read_timeout_seconds=timeout)

        try:
            result = self.owner.run(call, timeout_s=timeout)
        except (concurrent.futures.TimeoutError, TimeoutError):
            return ToolResult.failure(self.name, f"the MCP server did not answer within {timeout:g}s")
        except ConfigError as exc:
            return ToolResult.failure(self.name, str(exc))
        except Exception as exc:
            return ToolResult.failure(self.name, f"the MCP call failed: {_reason(exc)}")
        text = "\n".join(str(getattr(c, "text", "")) for c in result.content if getattr(c, "text", None)).strip()
        if result.is_error:
            return ToolResult.failure(self.name, f"the MCP server said: {text[:500] or 'error'}")
        data = result.structured_content
        if not text and data is not None:
            text = json.dumps(data, ensure_ascii=False)
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS] + " (cut)"
        return ToolResult(
            tool=self.name,
            ok=True,
            text=text or "The tool returned no content.",
            data=data if data is not None else text,
            provenance={
                "tool": self.name,
                "source": self.owner.name,
                "mcp_tool": self.remote_name,
                "uri": self.owner.config.url or f"mcp+stdio:{self.owner.name}",
                "fetched_at": utc_now(),
            },
            size=1,
        )
