"""The grounding engine: question -> evidence -> cited draft -> verified answer (or abstention).

:meth:`GroundingEngine.stream` runs one question through named stages, each a method below:

    1. ``_prepare``   normalise the question, pin the version (a :class:`~grounded.store.View`
                      with the caller's filters and ACL), build the answer-cache key (which holds
                      the conversation so far, when there is one)
    2. ``_cached``    a cached answer for that key, replayed as events
    2b. ``_converse`` a follow-up becomes a standalone question (answering/conversation.py): the
                      stages below run on the rewrite; a reference nothing earlier names makes the
                      question underspecified, answered with one clarifying question
    3. ``_ground``    route, plan and run tool calls (:mod:`grounded.grounding`) on the view
    4. ``_retrieve``  the top-k passages (hybrid search) on the same view; tool results and
                      passages numbered [1]..[n] as citations
    5. ``_gather``    the evidence's sentences and their embeddings, looked up where ingest stored
                      them (computed now for tool results and older versions); the answerability gate
                      (trained, :mod:`grounded.answering.trust`) decides whether the passages hold
                      an answer, else abstain without asking the model (no trained model: a
                      similarity threshold, and the answer says so)
    6. ``_write``     the answer expert (greedy) writes short sentences citing [n], from the best
                      sentences of each passage (an active tuned answer expert gets its short prompt)
    7. ``_verify``    the entailment checker keeps the sentences their citations support (no
                      fragments, nothing beside the question), quotes evidence for the rest, or abstains
    8. ``_finish``    the answerability label (answering/answerability.py), the answer, cached
                      under (conversation, question, index version, config, models)

With a trained answerability model (``answer.answerability``), ``_judge`` decides after step 5,
from the turn's features (:mod:`grounded.answering.turn_features`), whether the turn is
underspecified (then one clarifying question, nothing written), unanswerable (then the engine
abstains even when the gate would let it write) or partial (then it writes what the passages hold
even when the gate would refuse, and the answer says what is missing); without one, the rules of
step 2b and 8 decide.

Example::

    engine = GroundingEngine(grounded.open("kb").store)
    answer = engine.answer("where is mount logan?")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from grounded.answering.answerability import Decision, clarification, clarifying_question, decide, load_model
from grounded.answering.answerability_model import AnswerabilityModel, HeadDecision, HeadName
from grounded.answering.cache import AnswerCache, cache_key, normalise_question
from grounded.answering.conversation import (
    REWRITE_VERSION,
    Rewrite,
    Turn,
    as_turns,
    conversation_material,
    rewrite_question,
    unresolved_reference,
)
from grounded.answering.evidence import EvidencePool, build_pool, select_evidence
from grounded.answering.tool_evidence import exact_numbers, tool_citations
from grounded.answering.trust import (
    Checks,
    GateFinding,
    SentenceFinding,
    gate_evidence,
    is_fragment,
    load_checks,
    missing_terms,
    verify_checked,
)
from grounded.answering.turn_features import TurnFeatures, demonstrative_referent, turn_features, uncovered_terms
from grounded.answering.types import Answer, AnswerSentence, Citation, cited_text
from grounded.answering.verify import SupportCheck, best_quote, verify
from grounded.answering.writer import (
    ABSTAIN_TEXT,
    build_messages,
    format_passages,
    is_abstention,
    parse_sentences,
    tuned_answer_messages,
)
from grounded.errors import InvalidRequest
from grounded.experts.base import Generation, GrammarGenerator, StructuredGenerator, TextGenerator
from grounded.experts.registry import get_expert, get_structured_expert
from grounded.experts.tuned import ANSWER_PROMPT_FORMAT, ANSWER_SCOPE, TunedExpert, TunedExperts
from grounded.grounding.grounder import Grounder, Grounding
from grounded.retrieval import validate_query
from grounded.store import KnowledgeStore, View

__all__ = ["GROUNDING_VERSION", "PROMPT_VERSION", "AnswerEvent", "Draft", "GroundingEngine"]

GROUNDING_VERSION = "tools-v1"
"""Bumped whenever routing, planning or tool evidence changes, so cached answers are not reused."""

CONVERSATIONAL_REPLY = (
    "I answer questions from this knowledge base's sources, citing them; ask me about what they cover."
)
"""The reply to a conversational turn (``not_fact_seeking``): fixed, so it never states a fact."""

PARTIAL_NOTE = "The sources cover only part of this question."
"""Ends a partial answer when no word of the question is missing from the evidence to name."""

ANSWERABILITY_FLOW = "before-writing-v3"
"""Bumped whenever what the engine does with the answerability model's verdicts changes (a model trained earlier
then acts differently), so cached answers are not reused."""

_BEFORE_WRITING: tuple[HeadName, ...] = ("unanswerable", "partial")
"""The answerability model's heads decided after underspecified, before the gate and the writer."""

PROMPT_VERSION = "answer-v2"
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
    pool: EvidencePool | None = None
    gate: GateFinding | None = None
    findings: tuple[SentenceFinding, ...] = ()
    """The trained checks' finding for each drafted sentence (empty with lexical checks)."""

    @property
    def truncated(self) -> bool:
        """Whether the writer stopped at ``max_new_tokens`` (its last sentence may be cut)."""
        return self.generation is not None and self.generation.finish_reason == "length"


@dataclass(slots=True)
class _Question:
    """One question in flight: what each stage adds for the next."""

    text: str
    """The question the stages run on: as asked, or its standalone rewrite (``_converse``)."""
    k: int
    view: View
    writer: TextGenerator
    tuned: TunedExpert | None
    key: str
    started: float
    asked: str = ""
    history: tuple[Turn, ...] = ()
    rewrite: Rewrite | None = None
    unresolved: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    grounding: Grounding | None = None
    citations: tuple[Citation, ...] = ()
    pool: EvidencePool | None = None
    generation: Generation | None = None
    parsed: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    checks: list[SupportCheck] = field(default_factory=list)
    sentences: list[AnswerSentence] = field(default_factory=list)
    gate: GateFinding | None = None
    findings: list[SentenceFinding] = field(default_factory=list)
    retrieval: dict[str, Any] = field(default_factory=dict)
    """``trace.retrieval``: the search stages' records (``rerank``: status, model, ms)."""
    features: TurnFeatures | None = None
    verdicts: dict[str, HeadDecision] = field(default_factory=dict)
    """The answerability model's verdicts on this turn (empty with the rules)."""
    gate_passed: bool | None = None
    """What the gate (or the similarity threshold) said, before the model's verdicts overrode it."""
    quoted_part: bool = False
    """A partial turn answered with the closest evidence sentence: nothing the writer drafted was supported."""

    @property
    def version(self) -> str:
        return self.view.version

    @property
    def has_tools(self) -> bool:
        """Whether some tool call answered (its result is evidence the writer must use)."""
        return any(c.provenance and c.provenance.get("ok") for c in self.citations)


class GroundingEngine:
    """Answers questions from one knowledge store with the configured answer expert."""

    def __init__(
        self,
        store: KnowledgeStore,
        *,
        expert: TextGenerator | None = None,
        grounding: bool = True,
        sql_expert: TextGenerator | None = None,
        tool_expert: StructuredGenerator | None = None,
        checks: Checks | None = None,
    ) -> None:
        self.store = store
        self.settings = store.settings.answer
        self._expert = expert
        self.grounding = grounding
        """Route and call tools (grounded.grounding) before writing; False: passages only."""
        self._sql_expert = sql_expert
        self._tool_expert = tool_expert
        self._grounder: Grounder | None = None
        self._cache: AnswerCache | None = None
        self._checks = checks
        """The trained checks (or lexical ones); ``None``: :func:`load_checks` of ``answer.checks`` on first use."""
        self._answerability: tuple[AnswerabilityModel | None] | None = None
        self._lock = threading.Lock()
        self.tuned = TunedExperts(store.path)
        """The active tuned answer expert (``grounded tune answer``), re-read when its pointer changes."""
        self.last_draft: Draft | None = None

    @property
    def expert(self) -> TextGenerator:
        if self._expert is None:
            self._expert = get_expert("answer", self.store.settings)
        return self._expert

    @property
    def cache(self) -> AnswerCache:
        with self._lock:
            if self._cache is None:
                self._cache = AnswerCache(self.store.path / "cache.sqlite")
            return self._cache

    @property
    def checks(self) -> Checks:
        """The trained checker and gate (``answer.checks``), loaded once; lexical when none is trained."""
        with self._lock:
            if self._checks is None:
                self._checks = load_checks(self.settings.checks)
            return self._checks

    @property
    def answerability_model(self) -> AnswerabilityModel | None:
        """The trained answerability model (``answer.answerability``), loaded once; ``None``: the rules decide."""
        with self._lock:
            if self._answerability is None:
                self._answerability = (load_model(self.settings.answerability),)
            return self._answerability[0]

    def writer(self) -> tuple[TextGenerator, TunedExpert | None]:
        """The expert that writes answers now: the active tuned one (with ``answer.tuned``), else the configured."""
        tuned = self.tuned.get("answer", ANSWER_SCOPE) if self.settings.tuned else None
        return (tuned.generator if tuned is not None else self.expert), tuned

    def warm_up(self) -> None:
        """Load the answer model and the trained checks now rather than on the first question."""
        for expert in {id(e): e for e in (self.expert, self.writer()[0])}.values():
            load = getattr(expert, "load", None)
            if callable(load):
                load()
        if self.checks.gate is not None:
            self.checks.gate.decide("warm up", ["The checks model is loaded."])

    # -- public -----------------------------------------------------------------------------------

    def answer(
        self,
        question: str,
        *,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        use_cache: bool = True,
        acl_groups: Sequence[str] | None = None,
        history: Iterable[Turn | Mapping[str, Any] | tuple[str, str]] | None = None,
    ) -> Answer:
        """A cited, verified answer to ``question`` (see the module docstring).

        ``history`` is the conversation before ``question`` (user and assistant turns, oldest
        first); a follow-up is answered from its standalone rewrite.
        """
        result: Answer | None = None
        events = self.stream(
            question, k=k, filters=filters, use_cache=use_cache, acl_groups=acl_groups, history=history
        )
        for event in events:
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
        history: Iterable[Turn | Mapping[str, Any] | tuple[str, str]] | None = None,
    ) -> Iterator[AnswerEvent]:
        """The answer as events: ``evidence`` (list of citations), each ``sentence``, ``answer``.

        ``acl_groups`` (``None``: unrestricted) limits the evidence to what those groups may
        read; the groups are part of the cache key, so a cached answer never crosses groups.
        ``history``: the conversation before ``question`` (see :meth:`answer`).
        """
        q = self._prepare(question, k, filters, acl_groups, as_turns(history))
        use_cache = use_cache and self.settings.cache
        if use_cache:
            cached = self._cached(q)
            if cached is not None:
                yield from cached
                return
        self._converse(q)
        model = self.answerability_model
        if model is None and q.unresolved is not None:
            yield from self._clarify(q, use_cache, *self._rules_clarification(q))
            return
        if self.grounding:
            self._ground(q)
            if q.grounding is not None and q.grounding.decision.route == "not_fact_seeking":
                yield from self._ungrounded(q)
                return
        self._retrieve(q)
        self._gather(q)
        if model is not None:
            clarify = self._judge(q, model)
            if clarify is not None:
                yield from self._clarify(q, use_cache, *clarify)
                return
        yield AnswerEvent("evidence", list(q.citations))
        if self._answerable(q):
            self._write(q)
            self._verify(q)
            self._quote_partial(q)
        if q.has_tools:
            q.sentences = exact_numbers(q.sentences, q.citations)
        for sentence in q.sentences:
            yield AnswerEvent("sentence", sentence)
        yield AnswerEvent("answer", self._finish(q, use_cache))

    def turn_features(
        self,
        question: str,
        *,
        history: Iterable[Turn | Mapping[str, Any] | tuple[str, str]] | None = None,
        k: int | None = None,
    ) -> TurnFeatures:
        """What the answerability model reads about ``question`` after ``history``: the rewrite,
        retrieval and evidence stages of :meth:`stream`, nothing written (routing and tools are
        skipped). ``grounded tune answerability`` trains on exactly these numbers."""
        q = self._prepare(question, k, None, None, as_turns(history))
        self._converse(q)
        self._retrieve(q)
        self._gather(q)
        return turn_features(q.asked, q.history, q.text, q.pool, self.store.embedder)

    # -- stages -----------------------------------------------------------------------------------

    def _prepare(
        self,
        question: str,
        k: int | None,
        filters: Mapping[str, Any] | None,
        acl_groups: Sequence[str] | None,
        history: Sequence[Turn] = (),
    ) -> _Question:
        started = time.perf_counter()
        text = normalise_question(validate_query(question))
        k = self.settings.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 20:
            raise InvalidRequest(f"k (evidence passages) must be an integer from 1 to 20; got {k!r}")
        view = self.store.view(acl_groups=acl_groups, filters=filters)
        # A tuned answer expert activated or rolled back while serving changes the key (its fingerprint).
        writer, tuned = self.writer()
        key = cache_key(
            text,
            view.version,
            {
                "prompt": ANSWER_PROMPT_FORMAT if tuned is not None else PROMPT_VERSION,
                "answer": self.settings.model_dump(exclude={"cache"}),
                "search": self.store.settings.search.model_dump(),
                "k": k,
                "filters": repr(view.filters),
                "acl_groups": view.acl_groups,
                "grounding": GROUNDING_VERSION if self.grounding else None,
                "tools": self.store.settings.tools.model_dump(mode="json") if self.grounding else None,
                # The same last question after another conversation is another question.
                **(
                    {"conversation": conversation_material(history), "rewrite": self._rewrite_config} if history else {}
                ),
            },
            {
                "answer": writer.fingerprint,
                "embed": f"{self.store.embedder.fingerprint}:{self.store.embedder.runtime}",
                "checks": self.checks.fingerprint,
                "answerability": f"{model.fingerprint}:{ANSWERABILITY_FLOW}"
                if (model := self.answerability_model)
                else "rules",
                **({"rerank": reranker.fingerprint or "none"} if (reranker := self.store.reranker) else {}),
                **self._tool_models(),
            },
        )
        return _Question(text, k, view, writer, tuned, key, started, asked=text, history=tuple(history))

    def _cached(self, q: _Question) -> Iterator[AnswerEvent] | None:
        stored = self.cache.get(q.key)
        if stored is None:
            return None
        cached = Answer.from_dict(json.loads(stored))
        q.timings["total_ms"] = _ms(q.started)
        cached = replace(cached, timings=dict(q.timings), cached=True)
        events = [AnswerEvent("evidence", list(cached.citations))]
        events += [AnswerEvent("sentence", s) for s in cached.sentences]
        return iter([*events, AnswerEvent("answer", cached)])

    def _converse(self, q: _Question) -> None:
        """A follow-up becomes standalone; a reference to nothing named earlier stays unresolved."""
        t = time.perf_counter()
        mode = self.store.settings.conversation.rewrite
        q.rewrite = rewrite_question(
            q.asked, q.history, mode=mode, expert=self.expert if mode == "expert" else None,
            max_turns=self.store.settings.conversation.rewrite_turns,
        )  # fmt: skip
        q.text = q.rewrite.text
        q.unresolved = unresolved_reference(q.asked, q.history)
        q.timings["rewrite_ms"] = _ms(t)

    @property
    def _rewrite_config(self) -> dict[str, Any]:
        conversation = self.store.settings.conversation
        return {"version": REWRITE_VERSION, "mode": conversation.rewrite, "turns": conversation.rewrite_turns}

    def _rules_clarification(self, q: _Question) -> tuple[Decision, str]:
        assert q.unresolved is not None
        decision = decide(q.asked, abstained=False, unresolved=q.unresolved, sentences=(), citations=())
        return decision, clarifying_question(q.unresolved)

    def _judge(self, q: _Question, model: AnswerabilityModel) -> tuple[Decision, str] | None:
        """The model's underspecified verdict on the turn (never when a tool answered: it was specific enough)."""
        t = time.perf_counter()
        q.features = turn_features(q.asked, q.history, q.text, q.pool, self.store.embedder)
        q.verdicts["underspecified"] = verdict = model.decide("underspecified", q.features)
        if verdict.yes and not self._open_reference(q):
            # The head was fitted on conversations: on a question asked on its own, evidence that matches flatly
            # (an off-corpus question) looks to it like many candidates. A first question is asked back only when
            # it leans on a pronoun or a demonstrative nothing pins down ("this library", "that mission");
            # otherwise it is taken as meant and goes on to the other heads and the gate.
            q.verdicts["underspecified"] = verdict = replace(verdict, yes=False)
        if not verdict.yes or q.has_tools:
            # Decided now, before the gate and the writer: whether to write at all depends on them (_answerable).
            for head in _BEFORE_WRITING:
                if model.has(head):
                    q.verdicts[head] = model.decide(head, q.features)
            q.timings["answerability_ms"] = _ms(t)
            return None
        q.timings["answerability_ms"] = _ms(t)
        referent, text = clarification(q.asked, q.history, q.unresolved)
        why = f"{referent!r} is not pinned down" if referent else "the turn names nothing specific enough"
        reason = f"answerability model: {why} (p = {verdict.probability:.2f} >= {verdict.threshold:.2f})"
        # What the rules would have said is unknown here unless they too found it underspecified:
        # they would have written an answer first.
        rules = "underspecified" if q.unresolved is not None else None
        return Decision("underspecified", reason, scores=self._scores(q, model, rules)), text

    @staticmethod
    def _open_reference(q: _Question) -> bool:
        """Whether the turn could be asked back about: it follows earlier turns, or it leans on a pronoun or a
        demonstrative that nothing pins down."""
        return bool(q.history) or q.unresolved is not None or demonstrative_referent(q.asked) is not None

    @staticmethod
    def _scores(q: _Question, model: AnswerabilityModel, rules: str | None) -> dict[str, Any]:
        """``trace.answerability.model``: each head's verdict, what the rules would have said, the features."""
        out: dict[str, Any] = {"model": model.name, **{k: v.to_dict() for k, v in q.verdicts.items()}}
        out["rules"] = rules
        if q.features is not None:
            out["features"] = q.features.to_dict()
        return out

    def _clarify(self, q: _Question, use_cache: bool, decision: Decision, text: str) -> Iterator[AnswerEvent]:
        """An underspecified question: one clarifying question, no evidence, nothing guessed."""
        yield AnswerEvent("evidence", [])
        answer = Answer(
            q.asked, text, (), (), False, q.version, q.writer.fingerprint, route="clarify", grounded=False,
            trace=self._conversation_trace(q, decision), rewrite=self._shown_rewrite(q), answerability=decision.label,
        )  # fmt: skip
        if use_cache:
            self.cache.put(q.key, q.version, answer.canonical_json())
        q.timings["total_ms"] = _ms(q.started)
        yield AnswerEvent("answer", replace(answer, timings=dict(q.timings), cached=False))

    @staticmethod
    def _shown_rewrite(q: _Question) -> str | None:
        return q.rewrite.text if q.rewrite is not None and q.rewrite.changed else None

    @staticmethod
    def _conversation_trace(q: _Question, decision: Decision) -> dict[str, Any]:
        trace: dict[str, Any] = {"answerability": decision.trace()}
        if q.rewrite is not None and q.history:
            trace["rewrite"] = q.rewrite.trace()
        return trace

    def _ground(self, q: _Question) -> None:
        t = time.perf_counter()
        q.grounding = self.grounder.ground(q.text, q.view)
        q.timings["ground_ms"] = _ms(t)

    def _retrieve(self, q: _Question) -> None:
        t = time.perf_counter()
        hits = q.view.search(q.text, q.k, trace=q.retrieval)
        q.timings["retrieve_ms"] = _ms(t)
        if "rerank" in q.retrieval and "ms" in q.retrieval["rerank"]:
            q.timings["rerank_ms"] = q.retrieval["rerank"]["ms"]  # part of retrieve_ms
        synced = q.view.synced_at()
        tool_evidence = tool_citations(q.grounding.execution, synced) if q.grounding else []
        first_passage = 1 + len(tool_evidence)
        passages = [Citation.from_hit(i, hit, synced.get(hit.source)) for i, hit in enumerate(hits, first_passage)]
        q.citations = (*tool_evidence, *passages)

    def _gather(self, q: _Question) -> None:
        t = time.perf_counter()
        stored = q.view.sentences([c.chunk_id for c in q.citations if c.provenance is None])
        q.pool = build_pool(q.text, q.citations, self.store.embedder, stored)
        q.timings["evidence_ms"] = _ms(t)

    def _answerable(self, q: _Question) -> bool:
        """Whether to write at all: the gate's decision on the passages (a tool answered: always), unless the
        answerability model found the turn unanswerable (then never) or partial (then always: the gate asks
        whether the passages hold *the* answer, and a partial turn's passages hold only part of it)."""
        if q.pool is None:
            return False
        q.gate_passed = self._gate(q)
        if q.has_tools:
            return True
        if _said(q, "unanswerable"):
            return False
        return q.gate_passed or (_said(q, "partial") and len(q.pool.owners) > 0)

    def _gate(self, q: _Question) -> bool:
        assert q.pool is not None
        gate = self.checks.gate
        if gate is None:
            return q.pool.best_similarity() >= self.settings.min_evidence_similarity
        t = time.perf_counter()
        passages = [c.text for c in q.citations if c.provenance is None]
        q.gate = gate_evidence(gate, q.text, passages, q.pool, self.store.embedder)
        q.timings["gate_ms"] = _ms(t)
        return q.gate.answerable

    def _write(self, q: _Question) -> None:
        assert q.pool is not None
        evidence = select_evidence(q.pool, self.settings.sentences_per_passage)
        messages = (
            tuned_answer_messages(q.text, format_passages(evidence))
            if q.tuned is not None
            else build_messages(q.text, evidence)
        )
        t = time.perf_counter()
        generation = q.writer.generate(messages, max_tokens=self.settings.max_new_tokens)
        q.timings["generate_ms"] = _ms(t)
        q.timings["prefill_s"] = round(generation.prefill_s, 4)
        q.timings["decode_s"] = round(generation.decode_s, 4)
        q.timings["prompt_tokens"] = float(generation.prompt_tokens)
        q.timings["completion_tokens"] = float(generation.completion_tokens)
        q.generation = generation

    def _verify(self, q: _Question) -> None:
        if q.generation is None or q.pool is None:
            return
        gate = self.checks.gate
        # The answer decision let the question through: a writer that declines (a 135M model often does) is
        # overruled by the best answering sentence, quoted (verify_checked with no draft). Else its decline stands.
        decided = gate is not None and gate.decision is not None and not q.has_tools
        if is_abstention(q.generation.text) and not decided:
            return
        t = time.perf_counter()
        declined = is_abstention(q.generation.text)
        q.parsed = [] if declined else parse_sentences(q.generation.text, [c.id for c in q.citations])
        truncated = q.generation.finish_reason == "length"
        if self.checks.checker is not None and not q.has_tools:
            q.sentences, q.findings = verify_checked(
                q.text, q.parsed, q.pool, self.store.embedder, self.settings, self.checks, truncated=truncated
            )
        else:
            # Lexical checks: without a trained checker, or when a tool answered (a tool result is checked by
            # its exact numbers, tool_evidence.exact_numbers). Fragments are never kept here either.
            whole = [(s, ids) for n, (s, ids) in enumerate(q.parsed) if not is_fragment(s, n, len(q.parsed), truncated)]
            q.sentences, q.checks = verify(whole, q.pool, self.store.embedder, self.settings)
        q.timings["verify_ms"] = _ms(t)

    def _quote_partial(self, q: _Question) -> None:
        """A turn the answerability model finds partial, of whose draft nothing survived verification (the small
        writer often strays when the passages hold only part of what is asked): the part the passages hold is
        answered with the evidence sentence closest to the question, quoted and cited, instead of abstaining."""
        if q.sentences or q.pool is None or q.has_tools or not _said(q, "partial") or _said(q, "unanswerable"):
            return
        quote = _closest(q.pool)
        if quote is not None:
            q.sentences = [quote]
            q.quoted_part = True

    def _finish(self, q: _Question, use_cache: bool) -> Answer:
        best = q.pool.best_similarity() if q.pool is not None else 0.0
        self.last_draft = Draft(q.generation, tuple(q.parsed), tuple(q.checks), best, q.pool, q.gate, tuple(q.findings))
        model = q.writer.fingerprint
        route = q.grounding.decision.route if q.grounding else "unstructured"
        missing = missing_terms(q.text, q.pool) if q.sentences and q.pool is not None else ()
        decision = decide(
            q.asked, abstained=not q.sentences, unresolved=None, sentences=q.sentences, citations=q.citations,
        )  # fmt: skip
        judge = self.answerability_model
        if judge is not None and q.features is not None:
            decision, missing = self._partial(q, judge, decision, missing)
        elif missing and decision.label == "answerable":
            # No passage at all mentions a name or number asked about (answering.trust), not only the cited ones.
            decision = Decision("partial", "no evidence passage mentions some of what the question names", missing)
        trace = {
            **(q.grounding.trace() if q.grounding else {}),
            "checks": self._trace_checks(q),
            **self._conversation_trace(q, decision),
            **({"retrieval": q.retrieval} if q.retrieval else {}),
        }
        rewrite = self._shown_rewrite(q)
        if q.sentences:
            lacking = missing or (decision.missing if decision.label == "partial" else ())
            text = cited_text(q.sentences)
            if lacking:
                text += f" The sources do not mention {_listed(lacking)}."
            elif decision.label == "partial":
                text += f" {PARTIAL_NOTE}"
            answer = Answer(
                q.asked, text, tuple(q.sentences), q.citations, False, q.version, model,
                route=route, trace=trace, rewrite=rewrite, answerability=decision.label, missing=lacking,
            )  # fmt: skip
        else:
            closest = _closest(q.pool) if q.pool is not None else None
            answer = Answer(
                q.asked, ABSTAIN_TEXT, (), q.citations, True, q.version, model, closest=closest, route=route,
                trace=trace, rewrite=rewrite, answerability=decision.label,
            )  # fmt: skip
        # An answer from a live call (an API, an OpenAPI operation, an MCP tool) holds as of that
        # call, not as of the index version: replaying it from the cache would serve stale facts.
        live = any(c.provenance and c.provenance.get("fetched_at") for c in q.citations)
        if use_cache and not live:
            self.cache.put(q.key, q.version, answer.canonical_json())
        q.timings["total_ms"] = _ms(q.started)
        return replace(answer, timings=dict(q.timings), cached=False)

    def _partial(
        self, q: _Question, model: AnswerabilityModel, rules: Decision, missing: tuple[str, ...]
    ) -> tuple[Decision, tuple[str, ...]]:
        """The model's partial verdict on a written answer, and what the answer says the sources lack:
        the names and numbers no passage mentions, else the question's words none holds (else nothing
        named: the answer says the sources cover only part of the question)."""
        assert q.features is not None
        ruled: str | None = "partial" if missing and rules.label == "answerable" else rules.label
        if (q.gate_passed is False or q.quoted_part) and not q.has_tools:
            # The rules would have abstained: at the gate (the model wrote past it), or with nothing verified.
            ruled = "unanswerable"
        elif q.gate_passed and _said(q, "unanswerable") and not q.has_tools:
            ruled = None  # the rules would have written: what the writer would have said is unknown here
        ruled = "underspecified" if q.unresolved is not None else ruled
        if not q.sentences:
            scores = self._scores(q, model, ruled)
            refused = q.verdicts.get("unanswerable")
            if refused is not None and refused.yes and not q.has_tools:
                reason = (
                    "answerability model: the passages hold none of what the question asks "
                    f"(p = {refused.probability:.2f} >= {refused.threshold:.2f})"
                )
                return Decision("unanswerable", reason, scores=scores), ()
            return replace(rules, scores=scores), ()
        verdict = q.verdicts.get("partial") or model.decide("partial", q.features)
        q.verdicts["partial"] = verdict
        scores = self._scores(q, model, ruled)
        p = f"p = {verdict.probability:.2f}, threshold {verdict.threshold:.2f}"
        if not verdict.yes:
            return Decision(
                "answerable", f"answerability model: the evidence covers the question ({p})", scores=scores
            ), ()
        lacking = missing or rules.missing or uncovered_terms(q.asked, q.pool)
        reason = f"answerability model: the evidence covers only part of the question ({p})"
        if q.quoted_part:
            reason += "; no drafted sentence was supported, so the closest evidence sentence is quoted"
        return Decision("partial", reason, lacking, scores=scores), lacking

    def _trace_checks(self, q: _Question) -> dict[str, Any]:
        """``trace.checks``: which checks decided, the gate's decision, each drafted sentence's scores."""
        out: dict[str, Any] = self.checks.describe()
        if q.gate is not None:
            out["gate"] = q.gate.to_dict()
        elif q.pool is not None:
            out["best_similarity"] = round(q.pool.best_similarity(), 4)
            out["min_evidence_similarity"] = self.settings.min_evidence_similarity
        if q.findings:
            out["sentences"] = [f.to_dict() for f in q.findings]
        elif q.checks:
            out["sentences"] = [
                {"text": text, "citations": list(ids), "word_support": c.word_support, "similarity": c.similarity,
                 "decision": "kept" if c.supported else "quoted or dropped: unsupported"}
                for (text, ids), c in zip(q.parsed, q.checks, strict=False)
            ]  # fmt: skip
        return out

    def _ungrounded(self, q: _Question) -> Iterator[AnswerEvent]:
        """A conversational turn: a fixed reply that states no fact, without evidence, marked ungrounded."""
        assert q.grounding is not None
        yield AnswerEvent("evidence", [])
        sentence = AnswerSentence(CONVERSATIONAL_REPLY, (), quoted=False, support=0.0)
        yield AnswerEvent("sentence", sentence)
        answer = Answer(
            q.asked, CONVERSATIONAL_REPLY, (sentence,), (), False, q.version, "none",
            route="not_fact_seeking", grounded=False, trace=q.grounding.trace(), rewrite=self._shown_rewrite(q),
        )  # fmt: skip
        q.timings["total_ms"] = _ms(q.started)
        yield AnswerEvent("answer", replace(answer, timings=dict(q.timings), cached=False))

    # -- the grounding layer's experts ------------------------------------------------------------

    @property
    def grounder(self) -> Grounder:
        with self._lock:
            if self._grounder is None:
                self._grounder = Grounder(
                    self.store.path,
                    self.store.embedder,
                    sql_expert=self.sql_expert,
                    tool_expert=self.tool_expert,
                    k=self.settings.k,
                    sql_grammar=self._sql_grammar,
                )
            return self._grounder

    @property
    def sql_expert(self) -> TextGenerator | None:
        """The text-to-SQL expert: ``experts.sql`` when configured; without one, SQL is not planned."""
        if self._sql_expert is None and self.store.settings.experts.sql is not None:
            self._sql_expert = get_expert("sql", self.store.settings)
        return self._sql_expert

    @property
    def _sql_grammar(self) -> bool:
        """Whether SQL is decoded under the linked tables' grammar (it changes the SQL written)."""
        spec = self.store.settings.experts.sql
        return spec is not None and spec.grammar and isinstance(self.sql_expert, GrammarGenerator)

    @property
    def tool_expert(self) -> StructuredGenerator | None:
        """The tool-call expert: ``experts.tool_call`` when configured; without one, the rules plan."""
        if self._tool_expert is None and self.store.settings.experts.tool_call is not None:
            self._tool_expert = get_structured_expert("tool_call", self.store.settings)
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
        if models.get("tool_call") and (gate := self.grounder.tool_gate(self.store.settings.tools.gate)) is not None:
            models["tool_gate"] = gate.fingerprint  # a gate trained while serving changes which tools are called
        return models

    # -- helpers ----------------------------------------------------------------------------------


def _said(q: _Question, head: str) -> bool:
    """Whether the answerability model said yes to ``head`` on this turn (no model, or no such head: no)."""
    verdict = q.verdicts.get(head)
    return verdict is not None and verdict.yes


def _listed(words: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _closest(pool: EvidencePool) -> AnswerSentence | None:
    """The quotable evidence sentence closest to the question (shown beside an abstention), if any."""
    best = best_quote(pool, pool.question_similarity)
    if best is None:
        return None
    return AnswerSentence(pool.sentence(best), (pool.owners[best],), quoted=True, support=1.0)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
