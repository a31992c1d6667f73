"""Tools from an OpenAPI 3 document: one tool per operation.

An operation's path, query and header parameters and its JSON request body become one JSON
schema (``parameters``): a body whose schema is an object with properties is merged into the
top level when no name collides (small models fill flat arguments best), otherwise it is one
``body`` argument. Local ``$ref`` s are inlined. The tool is named ``<source>_<operationId>``
(``<source>_<method>_<path>`` when the operation has no id), letters, digits and ``_`` only,
so every backend's function-name rule accepts it.

Calls go through :class:`connectors._http.HttpClient`, the client the API connectors use:
the source's timeout per attempt, retries with backoff on 429/5xx (idempotent methods only,
see :meth:`~connectors._http.HttpClient.request`), and a response-size limit enforced while the
body streams in. Credentials come from the environment variable the config names, read at
call time, and only ever go to the document's own base URL: arguments fill the path template
and the query, never the host.

Example::

    tools = OpenApiSource("petstore", ToolSourceConfig(type="openapi", spec="openapi.json")).tools()
    tools[0].name, tools[0].spec.parameters        # ('petstore_getPet', {'type': 'object', ...})
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from connectors._http import HttpClient
from grounded.config import ToolSourceConfig
from grounded.errors import ConfigError, ConnectorError
from grounded.tools.base import ToolContext, ToolResult, utc_now
from grounded.tools.schema import SchemaTool

__all__ = ["OpenApiSource", "OpenApiTool", "Operation", "load_document", "operations", "render_value", "tool_name"]

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
MAX_TEXT_CHARS = 4000
MAX_RECORDS = 20


def tool_name(source: str, name: str) -> str:
    """``<source>_<name>`` with every character outside ``[A-Za-z0-9_]`` replaced by ``_`` (64 at most)."""
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", f"{source}_{name}").strip("_")
    return cleaned[:64]


def load_document(spec: str, *, timeout_s: float = 30.0, base: Path | None = None) -> dict[str, Any]:
    """The OpenAPI document at ``spec`` (an http(s) URL or a file path; JSON or YAML), parsed."""
    if spec.startswith(("http://", "https://")):
        try:
            response = httpx.get(spec, timeout=timeout_s, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ConfigError(f"cannot fetch the OpenAPI document {spec!r}: {exc}") from exc
        text = response.text
    else:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the OpenAPI document {spec!r}: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        try:
            import yaml  # type: ignore[import-untyped]  # pyyaml comes with transformers
        except ImportError as exc:
            raise ConfigError(f"{spec!r} is not JSON, and reading YAML needs pyyaml (pip install pyyaml)") from exc
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{spec!r} is neither JSON nor YAML: {exc}") from exc
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3"):
        raise ConfigError(f"{spec!r} is not an OpenAPI 3 document (no `openapi: 3.x` field)")
    return doc


def _deref(node: Any, doc: Mapping[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """``node`` with local ``$ref`` s inlined; a cycle stops at an open object schema."""
    if isinstance(node, list):
        return [_deref(v, doc, seen) for v in node]
    if not isinstance(node, Mapping):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#/") or ref in seen:
            return {"type": "object"}
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(target, Mapping) else {}
        return _deref(target, doc, (*seen, ref))
    return {k: _deref(v, doc, seen) for k, v in node.items() if k not in ("example", "examples", "xml")}


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the document, as a tool: where each argument goes on the request."""

    name: str
    method: str
    path: str
    description: str
    parameters: dict[str, Any]
    locations: dict[str, str]
    """Argument -> ``path``, ``query``, ``header``, ``body`` (a body property) or ``body*`` (the whole body)."""


def _describe(op: Mapping[str, Any], method: str, path: str) -> str:
    parts = [str(op.get("summary") or "").strip(), str(op.get("description") or "").strip()]
    text = ". ".join(p.rstrip(".") for p in parts if p) or f"{method.upper()} {path}"
    return text[:1000]


def operations(doc: Mapping[str, Any]) -> list[Operation]:
    """Every operation of ``doc`` with its arguments' schema, in document order."""
    found: list[Operation] = []
    for path, item in (doc.get("paths") or {}).items():
        item = _deref(item, doc)
        shared = item.get("parameters", [])
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            properties: dict[str, Any] = {}
            required: list[str] = []
            locations: dict[str, str] = {}
            own = {(p.get("name"), p.get("in")) for p in op.get("parameters", [])}
            params = [p for p in shared if (p.get("name"), p.get("in")) not in own] + list(op.get("parameters", []))
            for param in params:
                where, pname = param.get("in"), param.get("name")
                if where not in ("path", "query", "header") or not pname or pname in properties:
                    continue
                schema = dict(param.get("schema") or {"type": "string"})
                if param.get("description"):
                    schema["description"] = str(param["description"])[:300]
                properties[pname] = schema
                locations[pname] = where
                if param.get("required") or where == "path":
                    required.append(pname)
            body: dict[str, Any] = dict((op.get("requestBody") or {}).get("content") or {})
            media: dict[str, Any] = body.get("application/json") or next(iter(body.values()), None) or {}
            body_schema = media.get("schema")
            if body_schema:
                body_required = bool((op.get("requestBody") or {}).get("required"))
                fields = body_schema.get("properties") if body_schema.get("type", "object") == "object" else None
                if fields and not set(fields) & set(properties):
                    for fname, fschema in fields.items():
                        properties[fname] = fschema
                        locations[fname] = "body"
                    if body_required:
                        required.extend(r for r in body_schema.get("required", []) if r in fields)
                else:
                    properties["body"] = body_schema
                    locations["body"] = "body*"
                    if body_required:
                        required.append("body")
            name = str(op.get("operationId") or f"{method}_{path}")
            schema = {"type": "object", "properties": properties, "required": required}
            found.append(Operation(name, method, path, _describe(op, method, path), schema, locations))
    return found


def render_value(value: Any) -> str:
    """A JSON response as short lines the writer can quote: ``key = value; ...`` per record."""

    def line(record: Any) -> str:
        if isinstance(record, Mapping):
            return "; ".join(
                f"{k} = {json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v}"
                for k, v in record.items()
            )
        return str(record)

    if isinstance(value, list):
        lines = [f"The API returned {len(value)} record{'s' if len(value) != 1 else ''}."]
        lines += [f"Record {i}: {line(r)}." for i, r in enumerate(value[:MAX_RECORDS], start=1)]
        text = "\n".join(lines)
    elif isinstance(value, Mapping):
        text = line(value) + "."
    else:
        text = str(value)
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + " (cut)"


class OpenApiSource:
    """One configured OpenAPI source: its document, base URL, credentials and HTTP client."""

    def __init__(self, name: str, config: ToolSourceConfig, *, base: Path | None = None) -> None:
        self.name = name
        self.config = config
        assert config.spec is not None
        self.doc = load_document(config.spec, timeout_s=config.timeout_s, base=base)
        servers = self.doc.get("servers") or []
        base_url = config.base_url or (servers[0].get("url") if servers and isinstance(servers[0], Mapping) else None)
        if not base_url and config.spec.startswith(("http://", "https://")):
            base_url = str(httpx.URL(config.spec).join("/"))
        elif base_url and config.spec.startswith(("http://", "https://")):
            base_url = str(httpx.URL(config.spec).join(base_url))  # a relative server URL
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"tool source {name!r}: no absolute base URL (the document's servers[0] is {base_url!r}); "
                "set base_url in [tools.sources." + name + "]"
            )
        self.base_url = base_url.rstrip("/")
        self._client: HttpClient | None = None
        self._lock = threading.Lock()

    def client(self) -> HttpClient:
        with self._lock:
            if self._client is None:
                hint = f"${self.config.auth.env}" if self.config.auth else ""
                self._client = HttpClient(
                    self.base_url + "/",
                    timeout=self.config.timeout_s,
                    max_retries=self.config.max_retries,
                    max_wait=self.config.timeout_s,
                    secret_hint=hint,
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def credentials(self) -> tuple[dict[str, str], dict[str, str]]:
        """``(headers, query parameters)`` carrying the secret, read from the environment now."""
        auth = self.config.auth
        if auth is None:
            return {}, {}
        secret = os.environ.get(auth.env)
        if not secret:
            raise ConfigError(
                f"tool source {self.name!r} needs the environment variable {auth.env} (its {auth.scheme} credential)"
            )
        if auth.scheme == "bearer":
            return {"Authorization": f"Bearer {secret}"}, {}
        if auth.scheme == "basic":
            user, _, password = secret.partition(":")
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}, {}
        if not auth.name:
            raise ConfigError(f"tool source {self.name!r}: auth scheme {auth.scheme!r} needs `name`")
        return ({auth.name: secret}, {}) if auth.scheme == "header" else ({}, {auth.name: secret})

    def tools(self) -> list[OpenApiTool]:
        include = self.config.include
        return [
            OpenApiTool(self, op)
            for op in operations(self.doc)
            if not include or any(fnmatch.fnmatchcase(op.name, pattern) for pattern in include)
        ]


class OpenApiTool(SchemaTool):
    """One operation of an OpenAPI source, called live; the response becomes evidence."""

    kind = "openapi"

    def __init__(self, owner: OpenApiSource, operation: Operation) -> None:
        super().__init__(
            tool_name(owner.name, operation.name),
            operation.description,
            operation.parameters,
            source=owner.name,
            groups=tuple(owner.config.acl),
        )
        self.owner = owner
        self.operation = operation

    def request_parts(self, args: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, str], Any]:
        """``(path, query, headers, json body)`` for validated ``args``."""
        op = self.operation
        path = op.path
        query: dict[str, Any] = {}
        headers: dict[str, str] = {}
        body: Any = None
        for key, value in args.items():
            where = op.locations.get(key)
            if where == "path":
                # quote(safe=""): a value cannot add a path segment, a query or a host.
                path = path.replace("{" + key + "}", quote(str(value), safe=""))
            elif where == "query":
                query[key] = json.dumps(value) if isinstance(value, dict | list) else value
            elif where == "header":
                headers[key] = str(value)
            elif where == "body":
                body = {**(body or {}), key: value}
            elif where == "body*":
                body = value
        return path.lstrip("/"), query, headers, body

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        path, query, headers, body = self.request_parts(args)
        try:
            secret_headers, secret_query = self.owner.credentials()
        except ConfigError as exc:
            return ToolResult.failure(self.name, str(exc), refused=True)
        try:
            value, response = self.owner.client().request(
                self.operation.method,
                path,
                {**query, **secret_query} or None,
                json_body=body,
                headers={**headers, **secret_headers},
                max_bytes=self.owner.config.max_response_bytes,
                expect_json=False,
            )
        except ConnectorError as exc:
            return ToolResult.failure(self.name, str(exc))
        url = (
            response.request.url.copy_remove_param(self.owner.config.auth.name)
            if (self.owner.config.auth and self.owner.config.auth.scheme == "query" and self.owner.config.auth.name)
            else response.request.url
        )
        records = value if isinstance(value, list) else [value]
        return ToolResult(
            tool=self.name,
            ok=True,
            text=render_value(value) if value not in ("", None) else "The API returned no content.",
            data=value,
            provenance={
                "tool": self.name,
                "source": self.owner.name,
                "operation": self.operation.name,
                "method": self.operation.method.upper(),
                "uri": str(url),
                "status": response.status_code,
                "fetched_at": utc_now(),
            },
            size=len(records),
        )
