"""The search and lookup tools read the request's pinned version, within the caller's ACL."""

from __future__ import annotations

from pathlib import Path

import pytest

import grounded
from connectors.base import Document, Page, StreamSpec
from grounded.tools import ToolContext, get_tool

pytestmark = pytest.mark.slow


class _Docs:
    """A connector yielding fixed documents (one stream, full scan)."""

    name = "fixed"

    def __init__(self, docs: list[Document]) -> None:
        self.docs = docs

    def check(self) -> None:
        return None

    def streams(self) -> list[StreamSpec]:
        return [StreamSpec("docs", kind="documents", full_scan=True)]

    def read(self, stream: str, cursor: object) -> list[Page]:
        return [Page(tuple(self.docs), cursor=None)]


def _doc(key: str, text: str, acl: tuple[str, ...] = ()) -> Document:
    return Document(key=key, title=key, text=text, acl=acl)


def test_search_tool_reads_the_version_pinned_for_the_question(tmp_path: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    kb.sync("notes", _Docs([_doc("a", "The kettle boils water in two minutes.")]))  # type: ignore[arg-type]
    view = kb.store.view()
    pinned = view.version
    # A new version is published while the question is in flight.
    kb.sync("notes", _Docs([_doc("b", "The toaster browns bread in three minutes.")]))  # type: ignore[arg-type]
    assert kb.version != pinned

    result = get_tool("search").call({"query": "kettle boils water", "k": 3}, ToolContext(view=view))
    assert result.ok
    assert result.provenance["index_version"] == pinned
    assert [h.key for h in result.data["hits"]] == ["a"]
    fresh = get_tool("search").call({"query": "kettle boils water", "k": 3}, ToolContext(view=kb.store.view()))
    assert [h.key for h in fresh.data["hits"]] == ["b"]


def test_lookup_tool_hides_documents_the_caller_may_not_read(tmp_path: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    docs = [_doc("open", "Everyone may read this."), _doc("secret", "BRAVO salaries.", acl=("hr",))]
    kb.sync("notes", _Docs(docs))  # type: ignore[arg-type]
    secret_id = next(h.doc_id for h in kb.search("salaries", k=2) if h.key == "secret")
    lookup = get_tool("lookup")

    hr = lookup.call({"doc_id": secret_id}, ToolContext(view=kb.store.view(acl_groups=("hr",))))
    assert hr.ok
    assert "BRAVO" in hr.text
    staff = lookup.call({"doc_id": secret_id}, ToolContext(view=kb.store.view(acl_groups=("staff",))))
    assert not staff.ok
    assert "BRAVO" not in staff.text
    assert "no document with id" in (staff.error or "")
