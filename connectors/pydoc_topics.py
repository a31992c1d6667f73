"""The Python language reference topics that ship inside CPython (``pydoc_data``).

A real public corpus available offline on every machine with Python, used by ``make demo``:
the same text ``help("with")`` shows (from the Python documentation, PSF license).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Cursor, Document, Page, StreamSpec
from grounded.errors import FatalConnectorError

__all__ = ["PydocTopicsConfig", "PydocTopicsConnector"]


class PydocTopicsConfig(BaseModel):
    """Which topics to read (all by default)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    topics: tuple[str, ...] = Field((), description="Topic names (e.g. 'with'); empty reads them all.")


class PydocTopicsConnector:
    """One document per topic: its title is the topic's first line."""

    name: ClassVar[str] = "pydoc"
    Config: ClassVar[type[BaseModel]] = PydocTopicsConfig

    def __init__(self, config: PydocTopicsConfig | None = None) -> None:
        self.config = config or PydocTopicsConfig()

    def _topics(self) -> dict[str, str]:
        try:
            from pydoc_data.topics import topics
        except ImportError as exc:  # some distributions split pydoc_data out
            raise FatalConnectorError(
                "this Python has no pydoc_data package; install your distribution's python3-doc"
            ) from exc
        wanted = self.config.topics or tuple(sorted(topics))
        unknown = [t for t in wanted if t not in topics]
        if unknown:
            raise FatalConnectorError(f"unknown pydoc topics {unknown}; known: {', '.join(sorted(topics))}")
        return {t: topics[t] for t in wanted}

    def check(self) -> None:
        self._topics()

    def streams(self) -> list[StreamSpec]:
        return [StreamSpec(name="topics", kind="documents", full_scan=True)]

    def size_hint(self) -> int:
        return len(self._topics())

    def read(self, stream: str, cursor: Cursor | None) -> Iterator[Page]:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        docs = []
        for topic, text in self._topics().items():
            title = text.strip().splitlines()[0].strip() if text.strip() else topic
            docs.append(
                Document(
                    key=topic,
                    text=text,
                    title=title,
                    uri=f"https://docs.python.org/{version}/ (pydoc topic '{topic}')",
                    metadata={"topic": topic, "python": version},
                )
            )
        yield Page(records=docs)
