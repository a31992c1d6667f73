"""Rich display for Jupyter: answers, search results, sources and traces as HTML.

Objects get a ``_repr_html_`` that calls into this module (and keep a plain-text ``__repr__``
for terminals). Every piece of text that came from a document, a query or a model is passed
through :func:`html.escape`; URIs become links only for ``http``, ``https`` and ``file``.

Example::

    kb.search("with statement")      # in a notebook: a table of hits, query words marked
    kb.ask("what does with do?")     # the answer, [n] markers linking to the cited passages

An answer's markers ``[n]`` link to the passage ``n`` below it; inside each passage the span
the sentence rests on is highlighted (:func:`cited_spans` says which, as character offsets
into the passage text).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from indexes.base import Hit
from indexes.chunking import sentence_spans

if TYPE_CHECKING:
    from grounded.answer import Answer, AnswerSentence, Citation

__all__ = [
    "SearchResults",
    "answer_html",
    "cited_spans",
    "hits_html",
    "mark_spans",
    "safe_href",
    "steps_html",
    "table_html",
    "tool_rows",
    "trace_rows",
]

STYLE = (
    "<style>"
    ".gr{font-family:system-ui,sans-serif;font-size:13px;line-height:1.45;max-width:960px}"
    ".gr table{border-collapse:collapse;margin:4px 0}"
    ".gr th,.gr td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left!important;vertical-align:top}"
    ".gr mark{background:#fff3a3;padding:0 1px}"
    ".gr .muted{color:#777;font-size:11px}"
    ".gr .abstain{border-left:4px solid #c77;padding:4px 8px;background:#fff4f4}"
    ".gr .passage{border-left:3px solid #9ab;padding:2px 8px;margin:6px 0}"
    ".gr .text{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px}"
    ".gr a.cite{text-decoration:none}"
    "</style>"
)

_WORD = re.compile(r"[A-Za-z0-9]+")
_SNIPPET_CHARS = 320


# -- small pieces -------------------------------------------------------------------------------


def safe_href(uri: str) -> str | None:
    """``uri`` escaped for an ``href`` when its scheme is harmless, else ``None``."""
    if uri.lower().startswith(("http://", "https://", "file://")):
        return escape(uri, quote=True)
    return None


def _link(text: str, uri: str) -> str:
    href = safe_href(uri)
    label = escape(text or uri)
    return f'<a href="{href}" target="_blank" rel="noopener">{label}</a>' if href else label


def mark_spans(text: str, spans: Iterable[tuple[int, int]], *, ids: Sequence[str] = ()) -> str:
    """``text`` escaped, with each ``(start, end)`` span wrapped in ``<mark>``.

    Overlapping spans are merged; ``ids`` (one per span, in the given order) become the marks'
    ``id`` attributes, so a link can point at a highlighted span.
    """
    ordered = sorted((max(0, a), min(len(text), b), i) for i, (a, b) in enumerate(spans) if b > a)
    merged: list[tuple[int, int, int]] = []
    for a, b, i in ordered:
        if merged and a <= merged[-1][1]:
            pa, pb, pi = merged[-1]
            merged[-1] = (pa, max(pb, b), pi)
        else:
            merged.append((a, b, i))
    out: list[str] = []
    pos = 0
    for a, b, i in merged:
        out.append(escape(text[pos:a]))
        attr = f' id="{escape(ids[i], quote=True)}"' if i < len(ids) else ""
        out.append(f"<mark{attr}>{escape(text[a:b])}</mark>")
        pos = b
    out.append(escape(text[pos:]))
    return "".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, tuple | list):
        return escape(", ".join(str(v) for v in value))
    return escape(str(value))


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A compact HTML table of ``rows`` (mappings); cells are escaped, floats shortened."""
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _query_spans(text: str, query: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that are words of ``query`` (content words only, case-insensitive)."""
    from grounded.verify import STOPWORDS

    words = {w.lower() for w in _WORD.findall(query) if len(w) > 2 and w.lower() not in STOPWORDS}
    return [(m.start(), m.end()) for m in _WORD.finditer(text) if m.group().lower() in words]


# -- search results -----------------------------------------------------------------------------


class SearchResults(list[Hit]):
    """The hits of one search: a plain ``list[Hit]`` that also remembers its query.

    In Jupyter it shows as a table (rank, fused score, BM25 and dense ranks, title, snippet with
    the query's words marked); ``to_pandas()`` gives a DataFrame.
    """

    def __init__(
        self,
        hits: Iterable[Hit] = (),
        *,
        query: str = "",
        index_version: str | None = None,
        mode: str = "hybrid",
        took_ms: float | None = None,
    ) -> None:
        super().__init__(hits)
        self.query = query
        self.index_version = index_version
        self.mode = mode
        self.took_ms = took_ms

    def __repr__(self) -> str:
        lines = [f"SearchResults({self.query!r}, {len(self)} hits, mode={self.mode}, version={self.index_version})"]
        for rank, hit in enumerate(self, start=1):
            lines.append(f"{rank:>3}  {hit.score:.4f}  {hit.title or hit.doc_id}  [{hit.start}:{hit.end}]")
        return "\n".join(lines)

    def to_pandas(self) -> Any:
        """The hits as a pandas DataFrame, one row per hit, best first."""
        import pandas as pd

        return pd.DataFrame(
            [{"rank": r, **{f.name: getattr(h, f.name) for f in dataclasses.fields(h)}} for r, h in enumerate(self, 1)]
        )

    def _repr_html_(self) -> str:
        return hits_html(self, query=self.query, index_version=self.index_version, took_ms=self.took_ms)


def hits_html(
    hits: Sequence[Hit], *, query: str = "", index_version: str | None = None, took_ms: float | None = None
) -> str:
    """Hits as an HTML table; the query's content words are marked in each snippet."""
    rows = []
    for rank, hit in enumerate(hits, start=1):
        snippet = _snippet(hit.text)
        title = _link(hit.title or hit.doc_id, hit.uri)
        rows.append(
            f"<tr><td>{rank}</td><td>{hit.score:.4f}</td><td>{_cell(hit.bm25_rank)}</td>"
            f"<td>{_cell(hit.dense_rank)}</td><td><b>{title}</b><br><span class='muted'>{escape(hit.source)} · "
            f"chars {hit.start}&ndash;{hit.end}</span></td><td>{mark_spans(snippet, _query_spans(snippet, query))}</td></tr>"
        )
    meta = [f"{len(hits)} hits"]
    if index_version:
        meta.append(f"index version {escape(index_version)}")
    if took_ms is not None:
        meta.append(f"{took_ms:.1f} ms")
    head = f"<b>{escape(query)}</b> " if query else ""
    return (
        f"<div class='gr'>{STYLE}<div>{head}<span class='muted'>{' · '.join(meta)}</span></div>"
        "<table><thead><tr><th>#</th><th>score</th><th>bm25</th><th>dense</th><th>document</th><th>text</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


# -- answers ------------------------------------------------------------------------------------


def _find_quote(text: str, quote: str) -> tuple[int, int] | None:
    """Where ``quote`` occurs in ``text`` when whitespace is allowed to differ."""
    words = quote.split()
    if not words:
        return None
    match = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return (match.start(), match.end()) if match else None


def _best_sentence(text: str, sentence: str) -> tuple[int, int] | None:
    """The sentence of ``text`` sharing most content words with ``sentence`` (none shared: None)."""
    from grounded.verify import content_terms

    wanted = content_terms(sentence)
    best: tuple[int, int] | None = None
    best_overlap = 0
    for a, b in sentence_spans(text):
        overlap = len(wanted & content_terms(text[a:b]))
        if overlap > best_overlap:
            best, best_overlap = (a, b), overlap
    return best


def _sentences(answer: Answer) -> list[AnswerSentence]:
    return [*answer.sentences, *([answer.closest] if answer.closest is not None else [])]


def cited_spans(answer: Answer) -> dict[int, list[tuple[int, int]]]:
    """For each cited passage id: the ``(start, end)`` offsets in its text that are highlighted.

    A quoted sentence is found verbatim (whitespace aside); for the model's own sentences the
    passage sentence sharing most content words with it stands for the cited span. Offsets are
    into ``Citation.text``; add ``Citation.start`` for offsets into the source document.
    """
    by_id = {c.id: c for c in answer.citations}
    spans: dict[int, list[tuple[int, int]]] = {}
    for sentence in _sentences(answer):
        for cid in sentence.citations:
            citation = by_id.get(cid)
            if citation is None:
                continue
            span = _find_quote(citation.text, sentence.text) if sentence.quoted else None
            span = span or _best_sentence(citation.text, sentence.text)
            if span is not None and span not in spans.setdefault(cid, []):
                spans[cid].append(span)
    return {cid: sorted(v) for cid, v in spans.items()}


def _anchor(answer: Answer) -> str:
    """A stable prefix for element ids, so several answers on one page do not collide."""
    seed = f"{answer.question}\x00{answer.index_version}\x00{answer.text}"
    return "gr-" + hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()[:8]


def _markers(prefix: str, ids: Iterable[int]) -> str:
    return "".join(f'<a class="cite" href="#{prefix}-p{i}" title="passage {i}"><sup>[{i}]</sup></a>' for i in ids)


def _passage(prefix: str, citation: Citation, spans: Sequence[tuple[int, int]]) -> str:
    marked = mark_spans(citation.text, spans, ids=[f"{prefix}-p{citation.id}-m{j}" for j in range(len(spans))])
    where = f"{escape(citation.source)} · chars {citation.start}&ndash;{citation.end} · score {citation.score:.4f}"
    if citation.synced_at is not None:
        where += f" · synced {escape(citation.synced_at.isoformat(timespec='seconds'))}"
    return (
        f"<div class='passage' id='{prefix}-p{citation.id}'><b>[{citation.id}]</b> "
        f"<b>{_link(citation.title or citation.doc_id, citation.uri)}</b> <span class='muted'>{where}</span>"
        f"<div class='text'>{marked}</div></div>"
    )


_STEPS = (
    ("ground", "ground_ms"),
    ("retrieve", "retrieve_ms"),
    ("evidence", "evidence_ms"),
    ("generate", "generate_ms"),
    ("verify", "verify_ms"),
    ("total", "total_ms"),
)


def trace_rows(answer: Answer) -> list[dict[str, Any]]:
    """The steps an answer went through with their times (ms) and the model's token counts."""
    rows = [{"step": name, "ms": answer.timings[key]} for name, key in _STEPS if key in answer.timings]
    for row in rows:
        if row["step"] == "generate":
            row.update(
                {k: int(answer.timings[k]) for k in ("prompt_tokens", "completion_tokens") if k in answer.timings}
            )
    return rows


def _compact(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return _snippet(text, limit)


def tool_rows(answer: Answer) -> list[dict[str, Any]]:
    """One row per tool call in the answer's trace (``trace["calls"]``): tool, arguments, outcome."""
    trace = getattr(answer, "trace", None) or {}
    calls = trace.get("calls") if isinstance(trace, Mapping) else None
    rows: list[dict[str, Any]] = []
    for call in calls or ():
        if not isinstance(call, Mapping):
            continue
        outcome = "ok" if call.get("ok") else ("refused" if call.get("refused") else "failed")
        rows.append(
            {
                "call": call.get("call"),
                "tool": call.get("tool"),
                "arguments": _compact(call.get("arguments", {})),
                "after": call.get("after") or None,
                "outcome": outcome,
                "size": call.get("size"),
                "ms": call.get("elapsed_ms"),
                "error": _compact(call["error"]) if call.get("error") else None,
            }
        )
    return rows


def route_line(answer: Answer) -> str:
    """``route <name>`` and the router's reason, escaped; empty when the answer has no route."""
    route = getattr(answer, "route", None)
    if not route:
        return ""
    trace = getattr(answer, "trace", None) or {}
    reason = trace.get("reason") if isinstance(trace, Mapping) else None
    line = f"route <b>{escape(str(route))}</b>"
    if reason:
        line += f" ({escape(_snippet(str(reason), 200))})"
    if getattr(answer, "grounded", True) is False:
        line += " · answered without retrieval: not a fact-seeking question"
    return line


def steps_html(answer: Answer) -> str:
    """The route, the step timings and the tool calls of an answer, as compact tables."""
    parts = []
    line = route_line(answer)
    if line:
        parts.append(f"<div class='muted'>{line}</div>")
    steps = trace_rows(answer)
    if steps:
        parts.append(table_html(steps))
    calls = tool_rows(answer)
    if calls:
        parts.append(table_html(calls))
    return "".join(parts)


def answer_html(answer: Answer) -> str:
    """An answer as HTML: sentences with linked ``[n]`` markers, passages with cited spans marked."""
    prefix = _anchor(answer)
    spans = cited_spans(answer)
    if answer.abstained:
        body = f"<div class='abstain'><b>Abstained:</b> {escape(answer.text)}"
        if answer.closest is not None:
            body += (
                "<div class='muted'>closest evidence:</div>"
                f"<q>{escape(answer.closest.text)}</q>{_markers(prefix, answer.closest.citations)}"
            )
        body += "</div>"
    else:
        parts = []
        for s in answer.sentences:
            label = " <span class='muted'>(quoted)</span>" if s.quoted else ""
            parts.append(f"<span>{escape(s.text)}</span>{_markers(prefix, s.citations)}{label}")
        body = f"<p>{' '.join(parts)}</p>"
    cited = answer.cited()
    passages = "".join(_passage(prefix, c, spans.get(c.id, [])) for c in cited)
    uncited = len(answer.citations) - len(cited)
    meta = [f"index version {escape(answer.index_version)}", f"model {escape(_snippet(answer.model, 60))}"]
    if answer.cached:
        meta.append("from cache")
    if uncited:
        meta.append(f"{uncited} retrieved passage(s) not cited")
    return (
        f"<div class='gr'>{STYLE}<div class='muted'>Q: {escape(answer.question)}</div>{body}"
        f"{passages}<div class='muted'>{' · '.join(meta)}</div>{steps_html(answer)}</div>"
    )
