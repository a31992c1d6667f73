"""grounded as an MCP server: ``search``, ``ask``, ``sql`` and ``sources`` tools, documents as resources.

Every tool answers for one caller, a :class:`~grounded.access.Principal`, exactly as the REST
route with the same name does: ``search`` and ``ask`` see only the documents of the caller's
groups, ``sql`` only the tables of sources the caller may read (a hidden table is described
like a missing one), ``sources`` needs an admin key, and a hidden document's resource reads
like one that does not exist. The caller is

- over stdio (``grounded mcp``): the operator's choice, the principal of ``--key`` (or
  ``$GROUNDED_API_KEY``), fixed for the process;
- over streamable HTTP (``/mcp`` on ``grounded serve``): each request's API key, checked by
  :mod:`grounded.api.mcp.http` before the request reaches the server.

Results are the REST API's own schemas (:mod:`grounded.api.schemas`), so an MCP client gets
the same fields (citations with document ids and character offsets) as a REST client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from grounded.access import Principal
from grounded.api.schemas import HitOut, QueryResponse, SearchResponse, SourcesResponse
from grounded.errors import Forbidden, GroundedError, InvalidRequest, NotFound, Unauthorized
from grounded.kb import KnowledgeBase
from grounded.ops.metrics import RETRIEVAL_HITS, observe_answer
from grounded.ops.scheduler import Refresher
from grounded.version import __version__

__all__ = ["DOC_URI", "PRINCIPAL_STATE", "Caller", "Document", "SqlResult", "build_server", "read_document"]

DOC_URI = "grounded://doc/{doc_id}{?start,end}"
"""A document's text by id; ``start``/``end`` (character offsets, as in citations) cut a span."""

PRINCIPAL_STATE = "grounded_principal"
"""Where :mod:`grounded.api.mcp.http` leaves the authenticated caller in the request's ASGI state."""

INSTRUCTIONS = (
    "grounded answers questions from an organisation's own documents and tables, every sentence "
    "cited. Use `ask` for a cited answer (it abstains when the sources do not say), `search` for "
    "passages, `sql` for one read-only SELECT over mirrored tables (<source>.<table>). Citations "
    "carry doc_id, start and end: read the passage in context with the resource "
    "grounded://doc/{doc_id}?start=..&end=.."
)

T = TypeVar("T")
log = logging.getLogger("grounded.mcp")


class SqlResult(BaseModel):
    """The rows of one read-only SELECT, and what they came from."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="More rows matched than the row limit let through.")
    tables: list[str] = Field(description="The mirrored tables the query read (<source>.<table>).")
    index_version: str


class Document(BaseModel):
    """A document the caller may read (``text`` is the requested span of it)."""

    doc_id: str
    source: str
    title: str
    uri: str
    start: int
    end: int
    text: str


def read_document(
    kb: KnowledgeBase, doc_id: str, principal: Principal, start: int | None = None, end: int | None = None
) -> Document:
    """Document ``doc_id`` (or its ``[start:end]`` span) if ``principal`` may read it.

    The ACL rule is the one every channel applies (:meth:`grounded.store.View.document`): a document with
    no ACL, or sharing a group with the caller, or any document for an admin. Anything else
    raises the same :class:`~grounded.errors.NotFound` as an id that does not exist; offsets
    outside the text raise :class:`~grounded.errors.InvalidRequest`.
    """
    view = kb.store.view(acl_groups=principal.acl_groups)
    row = view.document(doc_id)
    if row is None:
        raise NotFound(f"no document with id {doc_id!r} in version {view.version}")
    text = str(row["text"] or "")
    a = 0 if start is None else start
    b = len(text) if end is None else end
    if not 0 <= a <= b <= len(text):
        raise InvalidRequest(
            f"document {doc_id!r} has {len(text)} characters; start={start}, end={end} is outside it "
            "(0 <= start <= end <= length)"
        )
    return Document(
        doc_id=doc_id,
        source=str(row["source"]),
        title=str(row["title"] or ""),
        uri=str(row["uri"] or ""),
        start=a,
        end=b,
        text=text[a:b],
    )


Caller = Principal | Callable[[], Principal]
"""The stdio caller: a principal, or a function returning it per call (a revoked key then stops working)."""


def _principal(ctx: Context, fixed: Caller | None) -> Principal:
    """The caller: the HTTP request's (set by grounded.api.mcp.http), else the server's own."""
    request = ctx.request_context.request
    if request is not None:
        found = getattr(getattr(request, "state", None), PRINCIPAL_STATE, None)
        if isinstance(found, Principal):
            return found
        raise Unauthorized("this MCP endpoint was reached without grounded's authentication in front of it")
    if fixed is None:
        raise Unauthorized("no caller: start the server with a principal (grounded mcp --key KEY)")
    return fixed if isinstance(fixed, Principal) else fixed()


def _caller(ctx: Context, fixed: Caller | None) -> Principal:
    """:func:`_principal` for a tool: a refusal is a tool error the model can read."""
    try:
        return _principal(ctx, fixed)
    except Unauthorized as exc:
        raise ToolError(f"{exc.title} ({exc.status}): {exc}") from exc


async def _call(fn: Callable[[], T]) -> T:
    """Run blocking work (DuckDB, FAISS, the answer model) off the event loop; errors as tool errors."""
    try:
        return await anyio.to_thread.run_sync(fn)
    except GroundedError as exc:
        # The model reads the message, as a REST client reads problem+json's title and detail.
        raise ToolError(f"{exc.title} ({exc.status}): {exc}") from exc


def build_server(
    kb: KnowledgeBase, *, principal: Caller | None = None, refresher: Refresher | None = None
) -> MCPServer:
    """An MCP server over ``kb``.

    ``principal`` is the caller of every request that does not come over HTTP (stdio), or a
    function that returns it for each call (``grounded mcp`` re-checks its key each time); HTTP
    requests carry their own, from their API key (see :func:`grounded.api.mcp.http.mount`).
    ``refresher`` reports jobs to the ``sources`` tool (the API's own when mounted on it).
    """
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    server: MCPServer = MCPServer("grounded", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")
    # MCPServer calls logging.basicConfig(); a library must leave the host's logging alone.
    root.setLevel(before[0])
    for handler in root.handlers[len(before[1]) :]:
        root.removeHandler(handler)
    jobs = refresher

    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="What to look for.")],
        ctx: Context,
        k: Annotated[int, Field(ge=1, le=100, description="How many passages to return.")] = 5,
        filters: Annotated[
            dict[str, Any] | None,
            Field(description="source, doc_id, uri_prefix, updated_after, updated_before, metadata."),
        ] = None,
        mode: Literal["hybrid", "bm25", "dense"] = "hybrid",
    ) -> SearchResponse:
        """Passages that match the query (hybrid BM25 + dense search), with document ids and offsets."""
        who = _caller(ctx, principal)

        def run() -> SearchResponse:
            started = time.perf_counter()
            snapshot = kb.snapshot()
            hits = kb.search(query, k=k, filters=filters, mode=mode, acl_groups=who.acl_groups, snapshot=snapshot)
            RETRIEVAL_HITS.labels(route="mcp:search").observe(len(hits))
            return SearchResponse(
                query=query,
                index_version=snapshot.version.id,
                hits=[HitOut.from_hit(h) for h in hits],
                took_ms=round((time.perf_counter() - started) * 1000, 3),
            )

        return await _call(run)

    @server.tool(annotations=read_only)
    async def ask(
        question: Annotated[str, Field(min_length=1, max_length=2000, description="The question.")],
        ctx: Context,
        k: Annotated[int | None, Field(ge=1, le=20, description="Evidence passages to read.")] = None,
        filters: Annotated[dict[str, Any] | None, Field(description="The same filters as search.")] = None,
    ) -> QueryResponse:
        """A cited answer from the sources: every sentence ends in [n] citations, or it abstains
        ("The sources do not contain this.") with the closest evidence quoted."""
        who = _caller(ctx, principal)

        def run() -> QueryResponse:
            answer = kb.engine.answer(question, k=k, filters=filters, acl_groups=who.acl_groups)
            observe_answer(answer, "mcp:ask")
            return QueryResponse.of(answer)

        return await _call(run)

    @server.tool(annotations=read_only)
    async def sql(
        query: Annotated[
            str, Field(min_length=1, max_length=10_000, description="One SELECT (or WITH ... SELECT), DuckDB dialect.")
        ],
        ctx: Context,
    ) -> SqlResult:
        """One read-only SELECT over the mirrored tables (<source>.<table>), in the SQL tool's
        sandbox: no files, network or settings; a timeout and a row limit."""
        who = _caller(ctx, principal)

        def run() -> SqlResult:
            from grounded.tools import ToolContext, get_tool

            view = kb.store.view(acl_groups=who.acl_groups)  # the caller's tables, one pinned version
            result = get_tool("sql").call({"query": query}, ToolContext(view=view))
            if not result.ok:
                raise ToolError(result.error or "the query failed")
            data = result.data or {}
            return SqlResult(
                columns=list(data.get("columns", [])),
                rows=[list(r) for r in data.get("rows", [])],
                truncated=bool(data.get("truncated")),
                tables=list(result.provenance.get("tables", [])),
                index_version=str(result.provenance.get("index_version", "")),
            )

        return await _call(run)

    @server.tool(annotations=read_only)
    async def sources(ctx: Context) -> SourcesResponse:
        """Configured sources with schedule, freshness and last refresh (admin keys only, as on REST)."""
        who = _caller(ctx, principal)

        def run() -> SourcesResponse:
            nonlocal jobs
            if not who.admin:
                raise Forbidden("the sources tool needs an admin key (`grounded keys create --admin`)")
            from grounded.api.routes.sources import list_sources

            jobs = jobs or Refresher(kb)
            return list_sources(kb, jobs)

        return await _call(run)

    @server.resource(DOC_URI, name="document", mime_type="text/plain")
    async def document(doc_id: str, ctx: Context, start: int | None = None, end: int | None = None) -> str:
        """A document's text by id, or the [start:end] span a citation points at."""
        try:
            who = _principal(ctx, principal)
            found = await anyio.to_thread.run_sync(lambda: read_document(kb, doc_id, who, start, end))
        except NotFound as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except GroundedError as exc:
            raise ResourceError(f"{exc.title} ({exc.status}): {exc}") from exc
        return found.text

    return server
