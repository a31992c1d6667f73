"""The grounding layer for one question: route, plan, run the tool calls, on the request's view.

    route (router)  ->  plan (planner, tool-call expert)  ->  run (executor)  ->  Grounding

Everything runs on the caller's :class:`~grounded.store.View`: the tables it may read are the
only ones linked, offered and queried — SQL drafts are checked and bound on the caller's own
connection (:func:`~grounded.sql.database.caller_database`), which holds nothing else — and
every call reads the version pinned for the question.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from grounded.errors import ConfigError
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
from grounded.tools import ToolContext
from grounded.tools.catalog import ToolCatalog
from grounded.tools.gate import NO_GATE, ToolGate, active_gate_dir
from grounded.tools.index import ToolCandidates, ToolIndex

if TYPE_CHECKING:
    from grounded.experts.base import StructuredGenerator, TextGenerator

__all__ = ["MAX_TOOL_CALLS", "Grounder", "Grounding"]

MAX_TOOL_CALLS = 4
"""Calls the expert may make among retrieved tools (parallel calls of one tool count each)."""


@dataclass(slots=True)
class Grounding:
    """What the grounding layer found for one question before the writer speaks."""

    decision: RouteDecision
    plan: Plan
    execution: Execution | None = None
    sql: list[SqlDraft] = field(default_factory=list)
    proposals: list[ProposedPlan] = field(default_factory=list)
    tools: ToolCandidates | None = None
    """The tools retrieved for the question (when any tool beyond the built-ins is offered)."""

    def trace(self) -> dict[str, Any]:
        return {
            **self.decision.to_dict(),
            "tool_retrieval": self.tools.to_dict() if self.tools is not None else None,
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
        self.kb_path = Path(kb_path)
        self._passages: dict[str, bool] = {}
        self._catalog: ToolCatalog | None = None
        self._tool_index: ToolIndex | None = None
        self._gate: tuple[Path, ToolGate] | None = None
        self._lock = threading.Lock()

    def catalog(self, view: View) -> ToolCatalog:
        """The tools of the view's settings (loaded once; tool sources connect on first use)."""
        with self._lock:
            if self._catalog is None or self._catalog.settings is not view.settings:
                if self._catalog is not None:
                    self._catalog.close()
                self._catalog = ToolCatalog(view.settings, base=self.kb_path.parent)
            return self._catalog

    def retrieve_tools(self, question: str, view: View, catalog: ToolCatalog) -> ToolCandidates | None:
        """The tools retrievable by ``view``'s caller best for ``question``; ``None`` when none exist."""
        settings = view.settings.tools
        every = catalog.retrievable(catalog.tools())
        if not catalog.retrievable(catalog.allowed(view.acl_groups)):
            return None
        with self._lock:
            if self._tool_index is None:
                self._tool_index = ToolIndex(self.kb_path / "tools", view.settings, self.embedder)
            index = self._tool_index
        index.update(every, catalog.groups)
        return index.retrieve(
            question,
            settings.candidates,
            acl_groups=view.acl_groups,
            threshold=settings.min_relevance,
            gate=self.tool_gate(settings.gate),
        )

    def tool_gate(self, mode: Literal["auto", "model", "threshold"]) -> ToolGate | None:
        """The trained tool gate for ``tools.gate = mode``: the active one of the model cache (read
        again when ``toolgate/ACTIVE`` changes), ``None`` when the threshold decides."""
        if mode == "threshold":
            return None
        directory = active_gate_dir()
        if directory is None:
            if mode == "model":
                raise ConfigError(NO_GATE.replace("(tools.gate = 'auto')", "but tools.gate = 'model' requires a gate"))
            return None
        with self._lock:
            if self._gate is None or self._gate[0] != directory:
                self._gate = (directory, ToolGate.load(directory))
            return self._gate[1]

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
        catalog = self.catalog(view)
        tools = catalog.allowed(view.acl_groups)
        found = self.retrieve_tools(question, view, catalog) if self.tool_caller is not None else None
        plan: Plan | None = None
        if found is not None and found.relevant and self.tool_caller is not None:
            # Only the retrieved tools are shown: a small model cannot hold hundreds of schemas.
            proposal = self.tool_caller.propose(
                question, [tools[n] for n in found.names if n in tools], max_calls=MAX_TOOL_CALLS
            )
            proposals.append(proposal)
            if proposal.calls:
                gate = f", tool gate {found.gate.probability:.2f}" if found.gate is not None else ""
                why = (
                    f"tools retrieved ({', '.join(found.names)}; relevance {found.relevance:.2f}{gate}); "
                    "calls chosen by the tool-call expert"
                )
                if decision.route == "not_fact_seeking":
                    decision = dataclasses.replace(decision, route="unstructured")
                plan = Plan(decision.route, proposal.calls, f"{decision.reason}; {why}")
        if plan is None:
            offered = tuple(tools[name] for name in OFFERED_TOOLS if name in tools)
            planner = Planner(writer, k=self.k, tool_caller=self.tool_caller, tools=offered)
            plan = planner.plan(question, decision, drafts, proposals)
        grounding = Grounding(decision, plan, sql=drafts, proposals=proposals, tools=found)
        if plan.calls:
            grounding.execution = Executor(tools, ctx).run(plan)
        return grounding
