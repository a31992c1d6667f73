"""Live calls through a configured REST source: the ``api`` tool.

Only endpoints configured under ``[sources.NAME]`` with ``type = "rest"`` can be called, of a
source the caller may read (its ``acl``, as for its documents), with the source's base URL,
auth, rate limit and retries; a call may add query parameters but never
change the host or path, so a model cannot make the server fetch an arbitrary URL.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import Field

from connectors._http import HttpClient, first, json_path
from connectors.registry import build_connector
from connectors.rest import RestConnector
from grounded.tools.base import Params, Tool, ToolContext, ToolResult, utc_now

__all__ = ["ApiTool"]

MAX_RECORDS = 20


class ApiArguments(Params):
    source: str = Field(min_length=1, description="A configured REST source.")
    endpoint: str = Field(min_length=1, description="One of the source's endpoints.")
    params: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Extra query parameters.")


class ApiTool(Tool[ApiArguments]):
    """A live GET on one endpoint of a configured REST source; records become evidence."""

    name = "api"
    description = "Call a configured REST API endpoint live (for facts that change) and return its records."
    Arguments = ApiArguments

    def __init__(self) -> None:
        self._clients: dict[str, tuple[RestConnector, HttpClient]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close every kept HTTP client (tests; a long-lived process whose sources changed)."""
        with self._lock:
            for _, client in self._clients.values():
                client.close()
            self._clients.clear()

    def _client(self, source: str, params: dict[str, Any]) -> tuple[RestConnector, HttpClient]:
        """One HTTP client per source and configuration, kept open: connections and TLS are reused."""
        key = json.dumps([source, params], sort_keys=True, default=str)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                connector = build_connector("rest", params, source=source)
                assert isinstance(connector, RestConnector)
                found = (connector, connector.client())
                self._clients[key] = found
            return found

    def run(self, args: ApiArguments, ctx: ToolContext) -> ToolResult:
        if ctx.view is None:
            return ToolResult.failure(self.name, "no knowledge base is open")
        # Only the REST sources this caller may read, by the same ACL as its documents and tables:
        # a source it may not read is described exactly like one that is not configured.
        readable = ctx.view.readable_sources()
        sources = {n: s for n, s in ctx.view.settings.sources.items() if readable is None or n in readable}
        config = sources.get(args.source)
        if config is None or config.type != "rest":
            rest = sorted(n for n, s in sources.items() if s.type == "rest")
            return ToolResult.failure(
                self.name,
                f"{args.source!r} is not a configured REST source; configured: {rest or 'none'}",
                refused=True,
            )
        connector, client = self._client(args.source, config.params)
        endpoint = next((e for e in connector.config.endpoints if e.name == args.endpoint), None)
        if endpoint is None:
            names = [e.name for e in connector.config.endpoints]
            return ToolResult.failure(
                self.name, f"source {args.source!r} has no endpoint {args.endpoint!r}; has {names}"
            )
        body, response = client.get(endpoint.path, {**endpoint.params, **args.params})
        fetched_at = utc_now()
        records = json_path(body, endpoint.records) if endpoint.records else body
        if isinstance(records, list) and len(records) == 1 and isinstance(records[0], list) and endpoint.records:
            records = records[0]  # json_path returns the matches: one match, the record list
        if not isinstance(records, list):
            records = [records]
        lines: list[str] = []
        keys: list[Any] = []
        for record in records[:MAX_RECORDS]:
            doc = connector.document(endpoint, record)
            keys.append(first(record, endpoint.key))
            if doc is not None:
                lines.append(f"{doc.title}: {doc.text}" if doc.title else doc.text)
        return ToolResult(
            tool=self.name,
            ok=True,
            text="\n".join(lines) or "The API returned no records.",
            data={"records": records[:MAX_RECORDS]},
            provenance={
                "tool": "api",
                "source": args.source,
                "endpoint": args.endpoint,
                "uri": str(response.request.url),
                "row_keys": keys,
                "fetched_at": fetched_at,
            },
            size=len(records),
        )
