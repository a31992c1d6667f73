"""The pydoc connector (``grounded demo``'s corpus): the contract suite on a slice of its topics."""

from __future__ import annotations

import sys

import pytest

from connectors.base import Document
from connectors.pydoc_topics import PydocTopicsConfig, PydocTopicsConnector
from connectors.testing import ConnectorContract, collect
from grounded.errors import FatalConnectorError

TOPICS = ("with", "pass", "lambda")


class TestPydocContract(ConnectorContract):
    entry_point = "pydoc"

    @pytest.fixture
    def connector(self) -> PydocTopicsConnector:
        return PydocTopicsConnector(PydocTopicsConfig(topics=TOPICS))

    @pytest.fixture
    def failing_connector(self) -> PydocTopicsConnector:
        return PydocTopicsConnector(PydocTopicsConfig(topics=("with", "no-such-topic")))


def test_one_document_per_topic_with_its_first_line_as_title() -> None:
    from pydoc_data.topics import topics

    connector = PydocTopicsConnector(PydocTopicsConfig(topics=TOPICS))
    assert connector.size_hint() == 3
    docs = [r for page in collect(connector, "topics") for r in page.records]
    assert [d.key for d in docs if isinstance(d, Document)] == list(TOPICS)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    first = docs[0]
    assert isinstance(first, Document)
    assert first.text == topics["with"]
    assert first.title == topics["with"].strip().splitlines()[0].strip()
    assert first.uri == f"https://docs.python.org/{version}/ (pydoc topic 'with')"
    assert dict(first.metadata) == {"topic": "with", "python": version}
    assert PydocTopicsConnector().size_hint() == len(topics)  # no topics: all of them


def test_an_unknown_topic_names_the_known_ones() -> None:
    with pytest.raises(FatalConnectorError, match=r"unknown pydoc topics \['nope'\]; known: .*\bwith\b"):
        PydocTopicsConnector(PydocTopicsConfig(topics=("nope",))).check()
