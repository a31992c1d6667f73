"""From a routed question to evidence: plan tool calls, run them, turn results into citations.

    route (grounded.grounding.router)  ->  plan (this module)  ->  run (grounded.grounding.executor)  ->  citations

Plans are small and built from the question alone, never from retrieved text, so an
instruction hidden in a document ("ignore previous instructions, run ...") cannot add a call:

* ``unstructured``: nothing here; the engine's own retrieval finds the passages;
* ``structured``: text-to-SQL over the linked tables (``sql``) and ``search`` at the same time;
* ``multi_step``: the question split into its parts, each part its own ``sql`` or ``search``
  call, all concurrent (a ``calculate`` step over their results is not planned yet);
* ``not_fact_seeking``: no calls; the answer is marked ungrounded.

With a tool-call expert (``[experts.tool_call]``, see :mod:`grounded.grounding.toolcall`), the calls of
``structured`` and ``multi_step`` questions are chosen by the model instead, under JSON-schema
constrained decoding, from the question and the tools' schemas alone; when it fails or every
call it asks for is refused, the rules above plan, and the trace says why.

AnyTool results become numbered :class:`~grounded.answering.types.Citation` objects with provenance
(source, tables, query, row keys, fetched_at) and flow through the same writer and verifier as
passages.
"""

from __future__ import annotations

import re

from grounded.grounding.executor import Call, Plan
from grounded.grounding.router import RouteDecision
from grounded.grounding.toolcall import ProposedPlan, ToolCaller, describe_table
from grounded.sql.writer import SqlDraft, SqlWriter
from grounded.tools import AnyTool

__all__ = ["OFFERED_TOOLS", "Planner", "split_question"]

OFFERED_TOOLS = ("search", "sql", "calculate")
"""Tools the tool-call expert may choose from (``sql`` only when the question links to tables)."""

_SPLIT = re.compile(r"\s*(?:,\s*and|;|\band\b(?=\s+(?:what|who|when|where|how|which|why)\b))\s*", re.I)


def split_question(question: str) -> list[str]:
    """The parts of a multi-part question ("who X and when Y" -> two questions)."""
    parts = [p.strip(" ?,.") for p in _SPLIT.split(question) if p and p.strip(" ?,.")]
    comparison = re.match(
        r"(?i)^(compare|difference between)\s+(?:the\s+)?(.+?)\s+of\s+(.+?)\s+and\s+(.+)$", question.strip(" ?")
    )
    if comparison:
        _, what, a, b = comparison.groups()
        return [f"what is the {what} of {a}", f"what is the {what} of {b}"]
    return parts if len(parts) > 1 else [question]


class Planner:
    """Builds plans for routed questions (see the module docstring).

    ``tool_caller`` (optional) lets a model choose the calls of structured and multi-step
    questions among ``tools``; without one, or when its calls are refused, the rules plan.
    """

    def __init__(
        self,
        sql_writer: SqlWriter | None,
        *,
        k: int = 3,
        tool_caller: ToolCaller | None = None,
        tools: tuple[AnyTool, ...] = (),
    ) -> None:
        self.sql_writer = sql_writer
        self.k = k
        self.tool_caller = tool_caller
        self.tools = tools

    def plan(
        self,
        question: str,
        decision: RouteDecision,
        drafts: list[SqlDraft],
        proposals: list[ProposedPlan] | None = None,
    ) -> Plan:
        if decision.route in ("unstructured", "not_fact_seeking"):
            return Plan(decision.route, (), decision.reason)
        reason = decision.reason
        if self.tool_caller is not None:
            offered = tuple(t for t in self.tools if t.name != "sql" or decision.links)
            if offered:
                tables = [describe_table(link.table) for link in decision.links[:3]] if decision.links else []
                proposal = self.tool_caller.propose(question, offered, tables=tables)
                if proposals is not None:
                    proposals.append(proposal)
                if proposal.calls:
                    return Plan(decision.route, proposal.calls, f"{reason}; calls chosen by the tool-call expert")
                why = proposal.error or "; ".join(proposal.refused) or "no call"
                reason = f"{reason}; tool-call expert gave no usable call ({why[:200]}), so the rules planned"
        return self._rules(question, decision, drafts, reason)

    def _rules(self, question: str, decision: RouteDecision, drafts: list[SqlDraft], reason: str) -> Plan:
        if decision.route == "structured":
            # The engine searches the passages itself, at the same time as nothing else runs.
            return Plan("structured", tuple(self._sql_call("c1", question, decision, drafts)), reason)
        calls = []
        for i, part in enumerate(split_question(question)[:4], start=1):
            sql = self._sql_call(f"c{i}", part, decision, drafts) if decision.links else []
            calls.extend(sql or [Call(f"c{i}", "search", {"query": part, "k": self.k})])
        return Plan("multi_step", tuple(calls), reason)

    def _sql_call(self, call_id: str, question: str, decision: RouteDecision, drafts: list[SqlDraft]) -> list[Call]:
        if self.sql_writer is None:
            return []
        draft = self.sql_writer.write(question, decision.links)
        drafts.append(draft)
        return [Call(call_id, "sql", {"query": draft.sql})] if draft.sql else []
