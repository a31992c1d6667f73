"""Answers in Jupyter: sentences with linked ``[n]`` markers, cited spans highlighted, the trace.

An answer's markers ``[n]`` link to the passage ``n`` below it; inside each passage the span
the sentence rests on is highlighted (:func:`cited_spans` says which, as character offsets
into the passage text). ``Answer._repr_html_`` calls :func:`answer_html`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from grounded.html import STYLE, link, mark_spans, snippet, table_html
from grounded.text import content_terms
from indexes.chunking import sentence_spans

if TYPE_CHECKING:
    from grounded.answering.types import Answer, AnswerSentence, Citation

__all__ = ["answer_html", "cited_spans", "route_line", "steps_html", "tool_rows", "trace_rows"]


def _find_quote(text: str, quote: str) -> tuple[int, int] | None:
    """Where ``quote`` occurs in ``text`` when whitespace is allowed to differ."""
    words = quote.split()
    if not words:
        return None
    match = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return (match.start(), match.end()) if match else None


def _best_sentence(text: str, sentence: str) -> tuple[int, int] | None:
    """The sentence of ``text`` sharing most content words with ``sentence`` (none shared: None)."""
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
        f"<b>{link(citation.title or citation.doc_id, citation.uri)}</b> <span class='muted'>{where}</span>"
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
    return snippet(text, limit)


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
        line += f" ({escape(snippet(str(reason), 200))})"
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
    meta = [f"index version {escape(answer.index_version)}", f"model {escape(snippet(answer.model, 60))}"]
    if answer.cached:
        meta.append("from cache")
    if uncited:
        meta.append(f"{uncited} retrieved passage(s) not cited")
    return (
        f"<div class='gr'>{STYLE}<div class='muted'>Q: {escape(answer.question)}</div>{body}"
        f"{passages}<div class='muted'>{' · '.join(meta)}</div>{steps_html(answer)}</div>"
    )
