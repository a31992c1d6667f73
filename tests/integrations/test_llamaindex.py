"""LlamaIndex: GroundedRetriever (NodeWithScore) and GroundedQueryEngine (cited answers) against a real server."""

from __future__ import annotations

import asyncio

import pytest

import grounded
from grounded.kb import KnowledgeBase
from tests.integrations.conftest import SECRET_QUESTION, SECRET_TEXT, assert_no_secret, need

need("llama_index.core", "llamaindex")

from llama_index.core.schema import MetadataMode, NodeRelationship, NodeWithScore, TextNode  # noqa: E402

from grounded.integrations.llamaindex import GroundedQueryEngine, GroundedRetriever  # noqa: E402


def test_retriever_returns_scored_nodes_with_offsets(url: str, tokens: dict[str, str]) -> None:
    with grounded.open(url, api_key=tokens["staff"]) as kb:
        retriever = GroundedRetriever(kb, k=4)
        nodes = retriever.retrieve(SECRET_QUESTION)
        again = asyncio.run(retriever.aretrieve(SECRET_QUESTION))
    assert all(isinstance(n, NodeWithScore) for n in nodes)
    secret = next(n for n in nodes if n.node.metadata["source"] == "secret")
    node = secret.node
    assert isinstance(node, TextNode)
    assert node.text in SECRET_TEXT
    assert SECRET_TEXT[node.start_char_idx : node.end_char_idx] == node.text  # offsets into the document
    assert node.ref_doc_id == node.metadata["doc_id"]
    assert node.relationships[NodeRelationship.SOURCE].node_id == node.metadata["doc_id"]
    assert node.metadata["uri"].endswith("plan.txt")
    llm_view = node.get_metadata_str(MetadataMode.LLM)  # ids and offsets are for code, not the prompt
    assert "chunk_id" not in llm_view
    assert "plan.txt" in llm_view
    assert secret.score is not None
    assert secret.score > 0
    assert [n.node.node_id for n in again] == [n.node.node_id for n in nodes]


def test_a_query_gets_grounded_cited_answer(url: str, tokens: dict[str, str]) -> None:
    with grounded.open(url, api_key=tokens["staff"]) as kb:
        engine = GroundedQueryEngine(kb, k=3)
        response = engine.query(SECRET_QUESTION)
        later = asyncio.run(engine.aquery(SECRET_QUESTION))
    assert "payroll" in str(response)
    assert "[1]" in str(response)
    assert response.metadata is not None
    assert response.metadata["abstained"] is False
    assert response.source_nodes
    assert [n.node.metadata["citation"] for n in response.source_nodes] == sorted(
        n.node.metadata["citation"] for n in response.source_nodes
    )
    assert "secret" in {n.node.metadata["source"] for n in response.source_nodes}
    assert str(later) == str(response)


def test_acl_holds_through_llamaindex(url: str, tokens: dict[str, str], acl_kb: KnowledgeBase) -> None:
    with grounded.open(url, api_key=tokens["eng"]) as kb:
        nodes = GroundedRetriever(kb, k=10).retrieve(SECRET_QUESTION)
        response = GroundedQueryEngine(kb, k=3).query(SECRET_QUESTION)
        with pytest.raises(ValueError, match="reads as its API key"):
            GroundedRetriever(kb, acl_groups=["staff"])
    assert nodes
    assert {n.node.metadata["source"] for n in nodes} == {"public"}
    assert {n.node.metadata["source"] for n in response.source_nodes} <= {"public"}
    assert_no_secret(repr(nodes) + str(response) + repr(response.source_nodes))

    local = GroundedRetriever(acl_kb, k=10, acl_groups=["eng"]).retrieve(SECRET_QUESTION)
    assert {n.node.metadata["source"] for n in local} == {"public"}
    staff = GroundedQueryEngine(acl_kb, k=3, acl_groups=["staff"]).query(SECRET_QUESTION)
    assert "secret" in {n.node.metadata["source"] for n in staff.source_nodes}
