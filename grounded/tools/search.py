"""Retrieval as tools: ``search`` (hybrid search with filters) and ``lookup`` (one document by id).

Both read the request's :class:`~grounded.store.View`: the version the question is answered
from, within the caller's filters and ACL, so tool evidence and passages never come from two
versions or cross groups.
"""

from __future__ import annotations

from pydantic import Field

from grounded.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["LookupTool", "SearchTool"]


class SearchArguments(Params):
    query: str = Field(min_length=1, max_length=2000, description="What to look for, in words.")
    k: int = Field(3, ge=1, le=20, description="How many passages to return.")
    source: str | None = Field(None, description="Only passages of this source.")


class SearchTool(Tool[SearchArguments]):
    """Hybrid (BM25 + dense) search over the knowledge base's passages."""

    name = "search"
    description = "Find the passages of the knowledge base's documents that best match a query."
    Arguments = SearchArguments

    def run(self, args: SearchArguments, ctx: ToolContext) -> ToolResult:
        if ctx.view is None:
            return ToolResult.failure(self.name, "no knowledge base is open")
        hits = ctx.view.search(args.query, args.k, source=args.source)
        version = ctx.view.version
        return ToolResult(
            tool=self.name,
            ok=True,
            text="\n".join(h.text for h in hits),
            data={"hits": hits},
            provenance={"tool": "search", "query": args.query, "index_version": version},
            size=len(hits),
        )


class LookupArguments(Params):
    doc_id: str = Field(min_length=1, max_length=200, description="The document's id, as search results give it.")
    max_chars: int = Field(4000, ge=100, le=50_000, description="Cut the text after this many characters.")


class LookupTool(Tool[LookupArguments]):
    """One document's title, URI and text, by id."""

    name = "lookup"
    description = "Read one document of the knowledge base by its id (from an earlier search)."
    Arguments = LookupArguments

    def run(self, args: LookupArguments, ctx: ToolContext) -> ToolResult:
        if ctx.view is None:
            return ToolResult.failure(self.name, "no knowledge base is open")
        found = ctx.view.document(args.doc_id)
        if found is None:
            return ToolResult.failure(self.name, f"no document with id {args.doc_id!r} in version {ctx.view.version}")
        doc_id, source, title, uri = found["doc_id"], found["source"], found["title"], found["uri"]
        text, updated_at = found["text"], found["updated_at"]
        text = str(text or "")[: args.max_chars]
        return ToolResult(
            tool=self.name,
            ok=True,
            text=text,
            data={"doc_id": doc_id, "source": source, "title": title, "uri": uri, "text": text},
            provenance={
                "tool": "lookup",
                "doc_id": doc_id,
                "source": source,
                "title": title or "",
                "uri": uri or "",
                "updated_at": updated_at.isoformat() if updated_at else None,
                "index_version": ctx.view.version,
            },
            size=len(text),
        )
