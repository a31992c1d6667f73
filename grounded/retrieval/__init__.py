"""Retrieval: a published version opened (:class:`Snapshot`), filters, hybrid search, results.

query ─► validate_query / parse_filters / restrict ─► search(snapshot, ...) ─► SearchResults
"""

from grounded.retrieval.filters import FILTER_KEYS, MAX_QUERY_CHARS, parse_filters, restrict, validate_query
from grounded.retrieval.results import SearchResults
from grounded.retrieval.search import MODES, Mode, fuse, search
from grounded.retrieval.snapshot import Snapshot

__all__ = [
    "FILTER_KEYS",
    "MAX_QUERY_CHARS",
    "MODES",
    "Mode",
    "SearchResults",
    "Snapshot",
    "fuse",
    "parse_filters",
    "restrict",
    "search",
    "validate_query",
]
