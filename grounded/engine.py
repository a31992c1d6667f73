"""The grounding engine: question -> evidence -> cited draft -> verified answer (or abstention).

    1. normalise the question and look up the answer cache
    2. retrieve the top-k passages (hybrid search); number them [1]..[k]
    3. split them into sentences and embed them; if none is close enough to the question,
       abstain without asking the model
    4. the answer expert (greedy) writes short sentences citing [n], from the best sentences
       of each passage
       (an active tuned answer expert, from ``grounded tune answer``, gets its short prompt instead)
    5. the verifier keeps supported sentences, quotes evidence for the rest, or abstains
    6. the answer is cached under (question, index version, config, models)

Example::

    engine = GroundingEngine(grounded.open("kb"))
    answer = engine.answer("where is mount logan?")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded.answer import (
    ABSTAIN_TEXT,
    Answer,
    AnswerSentence,
    Citation,
    Evidence,
    build_messages,
    cited_text,
    format_passages,
    is_abstention,
    parse_sentences,
)
from grounded.cache import AnswerCache, cache_key, normalise_question
from grounded.errors import InvalidRequest
from grounded.experts.base import Generation, GrammarGenerator, Message, StructuredGenerator, TextGenerator
from grounded.experts.registry import get_expert, get_structured_expert
from grounded.planner import Grounder, Grounding, exact_numbers, tool_citations
from grounded.retrieval import parse_filters
from grounded.tools.base import ToolContext
from grounded.tune.prompt import ANSWER_PROMPT_FORMAT, ANSWER_SCOPE, tuned_answer_messages
from grounded.tune.store import TunedExpert, TunedExperts
from grounded.verify import EvidencePool, SupportCheck, build_pool, verify

if TYPE_CHECKING:
    from grounded.kb import KnowledgeBase
    from indexes.base import Hit

__all__ = ["PROMPT_VERSION", "AnswerEvent", "GroundingEngine"]

GROUNDING_VERSION = "tools-v1"
"""Bumped whenever routing, planning or tool evidence changes, so cached answers are not reused."""

UNGROUNDED_PROMPT = "You are a helpful assistant. Reply briefly in one or two sentences."

PROMPT_VERSION = "answer-v1"
"""Bumped whenever the prompt, parsing or verification changes, so cached answers are not reused."""


@dataclass(frozen=True, slots=True)
class AnswerEvent:
    """One step of a streamed answer: ``evidence`` (citations), ``sentence``, then ``answer``."""

    kind: str
    data: Any


@dataclass(frozen=True, slots=True)
class Draft:
    """What happened on the way to an answer, kept for benchmarks and debugging."""

    generation: Generation | None
    parsed: tuple[tuple[str, tuple[int, ...]], ...]
    checks: tuple[SupportCheck, ...]
    best_similarity: float


class GroundingEngine:
    """Answers questions from one knowledge base with the configured answer expert."""

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        expert: TextGenerator | None = None,
        grounding: bool = True,
        sql_expert: TextGenerator | None = None,
        tool_expert: StructuredGenerator | None = None,
    ) -> None:
        self.kb = kb
        self.settings = kb.settings.answer
        self._expert = expert
        self.grounding = grounding
        """Route and call tools (grounded.planner) before writing; False: passages only (issue 3)."""
        self._sql_expert = sql_expert
        self._tool_expert = tool_expert
        self._grounder: Grounder | None = None
        self._cache: AnswerCache | None = None
        self._lock = threading.Lock()
        self._synced: dict[str, dict[str, datetime | None]] = {}
        self.tuned = TunedExperts(kb.path)
        """The active tuned answer expert (``grounded tune answer``), re-read when its pointer changes."""
        self.last_draft: Draft | None = None

    @property
    def expert(self) -> TextGenerator:
        if self._expert is None:
            self._expert = get_expert("answer", self.kb.settings)
        return self._expert

    @property
    def cache(self) -> AnswerCache:
        with self._lock:
            if self._cache is None:
                self._cache = AnswerCache(self.kb.path / "cache.sqlite")
            return self._cache

    def writer(self) -> tuple[TextGenerator, TunedExpert | None]:
        """The expert that writes answers now: the active tuned one (with ``answer.tuned``), else the configured."""
        tuned = self.tuned.get("answer", ANSWER_SCOPE) if self.settings.tuned else None
        return (tuned.generator if tuned is not None else self.expert), tuned

    def warm_up(self) -> None:
        """Load the answer model now rather than on the first question."""
        for expert in {id(e): e for e in (self.expert, self.writer()[0])}.values():
            load = getattr(expert, "load", None)
            if callable(load):
                load()

    # -- public -----------------------------------------------------------------------------------

    def answer(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        use_cache: bool = True,
        acl_groups: Sequence[str] | None = None,
    ) -> Answer:
        """A cited, verified answer to ``question`` (see the module docstring)."""
        result: Answer | None = None
        for event in self.stream(question, k=k, filters=filters, use_cache=use_cache, acl_groups=acl_groups):
            if event.kind == "answer":
                result = event.data
        assert result is not None
        return result

    def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        use_cache: bool = True,
        acl_groups: Sequence[str] | None = None,
    ) -> Iterator[AnswerEvent]:
        """The answer as events: ``evidence`` (list of citations), each ``sentence``, ``answer``.

        ``acl_groups`` (``None``: unrestricted) limits the evidence to what those groups may
        read; the groups are part of the cache key, so a cached answer never crosses groups.
        """
        from grounded.kb import restrict, validate_query

        started = time.perf_counter()
        timings: dict[str, float] = {}
        q = normalise_question(validate_query(question))
        k = self.settings.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 20:
            raise InvalidRequest(f"k (evidence passages) must be an integer from 1 to 20; got {k!r}")
        parsed_filters = restrict(parse_filters(filters), acl_groups)
        snapshot = self.kb.snapshot()
        version = snapshot.version.id
        # A tuned answer expert activated or rolled back while serving changes the key (its fingerprint).
        writer, tuned = self.writer()
        key = cache_key(
            q,
            version,
            {
                "prompt": ANSWER_PROMPT_FORMAT if tuned is not None else PROMPT_VERSION,
                "answer": self.settings.model_dump(exclude={"cache"}),
                "search": self.kb.settings.search.model_dump(),
                "k": k,
                "filters": repr(parsed_filters),
                "acl_groups": parsed_filters.acl_groups,
                "grounding": GROUNDING_VERSION if self.grounding else None,
            },
            {"answer": writer.fingerprint, "embed": self.kb.embedder.fingerprint, **self._tool_models()},
        )
        use_cache = use_cache and self.settings.cache
        if use_cache:
            stored = self.cache.get(key)
            if stored is not None:
                import json

                cached = Answer.from_dict(json.loads(stored))
                timings["total_ms"] = _ms(started)
                cached = _with(cached, timings=timings, cached=True)
                yield AnswerEvent("evidence", list(cached.citations))
                for sentence in cached.sentences:
                    yield AnswerEvent("sentence", sentence)
                yield AnswerEvent("answer", cached)
                return

        grounding = None
        if self.grounding:
            t = time.perf_counter()
            grounding = self.grounder.ground(q, ctx=ToolContext(kb=self.kb, extra={"filters": parsed_filters}))
            timings["ground_ms"] = _ms(t)
            if grounding.decision.route == "not_fact_seeking":
                yield from self._ungrounded(q, version, grounding, started, timings)
                return
        t = time.perf_counter()
        hits = self.kb.search(q, k=k, filters=parsed_filters, snapshot=snapshot)
        timings["retrieve_ms"] = _ms(t)
        tool_evidence = tool_citations(grounding, self._synced_at(version)) if grounding else []
        first_passage = 1 + len(tool_evidence)
        passages = [self._citation(i, hit, version) for i, hit in enumerate(hits, first_passage)]
        citations = (*tool_evidence, *passages)
        yield AnswerEvent("evidence", list(citations))

        t = time.perf_counter()
        pool = build_pool(q, citations, self.kb.embedder)
        timings["evidence_ms"] = _ms(t)
        best = pool.best_similarity()
        generation: Generation | None = None
        parsed: list[tuple[str, tuple[int, ...]]] = []
        checks: list[SupportCheck] = []
        sentences: list[AnswerSentence] = []
        has_tools = any(c.provenance and c.provenance.get("ok") for c in citations)
        if best >= self.settings.min_evidence_similarity or has_tools:
            evidence = self._evidence(pool)
            messages = (
                tuned_answer_messages(q, format_passages(evidence))
                if tuned is not None
                else build_messages(q, evidence)
            )
            t = time.perf_counter()
            generation = writer.generate(messages, max_tokens=self.settings.max_new_tokens)
            timings["generate_ms"] = _ms(t)
            timings["prefill_s"] = round(generation.prefill_s, 4)
            timings["decode_s"] = round(generation.decode_s, 4)
            timings["prompt_tokens"] = float(generation.prompt_tokens)
            timings["completion_tokens"] = float(generation.completion_tokens)
            if not is_abstention(generation.text):
                t = time.perf_counter()
                parsed = parse_sentences(generation.text, [c.id for c in citations])
                sentences, checks = verify(parsed, pool, self.kb.embedder, self.settings)
                timings["verify_ms"] = _ms(t)
        if has_tools:
            sentences = exact_numbers(sentences, citations)
        self.last_draft = Draft(generation, tuple(parsed), tuple(checks), best)

        for sentence in sentences:
            yield AnswerEvent("sentence", sentence)
        model = writer.fingerprint
        route = grounding.decision.route if grounding else "unstructured"
        trace = grounding.trace() if grounding else {}
        if sentences:
            text = cited_text(sentences)
            answer = Answer(q, text, tuple(sentences), citations, False, version, model, route=route, trace=trace)
        else:
            answer = Answer(
                q, ABSTAIN_TEXT, (), citations, True, version, model, closest=_closest(pool), route=route, trace=trace
            )
        if use_cache:
            self.cache.put(key, version, answer.canonical_json())
        timings["total_ms"] = _ms(started)
        yield AnswerEvent("answer", _with(answer, timings=timings, cached=False))

    # -- grounding layer (grounded.planner) -------------------------------------------------------

    @property
    def grounder(self) -> Grounder:
        with self._lock:
            if self._grounder is None:
                self._grounder = Grounder(
                    self.kb,
                    sql_expert=self.sql_expert,
                    tool_expert=self.tool_expert,
                    k=self.settings.k,
                    sql_grammar=self._sql_grammar,
                )
            return self._grounder

    @property
    def sql_expert(self) -> TextGenerator | None:
        """The text-to-SQL expert: ``experts.sql`` when configured; without one, SQL is not planned."""
        if self._sql_expert is None and getattr(self.kb.settings.experts, "sql", None) is not None:
            self._sql_expert = get_expert("sql", self.kb.settings)
        return self._sql_expert

    @property
    def _sql_grammar(self) -> bool:
        """Whether SQL is decoded under the linked tables' grammar (it changes the SQL written)."""
        spec = getattr(self.kb.settings.experts, "sql", None)
        return spec is not None and spec.grammar and isinstance(self.sql_expert, GrammarGenerator)

    @property
    def tool_expert(self) -> StructuredGenerator | None:
        """The tool-call expert: ``experts.tool_call`` when configured; without one, the rules plan."""
        if self._tool_expert is None and getattr(self.kb.settings.experts, "tool_call", None) is not None:
            self._tool_expert = get_structured_expert("tool_call", self.kb.settings)
        return self._tool_expert

    def _tool_models(self) -> dict[str, str]:
        if not self.grounding:
            return {}
        experts = {"sql": self.sql_expert, "tool_call": self.tool_expert}
        models = {task: e.fingerprint for task, e in experts.items() if e is not None}
        if self._sql_grammar:
            models["sql"] += "+sql-grammar"
        # A tuned expert activated (or rolled back) while serving changes the key, never a stale answer.
        models.update({f"sql:{source}": fp for source, fp in self.grounder.tuned.fingerprints("sql").items()})
        return models

    def _synced_at(self, version: str) -> dict[str, datetime | None]:
        synced = self._synced.get(version)
        if synced is None:
            synced = {str(s["name"]): s.get("last_synced_at") for s in self.kb.snapshot().store.sources()}
            self._synced = {version: synced}
        return synced

    def _ungrounded(
        self, q: str, version: str, grounding: Grounding, started: float, timings: dict[str, float]
    ) -> Iterator[AnswerEvent]:
        """A not-fact-seeking question: the expert replies without evidence, marked ungrounded."""
        yield AnswerEvent("evidence", [])
        t = time.perf_counter()
        messages = [Message("system", UNGROUNDED_PROMPT), Message("user", q)]
        generation = self.expert.generate(messages, max_tokens=min(64, self.settings.max_new_tokens))
        timings["generate_ms"] = _ms(t)
        text = " ".join(generation.text.split()) or "Hello."
        sentence = AnswerSentence(text, (), quoted=False, support=0.0)
        yield AnswerEvent("sentence", sentence)
        answer = Answer(
            q, text, (sentence,), (), False, version, self.expert.fingerprint,
            route="not_fact_seeking", grounded=False, trace=grounding.trace(),
        )  # fmt: skip
        timings["total_ms"] = _ms(started)
        yield AnswerEvent("answer", _with(answer, timings=timings, cached=False))

    # -- steps ------------------------------------------------------------------------------------

    def _citation(self, cid: int, hit: Hit, version: str) -> Citation:
        synced = self._synced.get(version)
        if synced is None:
            synced = {str(s["name"]): s.get("last_synced_at") for s in self.kb.snapshot().store.sources()}
            self._synced = {version: synced}
        return Citation.from_hit(cid, hit, synced.get(hit.source))

    def _evidence(self, pool: EvidencePool) -> list[Evidence]:
        """Each passage cut to its ``sentences_per_passage`` sentences closest to the question."""
        out: list[Evidence] = []
        n = self.settings.sentences_per_passage
        for citation in pool.citations:
            rows = [i for i, owner in enumerate(pool.owners) if owner == citation.id]
            if not rows:
                continue
            # Stable order: similarity descending, then position, so ties never depend on chance.
            ranked = sorted(rows, key=lambda i: (-float(np.float32(pool.question_similarity[i])), i))[:n]
            out.append(Evidence(citation, tuple(pool.spans[i] for i in sorted(ranked))))
        return out


def _closest(pool: EvidencePool) -> AnswerSentence | None:
    best = pool.closest()
    if best is None:
        return None
    return AnswerSentence(pool.sentence(best), (pool.owners[best],), quoted=True, support=1.0)


def _with(answer: Answer, *, timings: dict[str, float], cached: bool) -> Answer:
    from dataclasses import replace

    return replace(answer, timings=dict(timings), cached=cached)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
