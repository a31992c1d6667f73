"""Exploration helpers on a real knowledge base: sources, documents, tables, read-only SQL, explain, trace."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pyarrow as pa
import pytest

import grounded
from grounded.errors import InvalidRequest, NotFound
from grounded.kb import KnowledgeBase
from grounded.notebook.explore import AnswerTrace
from grounded.retrieval.results import SearchResults
from tests.conftest import DEMO_TOPICS
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

QUESTION = "how does the with statement call __exit__"


@pytest.fixture(scope="module")
def kb(built_kb_path: Path) -> KnowledgeBase:
    return grounded.open(built_kb_path, create=False)


@pytest.fixture(scope="module")
def shop_kb(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeBase:
    """A knowledge base whose only source is a mirrored SQLite table (no documents to embed)."""
    from connectors.registry import build_connector

    root = tmp_path_factory.mktemp("explore-shop")
    con = sqlite3.connect(root / "shop.sqlite")
    con.executescript(
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL);"
        "INSERT INTO products VALUES (1, 'kettle', 24.5), (2, 'toaster', 39.99), (3, 'lamp', 15.0);"
    )
    con.commit()
    con.close()
    kb = grounded.open(root / "kb")
    kb.sync("shop", build_connector("sqlite", {"path": str(root / "shop.sqlite"), "tables": [{"name": "products"}]}))
    return kb


def test_search_returns_search_results(kb: KnowledgeBase) -> None:
    hits = kb.search(QUESTION, k=3)
    assert isinstance(hits, SearchResults)
    assert isinstance(hits, list)
    assert len(hits) == 3
    assert hits.index_version == kb.version
    assert hits.query == QUESTION
    assert hits.took_ms is not None
    assert hits.took_ms > 0
    assert "with" in hits._repr_html_()


def test_sources_and_one_source(kb: KnowledgeBase) -> None:
    sources = kb.sources()
    assert [s.name for s in sources] == ["reference"]
    (ref,) = sources
    stats = kb.stats()
    assert ref.type == "files"
    assert ref.documents == len(DEMO_TOPICS) == stats["documents"]
    assert ref.chunks == stats["chunks"]
    assert ref.last_synced_at is not None
    assert list(sources.to_pandas()["documents"]) == [len(DEMO_TOPICS)]
    assert "<td>reference</td>" in sources._repr_html_()
    one = kb.source("reference")
    assert 0 < len(one.recent) <= 5
    assert "reference" in one._repr_html_()
    with pytest.raises(NotFound, match=r"no source named 'nope'.*known sources: reference"):
        kb.source("nope")


def test_documents_pages_and_filters(kb: KnowledgeBase) -> None:
    frame = kb.documents(limit=3)
    assert list(frame.columns) == [
        "doc_id", "source", "key", "title", "uri", "characters", "chunks", "updated_at", "ingested_at",
    ]  # fmt: skip
    assert len(frame) == 3
    everything = kb.documents(limit=100)
    assert len(everything) == len(DEMO_TOPICS)
    assert list(everything["key"]) == sorted(everything["key"])
    assert int(everything["chunks"].sum()) == kb.stats()["chunks"]
    assert list(kb.documents(limit=2, offset=1)["doc_id"]) == list(everything["doc_id"][1:3])
    assert kb.documents("elsewhere").empty
    lengths = kb.sql("SELECT doc_id, length(text) AS n FROM documents ORDER BY source, key")
    assert list(lengths["n"]) == list(everything["characters"])
    for bad in ({"limit": 0}, {"limit": True}, {"offset": -1}):
        with pytest.raises(InvalidRequest):
            kb.documents(**bad)  # type: ignore[arg-type]


def test_sql_reads_as_pandas_or_arrow(kb: KnowledgeBase) -> None:
    frame = kb.sql("SELECT source, count(*) AS n FROM documents GROUP BY ALL")
    assert frame.to_dict("records") == [{"source": "reference", "n": len(DEMO_TOPICS)}]
    assert frame.attrs["truncated"] is False
    table = kb.sql("WITH c AS (SELECT chunk_id FROM chunks) SELECT count(*) AS n FROM c", format="arrow")
    assert isinstance(table, pa.Table)
    assert table.to_pylist() == [{"n": kb.stats()["chunks"]}]
    some = kb.sql("FROM chunks SELECT chunk_id ORDER BY chunk_id", limit=2)
    assert len(some) == 2
    assert some.attrs["truncated"] is True
    with pytest.raises(InvalidRequest, match="format"):
        kb.sql("SELECT 1", format="csv")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("INSERT INTO meta VALUES ('x', 'y')", "read-only.*INSERT"),
        ("UPDATE documents SET title = 'x'", "read-only.*UPDATE"),
        ("DELETE FROM chunks", "read-only.*DELETE"),
        ("DROP TABLE documents", "read-only.*DROP"),
        ("CREATE TABLE t AS SELECT 1", "read-only.*CREATE"),
        ("ATTACH '/tmp/other.duckdb' AS other", "read-only.*ATTACH"),
        ("DETACH grounded_kb", "read-only.*DETACH"),
        ("COPY documents TO '/tmp/leak.csv'", "read-only.*COPY"),
        ("EXPORT DATABASE '/tmp/leak'", "read-only.*EXPORT"),
        ("SET enable_external_access = true", "read-only.*SET"),
        ("USE memory", "read-only"),
        ("INSTALL httpfs", "read-only"),
        ("LOAD httpfs", "read-only"),
        ("CALL pragma_version()", "read-only.*CALL"),
        ("SELECT 1; DROP TABLE documents", "exactly one statement; got 2"),
        ("SELECT * FROM read_csv('/etc/passwd')", "no files, no network"),
        ("SELECT * FROM read_text('/etc/passwd')", "no files, no network"),
        ("SELECT * FROM glob('/etc/*')", "no files, no network"),
        ("SELECT * FROM '/etc/passwd'", "kb.sql"),
        ("SELECT * FROM read_json('https://example.org/x.json')", "kb.sql"),
        ("SELEC 1", "cannot parse"),
        ("   ", "empty"),
    ],
)
def test_sql_refuses_anything_but_reading_its_own_tables(kb: KnowledgeBase, query: str, message: str) -> None:
    before = kb.stats()
    with pytest.raises(InvalidRequest, match=message) as caught:
        kb.sql(query)
    assert "root:" not in str(caught.value)
    assert kb.stats() == before
    assert not Path("/tmp/leak.csv").exists()


def test_sql_sandbox_leaves_the_search_connection_alone(kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidRequest):
        kb.sql("SELECT * FROM read_csv('/etc/passwd')")
    assert kb.sql("SELECT current_setting('enable_external_access') AS on", format="arrow").to_pylist() == [
        {"on": False}
    ]
    # The snapshot's own connection is another DuckDB instance: its setting is untouched.
    row = kb.snapshot().store.cursor().execute("SELECT current_setting('enable_external_access')").fetchone()
    assert row == (True,)
    assert kb.search(QUESTION, k=1)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) FROM range(3000000000)",  # DuckDB notices the interrupt between vectors
        # One function call over long values: DuckDB notices the interrupt only when it ends (seconds).
        "SELECT levenshtein(repeat('ab', 10000), repeat('ba', 10000)) AS d",
    ],
    ids=["interruptible", "ignores-interrupts"],
)
def test_sql_returns_within_its_timeout(shop_kb: KnowledgeBase, query: str) -> None:
    """Issue 23, item 11: kb.sql(..., timeout_s=5) ran 9.4 s; the caller now gets control back in time."""
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match=r"stopped the query after 0\.5 s"):
        shop_kb.sql(query, timeout_s=0.5)
    # 0.5 s, the interrupt's grace and a margin for a loaded machine; the uninterruptible query
    # alone runs 4 s on an idle core.
    assert time.monotonic() - started < 2.5


def test_tables_list_mirrored_tables_and_sql_reads_them(shop_kb: KnowledgeBase) -> None:
    tables = shop_kb.tables()
    assert tables.to_dict("records") == [
        {"source": "shop", "table": "products", "rows": 3, "columns": "id BIGINT, name VARCHAR, price DOUBLE"}
    ]
    names = shop_kb.sql("SELECT name FROM shop.products WHERE price < 30 ORDER BY id")
    assert list(names["name"]) == ["kettle", "lamp"]
    (shop,) = shop_kb.sources()
    assert shop.name == "shop"
    assert [t.quoted for t in shop.tables] == ['"shop"."products"']
    assert "shop" in shop_kb.source("shop")._repr_html_()
    with pytest.raises(InvalidRequest, match="read-only"):
        shop_kb.sql("DELETE FROM shop.products")
    assert shop_kb.sql("SELECT count(*) AS n FROM shop.products").loc[0, "n"] == 3


def test_explain_lines_up_with_search(kb: KnowledgeBase) -> None:
    k = 5
    frame = kb.explain(QUESTION, k=k)
    hits = kb.search(QUESTION, k=k)
    top = frame[frame["fused_rank"] <= k]
    assert list(top["fused_rank"]) == list(range(1, k + 1))
    assert list(top["chunk_id"]) == [h.chunk_id for h in hits]
    assert [None if v is None or v != v else int(v) for v in top["bm25_rank"].astype(object)] == [
        h.bm25_rank for h in hits
    ]
    assert [None if v is None or v != v else int(v) for v in top["dense_rank"].astype(object)] == [
        h.dense_rank for h in hits
    ]
    # Every row is in some side's top k; rows beyond the fused top k come from one side only.
    for _, row in frame.iterrows():
        ranks = [row["fused_rank"], row["bm25_rank"], row["dense_rank"]]
        assert any(r is not None and r == r and r <= k for r in ranks)
    assert list(frame["fused_rank"]) == sorted(frame["fused_rank"])
    assert frame.attrs["query"] == QUESTION
    assert frame.attrs["index_version"] == kb.version
    assert "<table" in frame._repr_html_()
    with pytest.raises(InvalidRequest):
        kb.explain(QUESTION, k=0)


def test_trace_shows_the_draft_of_the_last_answer(built_kb_path: Path, fake_backend: str) -> None:  # noqa: F811
    kb = grounded.open(
        built_kb_path,
        create=False,
        experts={"answer": {"backend": fake_backend, "model": "echo"}},
        answer={"cache": False},
    )
    first = kb.ask("What does the pass statement do?")
    assert not first.abstained
    trace = kb.trace(first)
    assert isinstance(trace, AnswerTrace)
    assert trace.draft is not None
    rows = trace.rows()
    assert rows
    assert {"sentence", "cites", "word_support", "supported", "outcome"} <= set(rows[0])
    # The fake expert copies source [1]'s first sentence and cites [1]; that "sentence" is the topic's
    # heading run into a list intro ('The "pass" statement ****** ... for example:'), which the
    # verifier never keeps as written, and the trace says so.
    assert (rows[0]["cites"], rows[0]["supported"], rows[0]["outcome"]) == ((1,), False, "replaced or dropped")
    assert repr(trace).startswith("AnswerTrace('What does the pass statement do?', 1 drafted sentence(s)")
    html = trace._repr_html_()
    assert "model wrote" in html
    assert "<td>generate</td>" in html
    assert "<mark" in first._repr_html_()
    kb.ask("What does the del statement do?")
    stale = kb.trace(first)
    assert stale.draft is None
    assert "last kb.ask answer only" in stale._repr_html_()
