"""The grounding layer for one question: route, plan, run the tool calls, on the request's view.

    route (router)  ->  plan (planner, tool-call expert)  ->  run (executor)  ->  Grounding

Everything runs on the caller's :class:`~grounded.store.View`: the tables it may read are the
only ones linked, offered and queried — SQL drafts are checked and bound on the caller's own
connection (:func:`~grounded.sql.database.caller_database`), which holds nothing else — and
every call reads the version pinned for the question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded.experts.embedding import SentenceEmbedder
from grounded.experts.tuned import TunedExperts
from grounded.grounding.executor import Execution, Executor, Plan
from grounded.grounding.planner import OFFERED_TOOLS, Planner
from grounded.grounding.router import RouteDecision, Router
from grounded.grounding.toolcall import ProposedPlan, ToolCaller
from grounded.sql.database import ReadOnlyDatabase, caller_database
from grounded.sql.schema_link import SchemaLinker
from grounded.sql.writer import SqlDraft, SqlWriter
from grounded.store import View
from grounded.tools import ToolContext, load_tools

if TYPE_CHECKING:
    from grounded.experts.base import StructuredGenerator, TextGenerator

__all__ = ["Grounder", "Grounding"]


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
            "sql_drafts": [d.trace() for d in self.sql],
            "calls": [t.to_dict() for t in self.execution.trace] if self.execution else [],
            "elapsed_ms": self.execution.elapsed_ms if self.execution else 0.0,
        }


class Grounder:
    """Route, plan and run tool calls for one knowledge base (one instance per engine).

    ``kb_path`` is where tuned SQL experts live; ``embedder`` routes questions and links them to
    tables. Each :meth:`ground` call works on the request's view only.
    """

    def __init__(
        self,
        kb_path: Path,
        embedder: SentenceEmbedder,
        *,
        sql_expert: TextGenerator | None = None,
        tool_expert: StructuredGenerator | None = None,
        k: int = 3,
        sql_grammar: bool = True,
    ) -> None:
        self.embedder = embedder
        self.router = Router(embedder)
        self.sql_expert = sql_expert
        self.sql_grammar = sql_grammar
        self.tuned = TunedExperts(kb_path)
        self.tool_caller = ToolCaller(tool_expert) if tool_expert is not None else None
        self.k = k
        self._passages: dict[str, bool] = {}

    def linker(self, view: View) -> SchemaLinker | None:
        """The schema linker of the view's version (every table, profiled once per version), when it
        has mirrored tables; :meth:`ground` links only the caller's tables with it."""
        db = ReadOnlyDatabase.for_version(view.snapshot.version.store_path)
        return SchemaLinker.for_version(db, self.embedder) if db.tables() else None

    def _has_passages(self, view: View) -> bool:
        """Whether the view's version holds any passage to search (counted once per version)."""
        key = str(view.snapshot.version.store_path)
        found = self._passages.get(key)
        if found is None:
            found = view.snapshot.store.counts()["chunks"] > 0
            self._passages = {key: found}  # one version at a time, like the linker
        return found

    def ground(self, question: str, view: View) -> Grounding:
        """Route ``question``, plan its calls and run them, all on ``view``."""
        linker = self.linker(view)
        ctx = ToolContext(view=view)
        caller_db = caller_database(view)
        links = linker.link(question, tables=caller_db.tables()) if linker else []
        decision = self.router.route(question, links, passages=self._has_passages(view))
        sql_ready = self.sql_expert is not None or self.tuned.any("sql")
        writer = (
            SqlWriter(self.sql_expert, linker, db=caller_db, tuned=self.tuned, grammar=self.sql_grammar)
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
