"""``grounded.open("http://...")``: a served knowledge base behind the local one's reading interface.

``search`` returns the same :class:`~grounded.display.SearchResults` of
:class:`~indexes.base.Hit` and ``ask`` the same :class:`~grounded.answer.Answer` as a local
:class:`~grounded.kb.KnowledgeBase`, so code and notebooks written against one run against the
other (Jupyter renders them the same way). What the server does not send is filled with
neutral values: a hit's ``key`` is ``""`` and ``ordinal`` ``0``; a citation's ``score`` is
``0.0``; a sentence's verifier ``support`` is ``1.0``. Writing (``ingest``, ``sync``) and the
exploration helpers that read the files directly are not available remotely; the admin routes
are on :attr:`RemoteKnowledgeBase.client`.

Example::

    kb = grounded.open("http://127.0.0.1:8000", api_key="gk_...")
    for hit in kb.search("how does with call __exit__", k=3):
        print(hit.score, hit.title, hit.uri, hit.start, hit.end)
    print(kb.ask("how does with call __exit__?").text)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from grounded.answering.types import Answer, AnswerSentence, Citation
from grounded.api.schemas import CitationOut, HitOut, QueryResponse, SearchResponse, SentenceOut
from grounded.client._wire import History, Mode
from grounded.client.client import DEFAULT_TIMEOUT_S, Client
from grounded.retrieval.results import SearchResults
from indexes.base import Hit

__all__ = ["RemoteKnowledgeBase", "to_answer", "to_hit", "to_results"]

_LOCAL_ONLY = frozenset(
    {"ingest", "sync", "snapshot", "engine", "embedder", "versions", "settings", "stats", "sources", "source",
     "documents", "tables", "sql", "explain", "trace"}
)  # fmt: skip


def to_hit(hit: HitOut) -> Hit:
    """A served hit as the local :class:`~indexes.base.Hit` (``key`` is not served: ``""``)."""
    return Hit(
        chunk_id=int(hit.chunk_id),
        doc_id=hit.doc_id,
        score=hit.score,
        text=hit.text,
        start=hit.start,
        end=hit.end,
        title=hit.title,
        uri=hit.uri,
        source=hit.source,
        key="",
        updated_at=hit.updated_at,
        metadata=dict(hit.metadata),
        bm25_rank=hit.bm25_rank,
        dense_rank=hit.dense_rank,
        rerank_score=hit.rerank_score,
    )


def to_results(response: SearchResponse, mode: str = "hybrid") -> SearchResults:
    """A ``/v1/search`` response as the local :class:`~grounded.display.SearchResults`."""
    return SearchResults(
        (to_hit(h) for h in response.hits),
        query=response.query,
        index_version=response.index_version,
        mode=mode,
        took_ms=response.took_ms,
    )


def _sentence(s: SentenceOut) -> AnswerSentence:
    return AnswerSentence(s.text, tuple(s.citations), s.quoted)


def _citation(c: CitationOut) -> Citation:
    return Citation(
        id=c.id,
        chunk_id=int(c.chunk_id),
        doc_id=c.doc_id,
        title=c.title,
        uri=c.uri,
        start=c.start,
        end=c.end,
        text=c.text,
        source=c.source,
        synced_at=c.synced_at,
        score=0.0,
    )


def to_answer(response: QueryResponse) -> Answer:
    """A ``/v1/query`` response as the local :class:`~grounded.answer.Answer`."""
    return Answer(
        question=response.query,
        text=response.answer,
        sentences=tuple(_sentence(s) for s in response.sentences),
        citations=tuple(_citation(c) for c in response.citations),
        abstained=response.abstained,
        index_version=response.index_version,
        model=response.model,
        closest=_sentence(response.closest) if response.closest else None,
        timings=dict(response.timings),
        cached=response.cached,
        route=response.route,
        trace=dict(response.trace),
        rewrite=response.rewrite,
        answerability=response.answerability,
    )


class RemoteKnowledgeBase:
    """The reading side of a :class:`~grounded.kb.KnowledgeBase`, served by ``grounded serve`` at ``url``."""

    def __init__(
        self, url: str, *, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT_S, client: Client | None = None
    ) -> None:
        self.client = client if client is not None else Client(url, api_key=api_key, timeout=timeout)
        self.url = self.client.url

    def __repr__(self) -> str:
        return f"RemoteKnowledgeBase({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def __getattr__(self, name: str) -> Any:
        if name in _LOCAL_ONLY:
            raise AttributeError(
                f"{name!r} needs the knowledge base's files and is not available over HTTP ({self.url}); "
                f"open the directory with grounded.open(PATH) on the server, or use .client for the REST API"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def version(self) -> str | None:
        """The version the server publishes now (``None`` before its first ingest)."""
        version = self.client.health().get("index_version")
        return None if version is None else str(version)

    def search(
        self, query: str, k: int = 10, *, filters: Mapping[str, Any] | None = None, mode: Mode = "hybrid"
    ) -> SearchResults:
        """The ``k`` best chunks the key may read (see :meth:`grounded.kb.KnowledgeBase.search`)."""
        return to_results(self.client.search(query, k, filters=filters, mode=mode), mode)

    def ask(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        use_cache: bool = True,
        history: History | None = None,
    ) -> Answer:
        """A cited, verified answer (see :meth:`grounded.kb.KnowledgeBase.ask`, ``history`` included)."""
        return to_answer(self.client.ask(question, k=k, filters=filters, cache=use_cache, history=history))
