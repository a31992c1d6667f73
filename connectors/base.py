"""The connector protocol and the records connectors yield.

A connector reads one configured source. It declares the streams it can read and yields
:class:`Page` objects; each page carries the cursor to resume *after* it. The sync runner
commits a page's cursor only once the knowledge base has accepted the page, so delivery is
at-least-once and content-hash ids make the replays harmless.

Example::

    class Notes:
        name = "notes"
        Config = NotesConfig

        def __init__(self, config: NotesConfig) -> None: ...
        def check(self) -> None: ...
        def streams(self) -> list[StreamSpec]:
            return [StreamSpec(name="notes", kind="documents", full_scan=True)]
        def read(self, stream: str, cursor: Cursor | None) -> Iterator[Page]:
            yield Page(records=[Document(key="a", text="...")], cursor=None)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, runtime_checkable

from pydantic import BaseModel

__all__ = [
    "Column",
    "Connector",
    "Cursor",
    "Deletion",
    "Document",
    "JSONValue",
    "LiveKeys",
    "Page",
    "Record",
    "RowBatch",
    "SizedConnector",
    "Split",
    "SplittableConnector",
    "StreamSpec",
    "Unreadable",
    "row_document_key",
]

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None
Cursor: TypeAlias = dict[str, JSONValue]
"""Connector-defined resume state; must be JSON-serialisable."""


@dataclass(frozen=True, slots=True)
class Document:
    """A text document from a source. ``key`` is stable within its source."""

    key: str
    text: str
    title: str = ""
    uri: str = ""
    updated_at: datetime | None = None
    metadata: Mapping[str, JSONValue] = field(default_factory=dict)
    acl: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a mirrored table: its name and DuckDB type (``BIGINT``, ``VARCHAR``...)."""

    name: str
    type: str


@dataclass(frozen=True, slots=True)
class RowBatch:
    """Rows for the DuckDB mirror of one table; upserted by ``primary_key``."""

    table: str
    columns: tuple[Column, ...]
    rows: Sequence[tuple[Any, ...]]
    primary_key: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Deletion:
    """A tombstone: the document ``key`` (or, with ``table``, the row whose key it is) is gone."""

    key: str
    table: str | None = None
    row_key: tuple[Any, ...] | None = None
    """With ``table``: the primary-key values of the deleted row (default: ``(key,)``)."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Part of a source could not be read (a corrupt file, a failing endpoint).

    The runner reports ``reason`` and keeps what it already has under ``key_prefix``: a full
    scan must not mistake an unreadable record for a deleted one.
    """

    key_prefix: str
    reason: str


@dataclass(frozen=True, slots=True)
class LiveKeys:
    """Primary keys of rows that still exist in ``table``, for deletion by key diff.

    An incremental table stream reads only changed rows, so it cannot see deletions; after
    them it yields every live key (cheap: one indexed column) and the runner deletes mirrored
    rows whose keys it did not see once the stream ends. A read with no cursor (the first, or
    ``--full``) delivers every live row, so it needs none: the runner diffs against its rows.
    """

    table: str
    keys: Sequence[tuple[Any, ...]]


Record: TypeAlias = Document | RowBatch | Deletion | Unreadable | LiveKeys


def row_document_key(table: str, key: Sequence[Any]) -> str:
    """The document key of a table row rendered to text: ``table/pk1/pk2``.

    Shared by connectors (which render rows) and the runner (which deletes the documents of
    deleted rows), so both always agree.
    """
    return "/".join([table, *(str(k) for k in key)])


@dataclass(frozen=True, slots=True)
class Page:
    """A batch of records and the cursor to resume after them (``None``: start over)."""

    records: Sequence[Record]
    cursor: Cursor | None = None


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One readable stream of a connector.

    ``full_scan`` streams yield every live record on each read, so the runner deletes keys it
    did not see (deletion by key diff). Incremental streams resume from their cursor and signal
    deletions with :class:`Deletion` records.
    """

    name: str
    kind: Literal["documents", "table"] = "documents"
    full_scan: bool = True
    primary_key: tuple[str, ...] = ()
    cursor_field: str | None = None
    table: str | None = None
    """For ``kind="table"``: the mirrored table's name (``<source>.<table>`` in DuckDB)."""


@runtime_checkable
class Connector(Protocol):
    """What every connector, built in or third-party, implements."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseModel]]

    def check(self) -> None:
        """Fail fast (``FatalConnectorError``) on bad credentials, unreachable hosts, bad paths."""

    def streams(self) -> list[StreamSpec]:
        """The streams this configured instance reads."""

    def read(self, stream: str, cursor: Cursor | None) -> Iterator[Page]:
        """Yield pages of ``stream`` starting after ``cursor``."""


@runtime_checkable
class SizedConnector(Connector, Protocol):
    """A connector that can say how many records a read will yield (for progress bars)."""

    def size_hint(self) -> int | None:
        """Roughly how many records all streams will yield; ``None`` when unknown."""


@dataclass(frozen=True, slots=True)
class Split:
    """One part of a stream that can be read on its own (a run of files, a range of lines or keys).

    ``spec`` is the connector's own description of the part (JSON-serialisable, so a split can be
    shipped to another process); ``index`` orders the splits.
    """

    stream: str
    index: int
    spec: Mapping[str, JSONValue]


@runtime_checkable
class SplittableConnector(Connector, Protocol):
    """A connector whose full read of a stream divides into independent parts.

    The Ray engine (:mod:`grounded.ingest.ray_engine`) reads the parts in parallel tasks. Reading
    every split of ``splits(stream, n)`` in order yields the records of ``read(stream, None)``, in
    the same order (the page boundaries may differ), so the version written is the same.
    """

    def splits(self, stream: str, parts: int) -> list[Split]:
        """About ``parts`` splits of a full read of ``stream``, in read order (fewer when it is small)."""

    def read_split(self, split: Split) -> Iterator[Page]:
        """Pages of the records of ``split`` (cursor ``None``: a split is part of a full read)."""
