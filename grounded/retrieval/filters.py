"""What a caller may ask of retrieval: a validated query and search filters, narrowed by ACL."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from grounded.errors import InvalidRequest
from indexes.base import SearchFilters

__all__ = ["FILTER_KEYS", "MAX_QUERY_CHARS", "parse_filters", "restrict", "validate_query"]

MAX_QUERY_CHARS = 2000

FILTER_KEYS = {
    "source": "a source name or a list of them",
    "doc_id": "a document id or a list of them",
    "uri_prefix": "a string the document URI starts with",
    "updated_after": "an ISO-8601 date-time",
    "updated_before": "an ISO-8601 date-time",
    "metadata": "an object of metadata key -> exact value",
}


def _str_list(name: str, value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise InvalidRequest(f"filter {name!r} must be {FILTER_KEYS[name]}; got {value!r}")
    return tuple(values)


def _datetime(name: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise InvalidRequest(f"filter {name!r} must be {FILTER_KEYS[name]}; got {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.astimezone()


def parse_filters(filters: Mapping[str, Any] | None) -> SearchFilters:
    """Validate a filter object from a caller; unknown keys and bad values raise InvalidRequest."""
    if not filters:
        return SearchFilters()
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        allowed = ", ".join(f"{k} ({v})" for k, v in FILTER_KEYS.items())
        raise InvalidRequest(f"unknown filter {', '.join(map(repr, unknown))}; allowed filters: {allowed}")
    metadata = filters.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, Mapping) or not all(isinstance(v, str | int | float | bool) for v in metadata.values())
    ):
        raise InvalidRequest(f"filter 'metadata' must be {FILTER_KEYS['metadata']} (scalar values); got {metadata!r}")
    for key in metadata or {}:
        _metadata_key(key)
    uri_prefix = filters.get("uri_prefix")
    if uri_prefix is not None and not isinstance(uri_prefix, str):
        raise InvalidRequest(f"filter 'uri_prefix' must be {FILTER_KEYS['uri_prefix']}; got {uri_prefix!r}")
    return SearchFilters(
        sources=_str_list("source", filters["source"]) if "source" in filters else (),
        doc_ids=_str_list("doc_id", filters["doc_id"]) if "doc_id" in filters else (),
        uri_prefix=uri_prefix,
        updated_after=_datetime("updated_after", filters["updated_after"]) if "updated_after" in filters else None,
        updated_before=_datetime("updated_before", filters["updated_before"]) if "updated_before" in filters else None,
        metadata=tuple(sorted((str(k), _scalar_text(v)) for k, v in (metadata or {}).items())),
    )


MAX_METADATA_KEY_CHARS = 200


def _metadata_key(key: object) -> None:
    """A metadata key the store can look up as one JSON member: non-empty, bounded, printable,
    and not ``*`` (a JSON-path wildcard that would match every member)."""
    if (
        not isinstance(key, str)
        or not key
        or len(key) > MAX_METADATA_KEY_CHARS
        or key == "*"
        or any(not ch.isprintable() for ch in key)
    ):
        shown = key[:40] + "…" if isinstance(key, str) and len(key) > 40 else key
        raise InvalidRequest(
            f"filter 'metadata' keys must be 1 to {MAX_METADATA_KEY_CHARS} printable characters (not '*'); "
            f"got {shown!r}"
        )


def _scalar_text(value: Any) -> str:
    # json_extract_string renders booleans as true/false, as JSON does.
    return str(value).lower() if isinstance(value, bool) else str(value)


def restrict(filters: SearchFilters, acl_groups: Sequence[str] | None) -> SearchFilters:
    """``filters`` narrowed to what ``acl_groups`` may read (an existing restriction is kept)."""
    if acl_groups is None:
        return filters
    groups = tuple(sorted(set(acl_groups)))
    if filters.acl_groups is not None:
        groups = tuple(g for g in groups if g in filters.acl_groups)
    return dataclasses.replace(filters, acl_groups=groups)


def validate_query(query: object) -> str:
    """A non-empty query of bounded length, whitespace-trimmed."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"query is {len(query)} characters long; the limit is {MAX_QUERY_CHARS}")
    return query.strip()
