"""``grounded.Client``, ``AsyncClient`` and ``grounded.open(URL)`` against a real server."""

from __future__ import annotations

import asyncio
import time

import pytest

import grounded
from grounded.answering.types import Answer
from grounded.api.schemas import JobOut, QueryResponse, SearchResponse, SourcesResponse
from grounded.client import AnswerEvent, AsyncClient, Client, EvidenceEvent, RemoteKnowledgeBase, SentenceEvent
from grounded.errors import Forbidden, InvalidRequest, NotFound, ServerUnreachable, Unauthorized
from grounded.kb import KnowledgeBase
from grounded.retrieval.results import SearchResults
from tests.api.serving import free_port
from tests.integrations.conftest import PUBLIC_QUESTION, SECRET_QUESTION, assert_no_secret


def test_results_are_the_servers_schemas(url: str, tokens: dict[str, str]) -> None:
    with Client(url + "/v1/", api_key=tokens["staff"]) as client:  # an OpenAI-style base URL works too
        found = client.search(SECRET_QUESTION, k=5)
        answer = client.ask(SECRET_QUESTION, k=3)
    assert isinstance(found, SearchResponse)
    assert "secret" in {h.source for h in found.hits}
    top = next(h for h in found.hits if h.source == "secret")
    assert top.text == top.text.strip()
    assert 0 <= top.start < top.end
    assert isinstance(answer, QueryResponse)
    assert not answer.abstained
    assert "payroll" in answer.answer
    cited = {c.id: c for c in answer.citations}
    assert all(cited[i].source for s in answer.sentences for i in s.citations)
    assert answer.index_version == found.index_version


def test_a_restricted_key_sees_only_its_groups(url: str, tokens: dict[str, str]) -> None:
    """ACL through the client: the eng key never gets the staff source, in any call."""
    with Client(url, api_key=tokens["eng"]) as client:
        found = client.search(SECRET_QUESTION, k=20)
        answer = client.ask(SECRET_QUESTION, k=3)
        events = list(client.ask_stream(SECRET_QUESTION, k=3))
        named = client.search("Nightingale codename", filters={"source": "secret"})
        with pytest.raises(Forbidden, match="admin key"):
            client.sources()
        with pytest.raises(Forbidden):
            client.refresh("secret")
    assert {h.source for h in found.hits} == {"public"}
    assert {c.source for c in answer.citations} <= {"public"}
    assert named.hits == []
    for text in (found.model_dump_json(), answer.model_dump_json(), repr(events), named.model_dump_json()):
        assert_no_secret(text)
    with grounded.open(url, api_key=tokens["eng"]) as remote:
        assert isinstance(remote, RemoteKnowledgeBase)
        assert_no_secret(repr(remote.search(SECRET_QUESTION, k=20)))
        assert_no_secret(repr(remote.ask(SECRET_QUESTION)))


def test_streamed_answer_arrives_in_order_and_matches(url: str, tokens: dict[str, str]) -> None:
    with Client(url, api_key=tokens["staff"]) as client:
        events = list(client.ask_stream(PUBLIC_QUESTION, k=3, cache=False))
        whole = client.ask(PUBLIC_QUESTION, k=3, cache=False)
    assert isinstance(events[0], EvidenceEvent)
    assert isinstance(events[-1], AnswerEvent)
    sentences = [e.sentence for e in events if isinstance(e, SentenceEvent)]
    assert sentences == events[-1].answer.sentences
    assert [c.id for c in events[0].citations] == [c.id for c in events[-1].answer.citations]
    assert events[-1].answer.answer == whole.answer
    assert not whole.abstained


def test_async_client_does_the_same(url: str, tokens: dict[str, str]) -> None:
    async def run() -> tuple[SearchResponse, QueryResponse, list[str], SourcesResponse]:
        async with AsyncClient(url, api_key=tokens["admin"]) as client:
            found, answer = await asyncio.gather(client.search(SECRET_QUESTION, k=5), client.ask(SECRET_QUESTION, k=3))
            kinds = [event.kind async for event in client.ask_stream(SECRET_QUESTION, k=3)]
            return found, answer, kinds, await client.sources()

    found, answer, kinds, sources = asyncio.run(run())
    assert "secret" in {h.source for h in found.hits}
    assert "payroll" in answer.answer
    assert kinds[0] == "evidence"
    assert kinds[-1] == "answer"
    assert {s.name for s in sources.sources} == {"public", "secret", "payroll"}

    async def unauthorized() -> None:
        async with AsyncClient(url) as client:
            await client.search("lambda")

    with pytest.raises(Unauthorized):
        asyncio.run(unauthorized())


def test_errors_are_the_local_exception_classes(url: str, tokens: dict[str, str], acl_kb: KnowledgeBase) -> None:
    with Client(url, api_key="") as anonymous, pytest.raises(Unauthorized, match="requires an API key") as missing:
        anonymous.search("lambda")
    assert missing.value.status == 401
    assert missing.value.problem is not None
    assert missing.value.problem["instance"] == "/v1/search"
    with Client(url, api_key=tokens["staff"]) as client:
        # Refused by the same schema on this side, before anything is sent, as locally ...
        with pytest.raises(InvalidRequest, match="k: Input should be greater than or equal to 1"):
            client.search("lambda", k=0)
        with pytest.raises(InvalidRequest):
            acl_kb.search("lambda", k=0)
        # ... and by the server: its 422 problem comes back as the same class.
        with pytest.raises(InvalidRequest, match="colour") as bad_filter:
            client.search("lambda", filters={"colour": "red"})
        assert bad_filter.value.status == 422
    with Client(url, api_key=tokens["admin"]) as admin, pytest.raises(NotFound, match="no source named 'nope'"):
        admin.refresh("nope")
    with Client(f"http://127.0.0.1:{free_port()}", timeout=5) as nowhere, pytest.raises(ServerUnreachable) as down:
        nowhere.health()
    assert isinstance(down.value, ConnectionError)
    with pytest.raises(InvalidRequest, match="http"):
        Client("localhost:8000")


def test_admin_keys_list_sources_refresh_and_read_jobs(url: str, tokens: dict[str, str]) -> None:
    with Client(url, api_key=tokens["admin"]) as client:
        sources = client.sources()
        assert {s.name: s.acl for s in sources.sources} == {"public": [], "secret": ["staff"], "payroll": ["staff"]}
        job = client.refresh("public")
        assert isinstance(job, JobOut)
        assert job.source == "public"
        deadline = time.monotonic() + 120
        while (done := client.jobs(source="public").jobs[0]).status == "running":
            assert time.monotonic() < deadline, "the refresh did not finish in 120 s"
            time.sleep(0.2)
    assert done.id == job.id
    assert done.status == "succeeded", done.error
    assert done.trigger == "api"


def test_open_url_reads_like_a_local_knowledge_base(url: str, tokens: dict[str, str], acl_kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidRequest, match="keep_versions"):
        grounded.open(url, keep_versions=2)
    remote = grounded.open(url, api_key=tokens["staff"])
    assert isinstance(remote, RemoteKnowledgeBase)
    with remote:
        hits = remote.search(SECRET_QUESTION, k=5)
        answer = remote.ask(SECRET_QUESTION, k=3)
        assert remote.version == acl_kb.version
        with pytest.raises(AttributeError, match="not available over HTTP"):
            remote.ingest("docs/")  # type: ignore[attr-defined]
    local = acl_kb.search(SECRET_QUESTION, k=5, acl_groups=["staff"])
    assert isinstance(hits, SearchResults)
    assert [(h.chunk_id, h.doc_id, h.start, h.end, h.title) for h in hits] == [
        (h.chunk_id, h.doc_id, h.start, h.end, h.title) for h in local
    ]
    assert [h.score for h in hits] == pytest.approx([h.score for h in local])
    assert isinstance(answer, Answer)
    assert answer.text == acl_kb.ask(SECRET_QUESTION, k=3, acl_groups=["staff"]).text
    assert [c.uri for c in answer.cited()]
    assert "<mark" in answer._repr_html_()
