"""LangChain: :class:`GroundedRetriever`, a ``BaseRetriever`` over a local or served knowledge base.

Each retrieved chunk becomes a ``Document`` whose ``page_content`` is the passage and whose
``metadata`` says where it sits (:func:`grounded.integrations.citation_metadata`: doc id,
title, URI, source, character offsets, score, index version), so a chain can cite it.

Example::

    from grounded.integrations.langchain import GroundedRetriever

    retriever = GroundedRetriever.from_url("http://127.0.0.1:8000", api_key="gk_...", k=4)
    for doc in retriever.invoke("how does with call __exit__?"):
        print(doc.metadata["title"], doc.metadata["uri"], doc.metadata["start"], doc.metadata["end"])

grounded's own cited answers reach LangChain through the OpenAI-compatible route
(``langchain_openai.ChatOpenAI(base_url="http://host:8000/v1", api_key=KEY, model="grounded")``);
see ``docs/integrations/langchain.md``. Needs ``pip install 'grounded[langchain]'``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from grounded.integrations import citation_metadata, missing_extra

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:
    raise missing_extra("langchain", exc) from exc

__all__ = ["GroundedRetriever"]


class GroundedRetriever(BaseRetriever):
    """Passages from grounded's hybrid search as LangChain ``Document``s with citation metadata.

    ``kb`` is a local :class:`~grounded.kb.KnowledgeBase` (``grounded.open("kb")``) or a served
    one (``grounded.open("http://...", api_key=...)``, or :meth:`from_url`). Served, the API
    key decides what the retriever may read; local, ``acl_groups`` does (``None``: everything).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kb: Any = Field(description="A KnowledgeBase or RemoteKnowledgeBase (anything with grounded's search).")
    k: int = Field(5, ge=1, le=100, description="Passages per query.")
    filters: dict[str, Any] | None = Field(None, description="grounded search filters (source, doc_id, ...).")
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"
    acl_groups: list[str] | None = Field(None, description="Local knowledge bases only: the groups to read as.")

    @model_validator(mode="after")
    def _check_kb(self) -> GroundedRetriever:
        from grounded.client import RemoteKnowledgeBase

        if not callable(getattr(self.kb, "search", None)):
            # ValueError, not TypeError: pydantic turns it into the ValidationError callers expect.
            raise ValueError(f"kb must be a grounded knowledge base (grounded.open(...)); got {type(self.kb).__name__}")  # noqa: TRY004
        if self.acl_groups is not None and isinstance(self.kb, RemoteKnowledgeBase):
            raise ValueError("acl_groups applies to local knowledge bases; a served one reads as its API key")
        return self

    @classmethod
    def from_url(cls, url: str, *, api_key: str | None = None, **kwargs: Any) -> GroundedRetriever:
        """A retriever over the knowledge base ``grounded serve`` serves at ``url``."""
        from grounded.client import RemoteKnowledgeBase

        return cls(kb=RemoteKnowledgeBase(url, api_key=api_key), **kwargs)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        from grounded.client import RemoteKnowledgeBase

        extra = {} if isinstance(self.kb, RemoteKnowledgeBase) else {"acl_groups": self.acl_groups}
        hits = self.kb.search(query, self.k, filters=self.filters, mode=self.mode, **extra)
        return [
            Document(id=str(hit.chunk_id), page_content=hit.text, metadata=citation_metadata(hit, hits.index_version))
            for hit in hits
        ]
