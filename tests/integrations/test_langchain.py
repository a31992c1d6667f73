"""LangChain: GroundedRetriever in a chain, and ChatOpenAI on /v1/chat/completions, against a real server."""

from __future__ import annotations

import pytest

import grounded
from grounded.kb import KnowledgeBase
from tests.integrations.conftest import PUBLIC_QUESTION, SECRET_QUESTION, assert_no_secret, need

need("langchain_core", "langchain")
need("langchain_openai", "langchain")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from grounded.integrations.langchain import GroundedRetriever  # noqa: E402


def cite(docs: list[Document]) -> str:
    """The evidence block a RAG prompt would get: numbered passages with where they come from."""
    return "\n".join(
        f"[{i}] {d.page_content} ({d.metadata['title']}, {d.metadata['uri']}, "
        f"chars {d.metadata['start']}-{d.metadata['end']})"
        for i, d in enumerate(docs, 1)
    )


def test_a_chain_gets_cited_evidence_from_the_retriever(url: str, tokens: dict[str, str]) -> None:
    retriever = GroundedRetriever.from_url(url, api_key=tokens["staff"], k=4)
    docs = retriever.invoke(SECRET_QUESTION)
    secret = next(d for d in docs if d.metadata["source"] == "secret")
    assert secret.id == secret.metadata["chunk_id"]
    assert "Nightingale" in secret.page_content
    assert secret.metadata["uri"].endswith("plan.txt")
    assert 0 <= secret.metadata["start"] < secret.metadata["end"]
    assert secret.metadata["index_version"]
    evidence = (retriever | RunnableLambda(cite)).invoke(SECRET_QUESTION)
    retriever.kb.close()
    assert "March 2027" in evidence
    assert "plan.txt" in evidence


def test_chat_openai_gets_grounded_answers_with_sources(url: str, tokens: dict[str, str]) -> None:
    llm = ChatOpenAI(base_url=f"{url}/v1", api_key=tokens["staff"], model="grounded", max_retries=0)
    chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | llm | StrOutputParser()
    reply = chain.invoke({"question": SECRET_QUESTION})
    assert "payroll" in reply
    assert "[1]" in reply
    assert "Sources:" in reply
    assert "plan.txt" in reply
    streamed = "".join(chain.stream({"question": SECRET_QUESTION}))
    assert "payroll" in streamed


def test_acl_holds_through_langchain(url: str, tokens: dict[str, str], acl_kb: KnowledgeBase) -> None:
    """A restricted key (served) or restricted groups (local) never reach the staff source."""
    with grounded.open(url, api_key=tokens["eng"]) as remote:
        served = GroundedRetriever(kb=remote, k=10)
        docs = served.invoke(SECRET_QUESTION)
    assert docs
    assert {d.metadata["source"] for d in docs} == {"public"}
    assert_no_secret(repr(docs))
    llm = ChatOpenAI(base_url=f"{url}/v1", api_key=tokens["eng"], model="grounded", max_retries=0)
    assert_no_secret(llm.invoke(SECRET_QUESTION).text)

    local = GroundedRetriever(kb=acl_kb, k=10, acl_groups=["eng"])
    assert {d.metadata["source"] for d in local.invoke(SECRET_QUESTION)} == {"public"}
    assert "secret" in {d.metadata["source"] for d in GroundedRetriever(kb=acl_kb, k=10).invoke(SECRET_QUESTION)}
    assert GroundedRetriever(kb=acl_kb, k=2, acl_groups=["eng"]).invoke(PUBLIC_QUESTION)
    with pytest.raises(ValidationError, match="reads as its API key"):
        GroundedRetriever(kb=served.kb, acl_groups=["staff"])
