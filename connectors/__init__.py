"""Connectors: read sources (files, databases, APIs) into records for the knowledge base."""

from connectors.base import (
    Column,
    Connector,
    Cursor,
    Deletion,
    Document,
    Page,
    Record,
    RowBatch,
    StreamSpec,
    Unreadable,
)

__all__ = [
    "Column",
    "Connector",
    "Cursor",
    "Deletion",
    "Document",
    "Page",
    "Record",
    "RowBatch",
    "StreamSpec",
    "Unreadable",
]
