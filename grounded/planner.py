"""From a routed question to evidence: plan tool calls, run them, turn results into citations.

    route (grounded.router)  ->  plan (this module)  ->  run (grounded.executor)  ->  citations

Plans are small and built from the question alone, never from retrieved text, so an
instruction hidden in a document ("ignore previous instructions, run ...") cannot add a call:

* ``unstructured``: nothing here; the engine's own retrieval finds the passages;
* ``structured``: text-to-SQL over the linked tables (``sql``) and ``search`` at the same time;
* ``multi_step``: the question split into its parts, each part its own ``sql`` or ``search``
  call, all concurrent (a ``calculate`` step over their results is not planned yet);
* ``not_fact_seeking``: no calls; the answer is marked ungrounded.

With a tool-call expert (``[experts.tool_call]``, see :mod:`grounded.toolcall`), the calls of
``structured`` and ``multi_step`` questions are chosen by the model instead, under JSON-schema
constrained decoding, from the question and the tools' schemas alone; when it fails or every
call it asks for is refused, the rules above plan, and the trace says why.

Tool results become numbered :class:`~grounded.answer.Citation` objects with provenance
(source, tables, query, row keys, fetched_at) and flow through the same writer and verifier as
passages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from grounded.answer import AnswerSentence, Citation
from grounded.executor import Call, Execution, Executor, Plan
from grounded.router import RouteDecision, Router
from grounded.schema_link import SchemaLinker
from grounded.text2sql import SqlDraft, SqlWriter
from grounded.toolcall import ProposedPlan, ToolCaller, describe_table
from grounded.tools import Tool, ToolContext, ToolResult, load_tools
from grounded.tools.sql import ReadOnlyDatabase, visible_tables
from grounded.tune.store import TunedExperts

if TYPE_CHECKING:
    from grounded.experts.base import StructuredGenerator, TextGenerator
    from grounded.kb import KnowledgeBase

__all__ = [
    "OFFERED_TOOLS",
    "Grounder",
    "Grounding",
    "Planner",
    "exact_numbers",
    "numbers_in",
    "split_question",
    "tool_citation",
    "tool_citations",
]

OFFERED_TOOLS = ("search", "sql", "calculate")
"""Tools the tool-call expert may choose from (``sql`` only when the question links to tables)."""

_SPLIT = re.compile(r"\s*(?:,\s*and|;|\band\b(?=\s+(?:what|who|when|where|how|which|why)\b))\s*", re.I)
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")


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


def numbers_in(text: str) -> set[str]:
    """Numbers written in ``text``, thousands separators removed (``1,234.50`` -> ``1234.50``)."""
    return {m.group(0).replace(",", "") for m in _NUMBER.finditer(text)}


@dataclass(slots=True)
class Grounding:
    """What the grounding layer found for one question before the writer speaks."""

    decision: RouteDecision
    plan: Plan
    execution: Execution | None = None
    sql: list[SqlDraft] = field(default_factory=list)
    proposals: list[ProposedPlan] = field(default_factory=list)

    def trace(self) -> dict[str, Any]:
        return {
            **self.decision.to_dict(),
            "plan": self.plan.to_dict(),
            "tool_call_expert": [p.to_dict() for p in self.proposals],
            "sql_drafts": [
                {"sql": d.sql, "tables": list(d.tables), "attempts": d.attempts, "error": d.error} for d in self.sql
            ],
            "calls": [t.to_dict() for t in self.execution.trace] if self.execution else [],
            "elapsed_ms": self.execution.elapsed_ms if self.execution else 0.0,
        }


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
        tools: tuple[Tool, ...] = (),
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


class Grounder:
    """Route, plan and run tool calls for one knowledge base (one instance per engine)."""

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        sql_expert: TextGenerator | None = None,
        tool_expert: StructuredGenerator | None = None,
        k: int = 3,
        sql_grammar: bool = True,
    ) -> None:
        self.kb = kb
        self.router = Router(kb.embedder)
        self.sql_expert = sql_expert
        self.sql_grammar = sql_grammar
        self.tuned = TunedExperts(kb.path)
        self.tool_caller = ToolCaller(tool_expert) if tool_expert is not None else None
        self.k = k

    def linker(self) -> SchemaLinker | None:
        db = ReadOnlyDatabase.for_version(self.kb.snapshot().version.store_path)
        return SchemaLinker.for_version(db, self.kb.embedder) if db.tables() else None

    def ground(self, question: str, *, ctx: ToolContext | None = None) -> Grounding:
        linker = self.linker()
        ctx = ctx or ToolContext(kb=self.kb)
        visible = {t.qualified for t in visible_tables(linker.db, ctx)} if linker else set()
        links = [link for link in linker.link(question) if link.table.qualified in visible] if linker else []
        decision = self.router.route(question, links)
        sql_ready = self.sql_expert is not None or self.tuned.any("sql")
        writer = (
            SqlWriter(self.sql_expert, linker, tuned=self.tuned, grammar=self.sql_grammar)
            if linker is not None and sql_ready
            else None
        )
        drafts: list[SqlDraft] = []
        proposals: list[ProposedPlan] = []
        tools = load_tools()
        offered = tuple(tools[name] for name in OFFERED_TOOLS if name in tools)
        planner = Planner(writer, k=self.k, tool_caller=self.tool_caller, tools=offered)
        plan = planner.plan(question, decision, drafts, proposals)
        grounding = Grounding(decision, plan, sql=drafts, proposals=proposals)
        if plan.calls:
            grounding.execution = Executor(tools, ctx).run(plan)
        return grounding


def tool_citation(cid: int, call: Call, result: ToolResult, synced: dict[str, datetime | None]) -> Citation:
    """A tool result as numbered evidence; failures are evidence too (of what could not be found)."""
    prov = dict(result.provenance)
    if call.tool == "sql":
        # The query is in the title: the verifier counts title words as support for a sentence.
        title = f"SQL over {', '.join(prov.get('tables', [])) or 'the mirrored tables'}: {prov.get('query', '')}"
        uri = f"sql:{prov.get('query', call.arguments.get('query', ''))}"
    elif call.tool == "api":
        title = f"Live API {prov.get('source', '')}/{prov.get('endpoint', '')}"
        uri = str(prov.get("uri", ""))
    else:
        title = f"{call.tool} tool"
        uri = f"{call.tool}:{call.id}"
    source = str(prov.get("source") or call.tool)
    synced_at = synced.get(source.split(",")[0])
    if prov.get("fetched_at"):
        synced_at = datetime.fromisoformat(str(prov["fetched_at"]))
    prov.update({"call": call.id, "ok": result.ok, "error": result.error})
    return Citation(
        id=cid,
        chunk_id=-cid,
        doc_id=f"tool:{call.tool}:{call.id}",
        title=title,
        uri=uri,
        start=0,
        end=len(result.text),
        text=result.text,
        source=source,
        synced_at=synced_at,
        score=1.0 if result.ok else 0.0,
        provenance=prov,
    )


def tool_citations(grounding: Grounding, synced: dict[str, datetime | None], start: int = 1) -> list[Citation]:
    """Every call's result as evidence, in plan order; ``search`` hits become passage citations."""
    out: list[Citation] = []
    if grounding.execution is None:
        return out
    for call, result in grounding.execution.ordered():
        if call.tool == "search" and result.ok:
            for hit in result.data["hits"]:
                out.append(Citation.from_hit(start + len(out), hit, synced.get(hit.source)))
        else:
            out.append(tool_citation(start + len(out), call, result, synced))
    return out


def exact_numbers(sentences: list[AnswerSentence], citations: tuple[Citation, ...]) -> list[AnswerSentence]:
    """Keep a sentence citing tool evidence only if every number in it is written in that evidence.

    A sentence that fails is replaced by the result's own first row, quoted. When nothing is
    left but a tool answered, the answer is that result, quoted: a structured question is
    answered from the table, never abstained on because the writer was unsure.
    """
    by_id = {c.id: c for c in citations}
    tools = [c for c in citations if c.provenance and c.provenance.get("ok")]
    out: list[AnswerSentence] = []
    for sentence in sentences:
        cited_tools = [by_id[i] for i in sentence.citations if i in by_id and by_id[i].provenance]
        if not cited_tools:
            out.append(sentence)
            continue
        allowed: set[str] = set()
        for c in (by_id[i] for i in sentence.citations if i in by_id):
            allowed |= numbers_in(c.text)
        if numbers_in(sentence.text) <= allowed:
            out.append(sentence)
        else:
            quote = _result_quote(cited_tools[0])
            if quote and all(q.text != quote.text for q in out):
                out.append(quote)
    if not out and tools:
        quote = _result_quote(tools[0])
        if quote is not None:
            out.append(quote)
    return out


def _result_quote(citation: Citation) -> AnswerSentence | None:
    lines = [ln for ln in citation.text.splitlines() if ln.startswith("Row ")] or citation.text.splitlines()[:1]
    if not lines:
        return None
    return AnswerSentence(" ".join(lines[:3]), (citation.id,), quoted=True, support=1.0)
