"""HTML pieces for Jupyter displays: one stylesheet, escaping, links, marked spans, tables.

Every piece of text that came from a document, a query or a model is passed through
:func:`html.escape`; URIs become links only for ``http``, ``https`` and ``file``. Each stage
renders its own results with these (``grounded.retrieval.results``, ``grounded.answering.html``,
``grounded.notebook``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from grounded.text import STOPWORDS

__all__ = ["STYLE", "cell", "link", "mark_spans", "query_spans", "safe_href", "snippet", "table_html"]

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


_WORD = re.compile(r"[A-Za-z0-9]+")
_SNIPPET_CHARS = 320


def safe_href(uri: str) -> str | None:
    """``uri`` escaped for an ``href`` when its scheme is harmless, else ``None``."""
    if uri.lower().startswith(("http://", "https://", "file://")):
        return escape(uri, quote=True)
    return None


def link(text: str, uri: str) -> str:
    """``text`` as a link to ``uri`` when its scheme is harmless, else ``text`` escaped."""
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


def cell(value: Any) -> str:
    """A table cell: escaped, floats shortened, sequences joined."""
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
    body = "".join("<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def snippet(text: str, limit: int = _SNIPPET_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def query_spans(text: str, query: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that are words of ``query`` (content words only, case-insensitive)."""
    words = {w.lower() for w in _WORD.findall(query) if len(w) > 2 and w.lower() not in STOPWORDS}
    return [(m.start(), m.end()) for m in _WORD.finditer(text) if m.group().lower() in words]
