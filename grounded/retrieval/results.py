"""Search results: a list of hits that remembers its query and shows as a table in Jupyter."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from grounded.html import STYLE, cell, link, mark_spans, query_spans, snippet
from indexes.base import Hit

__all__ = ["SearchResults", "hits_html"]


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
        short = snippet(hit.text)
        title = link(hit.title or hit.doc_id, hit.uri)
        rows.append(
            f"<tr><td>{rank}</td><td>{hit.score:.4f}</td><td>{cell(hit.bm25_rank)}</td>"
            f"<td>{cell(hit.dense_rank)}</td><td><b>{title}</b><br><span class='muted'>{escape(hit.source)} · "
            f"chars {hit.start}&ndash;{hit.end}</span></td><td>{mark_spans(short, query_spans(short, query))}</td></tr>"
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
