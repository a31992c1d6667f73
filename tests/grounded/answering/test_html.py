"""HTML display: escaping, citation markers linked to passages, highlighted spans, abstentions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from grounded.answering.html import answer_html, cited_spans
from grounded.answering.types import Answer, AnswerSentence, Citation
from grounded.html import mark_spans, safe_href, table_html
from grounded.retrieval.results import SearchResults, hits_html
from indexes.base import Hit

EVIL = "<script>alert('x')</script>"
PASSAGE = (
    "Mount Logan is the highest mountain in Canada.  It lies in\nKluane National Park Reserve, "
    "in southwestern Yukon. Its summit is 5,959 m high."
)


class Page(HTMLParser):
    """Collects ids, link targets, marked text and visible text of an HTML fragment."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.hrefs: list[str] = []
        self.marks: list[str] = []
        self.tags: list[str] = []
        self._stack: list[tuple[str, str | None]] = []
        self._mark: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        if found.get("id"):
            self.ids[str(found["id"])] = tag
        if tag == "a" and found.get("href"):
            self.hrefs.append(str(found["href"]))
        if tag == "mark":
            self._mark = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "mark" and self._mark is not None:
            self.marks.append("".join(self._mark))
            self._mark = None

    def handle_data(self, data: str) -> None:
        if self._mark is not None:
            self._mark.append(data)


def _citation(
    cid: int, text: str, *, title: str = "Mount Logan", uri: str = "https://en.wikipedia.org/wiki/Mount_Logan"
) -> Citation:
    return Citation(
        id=cid,
        chunk_id=100 + cid,
        doc_id=f"doc{cid}",
        title=title,
        uri=uri,
        start=1000,
        end=1000 + len(text),
        text=text,
        source="wiki",
        synced_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        score=0.5,
    )


def _answer(**changes: Any) -> Answer:
    fields: dict[str, Any] = {
        "question": "Where is Mount Logan?",
        "text": "Mount Logan is in Kluane National Park Reserve in Yukon. [1]",
        "sentences": (AnswerSentence("Mount Logan is in Kluane National Park Reserve in Yukon.", (1,)),),
        "citations": (_citation(1, PASSAGE), _citation(2, "Unrelated passage about rivers.", title="Rivers")),
        "abstained": False,
        "index_version": "000007",
        "model": "fake:echo",
        "timings": {"retrieve_ms": 12.5, "generate_ms": 1500.0, "prompt_tokens": 250.0, "total_ms": 1530.25},
    }
    fields.update(changes)
    return Answer(**fields)


def test_markers_link_to_passages_with_the_cited_span_highlighted() -> None:
    answer = _answer()
    html = answer_html(answer)
    page = Page(html)
    targets = [h[1:] for h in page.hrefs if h.startswith("#")]
    assert targets, html
    for target in targets:
        assert target in page.ids  # every marker points at an element on the page
    (passage_id,) = set(targets)
    assert passage_id.endswith("-p1")
    # The sentence the answer rests on is marked, exactly as it is in the passage (newline kept).
    (start, end) = cited_spans(answer)[1][0]
    assert PASSAGE[start:end] == "It lies in\nKluane National Park Reserve, in southwestern Yukon."
    assert page.marks == [PASSAGE[start:end]]
    assert f"{passage_id}-m0" in page.ids
    # Only cited passages are shown; the uncited one is counted.
    assert "Unrelated passage" not in html
    assert "1 retrieved passage(s) not cited" in html
    assert "<sup>[1]</sup>" in html
    assert "index version 000007" in html


def test_quoted_sentence_is_found_verbatim_despite_whitespace() -> None:
    quote = "It lies in Kluane National Park Reserve, in southwestern Yukon."
    answer = _answer(sentences=(AnswerSentence(quote, (1,), quoted=True),), text=quote + " [1]")
    spans = cited_spans(answer)
    start, end = spans[1][0]
    assert " ".join(PASSAGE[start:end].split()) == quote
    assert PASSAGE[start:end].startswith("It lies in\nKluane")
    assert "(quoted)" in answer_html(answer)


def test_everything_is_escaped() -> None:
    passage = f"Before {EVIL} & after. The Yukon holds Mount Logan."
    answer = _answer(
        question=f"Q {EVIL}?",
        sentences=(AnswerSentence(f"The Yukon holds Mount Logan {EVIL}.", (1,)),),
        citations=(_citation(1, passage, title=EVIL, uri=f"javascript:{EVIL}"),),
        model=EVIL,
        index_version=EVIL,
    )
    html = answer_html(answer)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "javascript:" not in " ".join(Page(html).hrefs)
    assert Page(html).marks == ["The Yukon holds Mount Logan."]


def test_abstention_is_shown_as_such_with_the_closest_evidence() -> None:
    closest = AnswerSentence("Its summit is 5,959 m high.", (1,), quoted=True)
    answer = _answer(text="The sources do not contain this.", sentences=(), abstained=True, closest=closest, timings={})
    html = answer_html(answer)
    page = Page(html)
    assert "class='abstain'" in html
    assert "Abstained:" in html
    assert page.marks == ["Its summit is 5,959 m high."]
    assert [h[1:] for h in page.hrefs if h.startswith("#")] == [i for i in page.ids if i.endswith("-p1")]


def test_route_steps_and_tool_calls_as_tables() -> None:
    html = answer_html(_answer())
    assert re.search(r"<td>generate</td><td>1,500</td><td>250</td>", html), html
    trace = {
        "route": "structured",
        "reason": "names table <shop.products>",
        "calls": [
            {"call": "c1", "tool": "sql", "arguments": {"query": "SELECT <x>"}, "ok": True, "size": 3,
             "elapsed_ms": 3.25, "after": []},
            {"call": "c2", "tool": "calculate", "arguments": {"expression": "1/0"}, "ok": False, "refused": False,
             "error": "division by zero", "elapsed_ms": 0.5, "after": ["c1"]},
        ],
    }  # fmt: skip
    html = answer_html(_answer(route="structured", trace=trace))
    assert "route <b>structured</b> (names table &lt;shop.products&gt;)" in html
    assert (
        "<td>c1</td><td>sql</td><td>{&quot;query&quot;: &quot;SELECT &lt;x&gt;&quot;}</td><td></td><td>ok</td>" in html
    )
    assert "<td>c2</td><td>calculate</td>" in html
    assert "<td>c1</td><td>failed</td><td></td><td>0.5</td><td>division by zero</td>" in html
    assert "not a fact-seeking question" in answer_html(_answer(route="not_fact_seeking", grounded=False))


def test_anchor_prefixes_differ_between_answers() -> None:
    one = set(Page(answer_html(_answer())).ids)
    two = set(Page(answer_html(_answer(question="Another question?"))).ids)
    assert one
    assert two
    assert not one & two


def test_mark_spans_merges_overlaps_and_escapes() -> None:
    text = "a <b> c & d"
    assert mark_spans(text, [(2, 5), (4, 7), (10, 11)]) == "a <mark>&lt;b&gt; c</mark> &amp; <mark>d</mark>"
    assert mark_spans(text, []) == "a &lt;b&gt; c &amp; d"
    assert mark_spans("abc", [(1, 2)], ids=['x"y']) == 'a<mark id="x&quot;y">b</mark>c'


def test_safe_href_only_allows_harmless_schemes() -> None:
    assert safe_href("https://example.org/a?b=1&c=2") == "https://example.org/a?b=1&amp;c=2"
    assert safe_href("file:///tmp/x.txt") == "file:///tmp/x.txt"
    assert safe_href("javascript:alert(1)") is None
    assert safe_href("data:text/html,<b>") is None


def test_table_html_escapes_cells() -> None:
    html = table_html([{"a": "<x>", "b": 0.123456}, {"a": None, "c": ("p", "q")}])
    assert "<th>a</th><th>b</th><th>c</th>" in html
    assert "<td>&lt;x&gt;</td><td>0.1235</td><td></td>" in html
    assert "<td>p, q</td>" in html


def _hit(rank: int, text: str) -> Hit:
    return Hit(
        chunk_id=rank,
        doc_id=f"d{rank}",
        score=1 / (60 + rank),
        text=text,
        start=0,
        end=len(text),
        title=f"T{rank} {EVIL}",
        uri=f"https://example.org/{rank}",
        source="notes",
        key=f"k{rank}",
        bm25_rank=rank,
        dense_rank=None,
    )


def test_search_results_stay_a_list_and_render_escaped_with_query_words_marked() -> None:
    hits = [_hit(1, "The with statement calls __exit__ <always>."), _hit(2, "Nothing here.")]
    results = SearchResults(hits, query="with statement <exit>", index_version="000003", took_ms=4.5)
    assert isinstance(results, list)
    assert results == hits
    assert results[0].chunk_id == 1
    text = repr(results)
    assert "2 hits" in text
    assert "000003" in text
    html = results._repr_html_()
    assert "<script>" not in html
    assert "<always>" not in html
    assert "&lt;always&gt;" in html
    assert "<b>with statement &lt;exit&gt;</b>" in html
    # "with" is a stop word; "statement" and "exit" (inside __exit__) are marked, "<" is not a word.
    assert Page(html).marks == ["statement", "exit"]
    assert "4.5 ms" in html
    frame = results.to_pandas()
    assert list(frame["rank"]) == [1, 2]
    assert list(frame["chunk_id"]) == [1, 2]
    assert hits_html([], query="q").count("<tr>") == 1  # header only
