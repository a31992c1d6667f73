"""LlamaIndex: :class:`GroundedRetriever` (``NodeWithScore``s) and :class:`GroundedQueryEngine` (cited answers).

Nodes are ``TextNode``s whose ``metadata`` is :func:`grounded.integrations.citation_metadata`
(doc id, title, URI, source, offsets, score, index version), whose ``start_char_idx`` and
``end_char_idx`` are the passage's offsets in its document, and whose ``SOURCE`` relationship
names the document. :class:`GroundedQueryEngine` answers with grounded's own verified, cited
answer (no LlamaIndex LLM involved): ``response.source_nodes`` are the citations.

Example::

    import grounded
    from grounded.integrations.llamaindex import GroundedQueryEngine, GroundedRetriever

    kb = grounded.open("http://127.0.0.1:8000", api_key="gk_...")
    nodes = GroundedRetriever(kb, k=4).retrieve("how does with call __exit__?")
    response = GroundedQueryEngine(kb).query("how does with call __exit__?")
    print(response.response, [n.node.metadata["uri"] for n in response.source_nodes])

Needs ``pip install 'grounded[llamaindex]'``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

from grounded.answering.types import Answer, Citation
from grounded.integrations import citation_metadata, missing_extra
from indexes.base import Hit

try:
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.base.response.schema import Response
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
except ImportError as exc:
    raise missing_extra("llamaindex", exc) from exc

__all__ = ["GroundedQueryEngine", "GroundedRetriever", "to_node"]

_NOT_FOR_THE_LLM = ["chunk_id", "doc_id", "start", "end", "score", "index_version", "updated_at", "synced_at"]


def to_node(item: Hit | Citation, index_version: str | None) -> NodeWithScore:
    """A hit or a citation as a scored ``TextNode`` carrying its offsets and citation metadata."""
    node = TextNode(
        id_=str(item.chunk_id),
        text=item.text,
        metadata=citation_metadata(item, index_version),
        start_char_idx=item.start,
        end_char_idx=item.end,
        excluded_llm_metadata_keys=_NOT_FOR_THE_LLM,
        excluded_embed_metadata_keys=_NOT_FOR_THE_LLM,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=item.doc_id)},
    )
    return NodeWithScore(node=node, score=item.score)


def _local_only(kb: Any, acl_groups: Sequence[str] | None) -> dict[str, Any]:
    from grounded.client import RemoteKnowledgeBase

    if isinstance(kb, RemoteKnowledgeBase):
        if acl_groups is not None:
            raise ValueError("acl_groups applies to local knowledge bases; a served one reads as its API key")
        return {}
    return {"acl_groups": None if acl_groups is None else list(acl_groups)}


class GroundedRetriever(BaseRetriever):
    """grounded's hybrid search as a LlamaIndex retriever.

    ``kb``: ``grounded.open("kb")`` or ``grounded.open("http://...", api_key=...)``. Served, the
    API key decides what it may read; local, ``acl_groups`` does (``None``: everything).
    """

    def __init__(
        self,
        kb: Any,
        *,
        k: int = 5,
        filters: dict[str, Any] | None = None,
        mode: Literal["hybrid", "bm25", "dense"] = "hybrid",
        acl_groups: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.kb = kb
        self.k = k
        self.filters = filters
        self.mode: Literal["hybrid", "bm25", "dense"] = mode
        self._extra = _local_only(kb, acl_groups)
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.kb.search(query_bundle.query_str, self.k, filters=self.filters, mode=self.mode, **self._extra)
        return [to_node(hit, hits.index_version) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


class GroundedQueryEngine(BaseQueryEngine):
    """grounded's cited, verified answer as a LlamaIndex query engine.

    ``response.response`` is the answer text with its ``[n]`` markers, ``source_nodes`` the
    citations (as nodes, in citation order), ``metadata`` says ``abstained``, ``index_version``
    and ``cached``. An abstention is a normal response, not an error.
    """

    def __init__(
        self,
        kb: Any,
        *,
        k: int | None = None,
        filters: dict[str, Any] | None = None,
        acl_groups: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.kb = kb
        self.k = k
        self.filters = filters
        self._extra = _local_only(kb, acl_groups)
        super().__init__(callback_manager=kwargs.pop("callback_manager", None))

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}  # no LlamaIndex prompts: grounded's answer expert writes the answer

    def _response(self, answer: Answer) -> Response:
        return Response(
            response=answer.text,
            source_nodes=[to_node(c, answer.index_version) for c in answer.cited()],
            metadata={"abstained": answer.abstained, "index_version": answer.index_version, "cached": answer.cached},
        )

    def _query(self, query_bundle: QueryBundle) -> Response:
        return self._response(self.kb.ask(query_bundle.query_str, k=self.k, filters=self.filters, **self._extra))

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        return await asyncio.to_thread(self._query, query_bundle)
