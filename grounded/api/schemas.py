"""Request and response bodies of the REST API.

The server's routes and the Python client (:mod:`grounded.client`), the MCP tools
(:mod:`grounded.api.mcp`) and the framework integrations share these models, so a field added here
reaches every channel at once. Importing this module loads pydantic and nothing heavy.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from indexes.base import Hit

# Request bodies are strict (``strict=True``): ``"k": "10"`` or ``"k": true`` is a 422, not 10 or 1,
# so a client's type bug surfaces at once instead of as a surprising result.

if TYPE_CHECKING:
    from grounded.answering.types import Answer, AnswerSentence, Citation
    from grounded.ops.jobs import JobRecord

__all__ = [
    "CitationOut",
    "ConversationOut",
    "HitOut",
    "JobOut",
    "JobsResponse",
    "MessageIn",
    "QueryRequest",
    "QueryResponse",
    "SearchRequest",
    "SearchResponse",
    "SentenceOut",
    "SourceOut",
    "SourcesResponse",
]


class SearchRequest(BaseModel):
    """``POST /v1/search``: what to look for and how many results."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"query": "how to open a file", "k": 5}]}
    )

    query: str = Field(min_length=1, max_length=2000, description="The search text.")
    k: int = Field(10, ge=1, le=100, description="How many chunks to return.")
    filters: dict[str, Any] | None = Field(
        None,
        description="Narrow the search: source, doc_id, uri_prefix, updated_after, updated_before, metadata.",
    )
    mode: Literal["hybrid", "bm25", "dense"] = Field("hybrid", description="Which retrieval to use.")


class HitOut(BaseModel):
    """One retrieved chunk: text, score and where it sits in its document."""

    chunk_id: str = Field(description="Chunk id (a 63-bit integer, as a string for JavaScript clients).")
    score: float
    text: str
    start: int = Field(description="Character offset of the chunk in the document text.")
    end: int
    doc_id: str
    title: str
    uri: str
    source: str
    updated_at: datetime | None
    metadata: dict[str, Any]
    bm25_rank: int | None
    dense_rank: int | None
    rerank_score: float | None = Field(
        None, description="The reranker's probability that the chunk answers the query (search.rerank), else null."
    )

    @classmethod
    def from_hit(cls, hit: Hit) -> HitOut:
        return cls(
            chunk_id=str(hit.chunk_id),
            score=hit.score,
            text=hit.text,
            start=hit.start,
            end=hit.end,
            doc_id=hit.doc_id,
            title=hit.title,
            uri=hit.uri,
            source=hit.source,
            updated_at=hit.updated_at,
            metadata=hit.metadata,
            bm25_rank=hit.bm25_rank,
            dense_rank=hit.dense_rank,
            rerank_score=hit.rerank_score,
        )


class SearchResponse(BaseModel):
    query: str
    index_version: str
    hits: list[HitOut]
    took_ms: float


class MessageIn(BaseModel):
    """One turn of a conversation sent with a question."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["user", "assistant", "system"] = Field(description="Who spoke; system turns are ignored.")
    content: str = Field(max_length=100_000)


class QueryRequest(BaseModel):
    """``POST /v1/query``: the question (or a conversation ending in one), passages to read, filters.

    Send either ``query`` (one question, or the next question of the stored conversation
    ``conversation_id``) or ``messages`` (the whole dialogue; its last user turn is the question).
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"query": "where is mount logan located?", "k": 3},
                {
                    "messages": [
                        {"role": "user", "content": "where is mount logan?"},
                        {"role": "assistant", "content": "In Kluane National Park, Yukon. [1]"},
                        {"role": "user", "content": "how high is it?"},
                    ]
                },
            ]
        },
    )

    query: str | None = Field(None, min_length=1, max_length=2000, description="The question.")
    messages: list[MessageIn] | None = Field(
        None, min_length=1, max_length=1000, description="The conversation; the last user message is the question."
    )
    conversation_id: str | None = Field(
        None, max_length=100, description="Continue this stored conversation (only the key that created it may)."
    )
    conversation: bool = Field(
        False, description="Start a stored conversation with this question; the response carries its id."
    )
    k: int | None = Field(None, ge=1, le=20, description="Evidence passages to read (default: answer.k).")
    filters: dict[str, Any] | None = Field(None, description="The same filters as /v1/search.")
    cache: bool = Field(True, description="Use the answer cache.")

    @model_validator(mode="after")
    def _one_question(self) -> QueryRequest:
        if (self.query is None) == (self.messages is None):
            raise ValueError("send exactly one of `query` (a question) or `messages` (a conversation)")
        if self.conversation_id is not None and self.messages is not None:
            raise ValueError("`conversation_id` continues a stored conversation: send the next `query`, not `messages`")
        return self


class SentenceOut(BaseModel):
    text: str
    citations: list[int] = Field(description="Ids of the citations this sentence rests on.")
    quoted: bool = Field(description="True when the sentence is evidence quoted verbatim.")

    @classmethod
    def of(cls, s: AnswerSentence) -> SentenceOut:
        return cls(text=s.text, citations=list(s.citations), quoted=s.quoted)


class CitationOut(BaseModel):
    id: int
    doc_id: str
    chunk_id: str = Field(description="Chunk id (a 63-bit integer, as a string for JavaScript clients).")
    title: str
    uri: str
    start: int = Field(description="Character offset of the passage in its document.")
    end: int
    text: str
    source: str
    synced_at: datetime | None = Field(description="When the source was last synced: the answer holds as of then.")

    @classmethod
    def of(cls, c: Citation) -> CitationOut:
        return cls(
            id=c.id,
            doc_id=c.doc_id,
            chunk_id=str(c.chunk_id),
            title=c.title,
            uri=c.uri,
            start=c.start,
            end=c.end,
            text=c.text,
            source=c.source,
            synced_at=c.synced_at,
        )


class QueryResponse(BaseModel):
    query: str
    answer: str
    sentences: list[SentenceOut]
    citations: list[CitationOut]
    abstained: bool
    closest: SentenceOut | None = Field(description="When abstaining: the nearest evidence sentence, quoted.")
    index_version: str
    model: str
    cached: bool
    timings: dict[str, float]
    route: str = Field("unstructured", description="How the question was routed (grounded.grounding.router).")
    grounded: bool = Field(
        True,
        description="False for a conversational reply made without the sources (it states no facts and cites nothing).",
    )
    missing: list[str] = Field(
        default_factory=list,
        description="Names and numbers of the query that no evidence passage mentions: what a partial answer lacks.",
    )
    trace: dict[str, Any] = Field(
        default_factory=dict,
        description="Route decision, plan and tool calls; `checks`: the gate's decision and each drafted "
        "sentence's entailment score and fate.",
    )
    rewrite: str | None = Field(
        None, description="The standalone question a follow-up was rewritten into (null: answered as asked)."
    )
    answerability: Literal["answerable", "partial", "unanswerable", "underspecified"] = Field(
        "answerable",
        description="answerable; partial (the answer says what is missing); unanswerable (abstained); "
        "underspecified (the answer is one clarifying question).",
    )
    conversation_id: str | None = Field(None, description="The stored conversation this turn belongs to.")

    @classmethod
    def of(cls, a: Answer) -> QueryResponse:
        return cls(
            query=a.question,
            answer=a.text,
            sentences=[SentenceOut.of(s) for s in a.sentences],
            citations=[CitationOut.of(c) for c in a.citations],
            abstained=a.abstained,
            closest=SentenceOut.of(a.closest) if a.closest else None,
            index_version=a.index_version,
            model=a.model,
            cached=a.cached,
            timings=dict(a.timings),
            route=a.route,
            grounded=a.grounded,
            missing=list(a.missing),
            trace=dict(a.trace),
            rewrite=a.rewrite,
            answerability=a.answerability,
        )


class ConversationOut(BaseModel):
    """``GET /v1/conversations/{id}``: a stored conversation's turns, oldest first."""

    id: str
    turns: list[MessageIn]
    created_at: datetime
    updated_at: datetime


class JobOut(BaseModel):
    """One refresh of one source."""

    id: int
    source: str
    trigger: str = Field(description="schedule, manual (CLI) or api.")
    status: str = Field(description="running, succeeded, failed or interrupted.")
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    version: str | None = Field(description="The version the refresh published (or found current).")
    error: str | None
    error_kind: str | None
    stats: dict[str, Any] | None

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        return cls(
            id=job.id,
            source=job.source,
            trigger=job.trigger,
            status=job.status,
            attempts=job.attempts,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration_s=job.duration_s,
            version=job.version,
            error=job.error,
            error_kind=job.error_kind,
            stats=job.stats,
        )


class SourceOut(BaseModel):
    """A configured source: what it is, when it runs, how its last refresh went."""

    name: str
    type: str
    enabled: bool
    acl: list[str]
    schedule: str | None
    next_run: datetime | None = Field(description="Next scheduled run, before jitter (null: unscheduled).")
    schedule_error: str | None = None
    last_synced_at: datetime | None = Field(description="When the published version last took this source's data.")
    documents: int | None = Field(description="Documents of this source in the published version.")
    last_job: JobOut | None


class JobsResponse(BaseModel):
    jobs: list[JobOut]


class SourcesResponse(BaseModel):
    index_version: str | None
    sources: list[SourceOut]
