"""Look inside a knowledge base: its sources, documents, mirrored tables, read-only SQL, and why
retrieval ranked what it ranked. The :class:`~grounded.kb.KnowledgeBase` methods ``sources``,
``source``, ``documents``, ``tables``, ``sql``, ``explain`` and ``trace`` call into here.

SQL runs on the version's sandboxed, read-only connection in its owner scope
(:class:`grounded.sql.database.ReadOnlyDatabase`): one ``SELECT`` per call
(:func:`grounded.sql.guard.check_statement`); anything else is an ``InvalidRequest``.

Example::

    kb.sql("SELECT source, count(*) AS n FROM documents GROUP BY ALL ORDER BY n DESC")
    kb.explain("how does the with statement call __exit__")   # BM25 vs dense vs fused ranks
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pyarrow as pa

from grounded.answering.html import steps_html
from grounded.errors import InvalidRequest, NotFound
from grounded.html import STYLE, link, table_html
from grounded.retrieval import fuse, parse_filters
from grounded.sql.database import ReadOnlyDatabase, TableInfo
from grounded.sql.guard import check_statement
from grounded.store import KnowledgeStore

if TYPE_CHECKING:
    from grounded.answering.engine import Draft
    from grounded.answering.types import Answer

__all__ = ["AnswerTrace", "ExploreMixin", "SourceInfo", "Sources"]


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """One source of the knowledge base as of the current version."""

    name: str
    type: str | None
    last_synced_at: datetime | None
    documents: int
    chunks: int
    tables: tuple[TableInfo, ...] = ()
    recent: tuple[Mapping[str, Any], ...] = ()
    """A few of its documents, most recently updated first (doc_id, title, uri, updated_at)."""

    def _repr_html_(self) -> str:
        synced = self.last_synced_at.isoformat(timespec="seconds") if self.last_synced_at else "never"
        tables = (
            table_html(
                [
                    {"table": t.quoted, "rows": t.rows, "columns": [f"{n} {ty}" for n, ty in t.columns]}
                    for t in self.tables
                ]
            )
            if self.tables
            else "<div class='muted'>no mirrored tables</div>"
        )
        docs = "".join(
            f"<li>{link(str(d.get('title') or d['doc_id']), str(d.get('uri') or ''))}</li>" for d in self.recent
        )
        return (
            f"<div class='gr'>{STYLE}<b>{_escape(self.name)}</b> <span class='muted'>{_escape(self.type or '?')}"
            f" · synced {_escape(synced)} · {self.documents} documents · {self.chunks} chunks</span>"
            f"{tables}{f'<ul>{docs}</ul>' if docs else ''}</div>"
        )


class Sources(list[SourceInfo]):
    """The sources of a knowledge base; a table in Jupyter, ``to_pandas()`` for a DataFrame."""

    def _rows(self) -> list[dict[str, Any]]:
        return [
            {
                "name": s.name,
                "type": s.type,
                "last_synced_at": s.last_synced_at,
                "documents": s.documents,
                "chunks": s.chunks,
                "tables": len(s.tables),
            }
            for s in self
        ]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self._rows(), columns=["name", "type", "last_synced_at", "documents", "chunks", "tables"])

    def _repr_html_(self) -> str:
        return f"<div class='gr'>{STYLE}{table_html(self._rows())}</div>"


@dataclass(frozen=True, slots=True)
class AnswerTrace:
    """What happened on the way to an answer: timings, what the model wrote, each check."""

    answer: Answer
    draft: Draft | None
    note: str = ""
    """Why there is no draft, when there is none."""

    def __repr__(self) -> str:
        state = "no draft" if self.draft is None else f"{len(self.draft.parsed)} drafted sentence(s)"
        return f"AnswerTrace({self.answer.question!r}, {state}, abstained={self.answer.abstained})"

    def rows(self) -> list[dict[str, Any]]:
        """One row per sentence the model wrote: the verifier's findings and what became of it.

        ``outcome`` is ``kept`` (cited as the model did), ``kept, cited [n]`` (the verifier
        found the passage that supports an uncited or miscited sentence) or ``replaced or
        dropped`` (an evidence quote stands in for it, or nothing does).
        """
        if self.draft is None:
            return []
        final = {s.text: s.citations for s in self.answer.sentences if not s.quoted}
        out: list[dict[str, Any]] = []
        for i, (text, cites) in enumerate(self.draft.parsed):
            check = self.draft.checks[i] if i < len(self.draft.checks) else None
            row: dict[str, Any] = {"sentence": text, "cites": cites or "none"}
            if check is not None:
                row.update(dataclasses.asdict(check))
            if text not in final:
                row["outcome"] = "replaced or dropped"
            elif final[text] == cites:
                row["outcome"] = "kept"
            else:
                row["outcome"] = "kept, cited " + " ".join(f"[{n}]" for n in final[text])
            out.append(row)
        return out

    def _repr_html_(self) -> str:
        parts = [f"<div class='gr'>{STYLE}<b>trace</b> <span class='muted'>{_escape(self.answer.question)}</span>"]
        parts.append(steps_html(self.answer))
        if self.draft is None:
            parts.append(f"<div class='muted'>no draft: {_escape(self.note)}</div>")
        else:
            parts.append(f"<div class='muted'>best evidence similarity {self.draft.best_similarity:.3f}</div>")
            if self.draft.generation is not None:
                parts.append(f"<div>model wrote: <q>{_escape(self.draft.generation.text)}</q></div>")
            else:
                parts.append("<div class='muted'>the model was not asked (no evidence close enough)</div>")
            if self.draft.parsed:
                parts.append(table_html(self.rows()))
        parts.append("</div>")
        return "".join(parts)


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


# -- helpers behind KnowledgeBase -----------------------------------------------------------------


def _database(store: KnowledgeStore) -> ReadOnlyDatabase:
    return ReadOnlyDatabase.for_version(store.snapshot().version.store_path, owner=True)


def _arrow(
    store: KnowledgeStore, query: str, params: Sequence[Any] | None, *, limit: int, timeout_s: float
) -> pa.Table:
    """Rows of one query on the owner-scope connection, errors said the way ``kb.sql`` says them."""
    try:
        return _database(store).arrow(query, params, limit=limit, timeout_s=timeout_s)
    except TimeoutError as exc:
        raise InvalidRequest(f"kb.sql stopped the query after {timeout_s:g} s; narrow it or pass timeout_s") from exc
    except duckdb.PermissionException as exc:
        raise InvalidRequest(
            f"kb.sql reads only the knowledge base's own tables (no files, no network): {exc}"
        ) from exc
    except duckdb.Error as exc:
        raise InvalidRequest(f"kb.sql: {exc}") from exc


def to_frame(table: pa.Table, fmt: Literal["pandas", "arrow"]) -> Any:
    """``table`` as asked: Arrow as is, or a pandas DataFrame (``attrs['truncated']`` set)."""
    if fmt == "arrow":
        return table
    if fmt != "pandas":
        raise InvalidRequest(f"format must be 'pandas' or 'arrow'; got {fmt!r}")
    frame = table.to_pandas()
    frame.attrs["truncated"] = (table.schema.metadata or {}).get(b"grounded.truncated") == b"1"
    return frame


def sql(
    store: KnowledgeStore,
    query: str,
    *,
    limit: int = 10_000,
    timeout_s: float = 30.0,
    format: Literal["pandas", "arrow"] = "pandas",
) -> Any:
    """Run one read-only SELECT on the current version; see the module docstring."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidRequest(f"limit must be a positive integer; got {limit!r}")
    return to_frame(_arrow(store, check_statement(query), None, limit=limit, timeout_s=timeout_s), format)


def _internal(store: KnowledgeStore, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Our own fixed queries: same sandboxed connection, no statement check."""
    rows: list[dict[str, Any]] = _arrow(store, query, params, limit=1_000_000, timeout_s=60.0).to_pylist()
    return rows


def tables(store: KnowledgeStore, source: str | None = None) -> list[TableInfo]:
    """Mirrored tables (``<source>.<table>``) with their columns and exact row counts."""
    out: list[TableInfo] = []
    for table in _database(store).tables():
        if source is not None and table.schema != source:
            continue
        count = _internal(store, f"SELECT count(*) AS n FROM {table.quoted}")[0]["n"]
        out.append(dataclasses.replace(table, rows=int(count)))
    return out


def tables_frame(store: KnowledgeStore) -> Any:
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "source": t.schema,
                "table": t.name,
                "rows": t.rows,
                "columns": ", ".join(f"{n} {ty}" for n, ty in t.columns),
            }
            for t in tables(store)
        ],
        columns=["source", "table", "rows", "columns"],
    )


def sources(store: KnowledgeStore) -> Sources:
    """Every source with its counts and mirrored tables (the ``sources`` catalog + documents)."""
    rows = _internal(
        store,
        "WITH names AS (SELECT name FROM sources UNION SELECT DISTINCT source FROM documents), "
        "docs AS (SELECT source, count(*) AS documents FROM documents GROUP BY ALL), "
        "chunks AS (SELECT d.source, count(*) AS chunks FROM chunks c JOIN documents d USING (doc_id) GROUP BY ALL) "
        "SELECT n.name, s.type, s.last_synced_at, coalesce(docs.documents, 0) AS documents, "
        "coalesce(chunks.chunks, 0) AS chunks FROM names n LEFT JOIN sources s USING (name) "
        "LEFT JOIN docs ON docs.source = n.name LEFT JOIN chunks ON chunks.source = n.name ORDER BY n.name",
    )
    by_source: dict[str, list[TableInfo]] = {}
    for t in tables(store):
        by_source.setdefault(t.schema, []).append(t)
    return Sources(
        SourceInfo(
            name=str(r["name"]),
            type=r["type"],
            last_synced_at=r["last_synced_at"],
            documents=int(r["documents"]),
            chunks=int(r["chunks"]),
            tables=tuple(by_source.get(str(r["name"]), ())),
        )
        for r in rows
    )


def source(store: KnowledgeStore, name: str, *, recent: int = 5) -> SourceInfo:
    """One source, with its tables and its ``recent`` most recently updated documents."""
    for info in sources(store):
        if info.name == name:
            docs = _internal(
                store,
                "SELECT doc_id, title, uri, updated_at FROM documents WHERE source = ? "
                "ORDER BY updated_at DESC NULLS LAST, key LIMIT ?",
                [name, recent],
            )
            return dataclasses.replace(info, recent=tuple(docs))
    known = ", ".join(s.name for s in sources(store)) or "none"
    raise NotFound(f"no source named {name!r} in {store.path}; known sources: {known}")


def documents(store: KnowledgeStore, source: str | None = None, *, limit: int = 50, offset: int = 0) -> Any:
    """Documents as a DataFrame (id, source, key, title, uri, characters, chunks, dates), by source and key."""
    for label, value in (("limit", limit), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if label == "limit" else 0):
            raise InvalidRequest(
                f"{label} must be a {'positive' if label == 'limit' else 'non-negative'} integer; got {value!r}"
            )
    table = _arrow(
        store,
        "SELECT d.doc_id, d.source, d.key, d.title, d.uri, length(d.text) AS characters, "
        "count(c.chunk_id) AS chunks, d.updated_at, d.ingested_at "
        "FROM documents d LEFT JOIN chunks c USING (doc_id) WHERE (? IS NULL OR d.source = ?) "
        "GROUP BY ALL ORDER BY d.source, d.key LIMIT ? OFFSET ?",
        [source, source, limit, offset],
        limit=limit,
        timeout_s=60.0,
    )
    return to_frame(table, "pandas")


def explain(store: KnowledgeStore, question: str, *, k: int = 10, filters: Mapping[str, Any] | None = None) -> Any:
    """BM25 and dense candidates side by side with their fused ranks, as a DataFrame.

    Rows are every chunk that either side or the fusion puts in its top ``k``, ordered by fused
    rank (the order ``kb.search`` returns); ``None`` in a rank column means that side did not
    return the chunk among its ``search.candidates`` candidates.
    """
    import numpy as np
    import pandas as pd

    from grounded.retrieval.filters import validate_query

    question = validate_query(question)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= store.settings.search.max_k:
        raise InvalidRequest(f"k must be an integer from 1 to {store.settings.search.max_k}; got {k!r}")
    settings = store.settings.search
    parsed = parse_filters(filters)
    snap = store.snapshot()
    depth = max(settings.candidates, k)
    allowed = None if parsed.is_empty() else snap.store.allowed_chunk_ids(parsed)
    bm25 = snap.store.bm25(question, depth, allowed)
    dense: list[tuple[int, float]] = []
    if snap.vectors.ntotal and (allowed is None or len(allowed)):
        scores, ids = snap.vectors.search(store.embedder.embed_query(question)[None, :], depth, allowed=allowed)
        dense = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    fused = fuse(bm25, dense, settings)
    sides = {
        "fused": {cid: (r, s) for r, (cid, s) in enumerate(fused, 1)},
        "bm25": {cid: (r, s) for r, (cid, s) in enumerate(bm25, 1)},
        "dense": {cid: (r, s) for r, (cid, s) in enumerate(dense, 1)},
    }
    shown = sorted(
        {cid for ranks in sides.values() for cid, (r, _) in ranks.items() if r <= k},
        key=lambda cid: sides["fused"][cid][0],
    )
    rows = snap.store.chunk_rows(shown)
    records = []
    for cid in shown:
        row = rows.get(cid, {})
        rec: dict[str, Any] = {}
        for side, ranks in sides.items():
            rank, score = ranks.get(cid, (None, None))
            rec[f"{side}_rank"] = rank
            rec[f"{side}_score"] = None if score is None else float(np.float32(score))
        text = " ".join(str(row.get("text", "")).split())
        rec.update(
            chunk_id=cid,
            title=row.get("title") or row.get("doc_id"),
            source=row.get("source"),
            text=text if len(text) <= 160 else text[:159] + "…",
        )
        records.append(rec)
    frame = pd.DataFrame(records, columns=_EXPLAIN_COLUMNS)
    for col in ("fused_rank", "bm25_rank", "dense_rank"):
        frame[col] = frame[col].astype("Int64")
    frame.attrs.update(query=question, index_version=snap.version.id, k=k, candidates=depth)
    return frame


_EXPLAIN_COLUMNS = [
    "fused_rank",
    "fused_score",
    "bm25_rank",
    "bm25_score",
    "dense_rank",
    "dense_score",
    "chunk_id",
    "title",
    "source",
    "text",
]


def trace(answer: Answer, last: Answer | None, draft: Draft | None) -> AnswerTrace:
    """The trace of ``answer``; the model's ``draft`` belongs to the ``last`` ``kb.ask`` answer only."""
    if answer.cached:
        return AnswerTrace(answer, None, "the answer came from the cache (ask with use_cache=False to see one)")
    if answer is not last:
        return AnswerTrace(answer, None, "the model's draft is kept for the last kb.ask answer only")
    return AnswerTrace(answer, draft)


class ExploreMixin:
    """The exploration methods of :class:`~grounded.kb.KnowledgeBase` (each documented above)."""

    store: KnowledgeStore
    _last_answer: Answer | None

    def sources(self) -> Sources:
        """Every source with its type, last sync, document/chunk counts and mirrored tables."""
        return sources(self.store)

    def source(self, name: str) -> SourceInfo:
        """One source, with its tables and a few recently updated documents (NotFound if absent)."""
        return source(self.store, name)

    def documents(self, source: str | None = None, *, limit: int = 50, offset: int = 0) -> Any:
        """Documents (of one ``source``, or all) as a pandas DataFrame, ordered by source and key."""
        return documents(self.store, source, limit=limit, offset=offset)

    def tables(self) -> Any:
        """Mirrored tables ``<source>.<table>`` as a DataFrame: source, table, rows, columns."""
        return tables_frame(self.store)

    def sql(
        self, query: str, *, limit: int = 10_000, timeout_s: float = 30.0, format: Literal["pandas", "arrow"] = "pandas"
    ) -> Any:
        """One read-only SELECT on the current version, as pandas (default) or Arrow.

        >>> kb.sql("SELECT source, count(*) AS n FROM documents GROUP BY ALL")   # doctest: +SKIP
        """
        return sql(self.store, query, limit=limit, timeout_s=timeout_s, format=format)

    def explain(self, question: str, *, k: int = 10, filters: Mapping[str, Any] | None = None) -> Any:
        """BM25 and dense candidates side by side with their fused ranks (a DataFrame)."""
        return explain(self.store, question, k=k, filters=filters)

    def trace(self, answer: Answer) -> AnswerTrace:
        """How ``answer`` came about: timings, the model's draft and the verifier's checks."""
        last = self._last_answer
        return trace(answer, last, self._draft() if answer is last else None)

    def _draft(self) -> Draft | None:
        raise NotImplementedError
