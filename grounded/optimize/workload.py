"""The workload ``grounded optimize`` measures: questions, what a good answer holds, and the split.

Questions come from a JSONL file, one ``{"question": ..., "answer"?: ..., "doc_ids"?: [...],
"answerable"?: true|false}`` per line (``answerable`` defaults to true; ``doc_ids`` are document
ids or keys, e.g. a BEIR ``_id``), or are written from the knowledge base's own passages
(:func:`generate_questions`), or both.

:func:`split_workload` holds back about 30% of the questions (of each kind, answerable and not),
chosen by a hash of the question text: the search never sees them, and the chosen configuration
is judged on them against the configured one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grounded.errors import InvalidRequest
from grounded.experts.base import TextGenerator
from grounded.optimize.questions import candidate_sentences, clean_question, question_messages, stable_hash
from grounded.store import KnowledgeStore
from grounded.text import content_terms

__all__ = [
    "FOREIGN_WORDS",
    "HELD_OUT_SHARE",
    "Question",
    "generate_questions",
    "question_from_dict",
    "read_questions",
    "split_workload",
    "workload_digest",
]

HELD_OUT_SHARE = 0.3
"""Share of the questions (of each kind) held back to judge the chosen configuration."""


@dataclass(frozen=True, slots=True)
class Question:
    """One question of the workload and what a good answer to it holds (when known)."""

    question: str
    answerable: bool = True
    answer: str | None = None
    """A reference answer: the answer-word recall is measured against it."""
    doc_ids: tuple[str, ...] = ()
    """Documents that hold the answer (ids or keys): the answer should cite one."""
    origin: str = "file"

    @property
    def qid(self) -> str:
        """A short id from the content, the same in every run."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"question": self.question, "answerable": self.answerable}
        if self.answer is not None:
            out["answer"] = self.answer
        if self.doc_ids:
            out["doc_ids"] = list(self.doc_ids)
        return out


def read_questions(path: Path) -> list[Question]:
    """The questions of a JSONL file; a bad line is an :class:`InvalidRequest` naming it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read questions from {str(path)!r}: {exc}") from exc
    out: list[Question] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        out.append(question_from_dict(obj, f"{path}:{lineno}"))
    if not out:
        raise InvalidRequest(f"{path} holds no questions; write one JSON object per line with a 'question'")
    return out


def question_from_dict(obj: object, where: str) -> Question:
    """One workload question from its JSON object (``where`` names it in an error)."""
    if not isinstance(obj, dict):
        raise InvalidRequest(f"{where}: expected a JSON object with a 'question'; got {type(obj).__name__}")
    unknown = set(obj) - {"question", "answer", "doc_ids", "answerable", "id"}
    if unknown:
        raise InvalidRequest(
            f"{where}: unknown field(s) {sorted(unknown)}; known: question, answer, doc_ids, answerable, id"
        )
    question, answer, doc_ids = obj.get("question"), obj.get("answer"), obj.get("doc_ids", [])
    answerable = obj.get("answerable", True)
    if not isinstance(question, str) or not question.strip():
        raise InvalidRequest(f"{where}: 'question' must be a non-empty string")
    if answer is not None and not isinstance(answer, str):
        raise InvalidRequest(f"{where}: 'answer' must be a string")
    if not isinstance(doc_ids, list) or not all(isinstance(d, str | int) for d in doc_ids):
        raise InvalidRequest(f"{where}: 'doc_ids' must be a list of document ids or keys")
    if not isinstance(answerable, bool):
        raise InvalidRequest(f"{where}: 'answerable' must be true or false; got {answerable!r}")
    return Question(question.strip(), answerable, answer or None, tuple(str(d) for d in doc_ids))


def workload_digest(questions: Sequence[Question]) -> str:
    """Identifies a workload (the journal of a search belongs to one)."""
    digest = hashlib.sha256()
    for q in questions:
        digest.update(q.qid.encode())
    return digest.hexdigest()[:16]


def split_workload(questions: Sequence[Question]) -> tuple[list[Question], list[Question]]:
    """(questions to search on, questions held back), the same split on every run.

    Within each kind (answerable, unanswerable) the questions are ordered by a hash of their
    text and the first ``HELD_OUT_SHARE`` held back (at least one when the kind has two or more);
    the search order is the hash order, so the small first rungs mix both kinds.
    """
    unique = list({q.qid: q for q in questions}.values())
    tune: list[Question] = []
    held: list[Question] = []
    for kind in (True, False):
        group = sorted((q for q in unique if q.answerable is kind), key=lambda q: stable_hash(q.qid))
        n = math.floor(len(group) * HELD_OUT_SHARE + 0.5) if len(group) > 1 else 0
        held += group[: max(n, 1 if len(group) > 1 else 0)]
        tune += group[max(n, 1 if len(group) > 1 else 0) :]
    tune.sort(key=lambda q: stable_hash("order:" + q.qid))
    held.sort(key=lambda q: stable_hash("order:" + q.qid))
    if len(tune) < 2 or not held:
        raise InvalidRequest(
            f"{len(unique)} distinct questions are too few to search and hold some back; give at least 4"
        )
    return tune, held


@dataclass(slots=True)
class GenerateStats:
    """What became of the passage sentences given to the question writer."""

    sentences: int = 0
    answerable: int = 0
    unanswerable: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


# Real words for things a question may name; one that no passage mentions replaces the question's
# most specific term, so no passage can answer the rewritten question.
FOREIGN_WORDS = (
    "zeppelin", "saxophone", "tarantula", "glacier", "origami", "monsoon", "trombone", "walrus", "sauerkraut",
    "kayak", "chandelier", "platypus", "avalanche", "harpsichord", "flamingo", "tundra", "marzipan", "igloo",
)  # fmt: skip


def generate_questions(
    store: KnowledgeStore,
    writer: TextGenerator,
    n: int,
    *,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Question], GenerateStats]:
    """``n`` answerable questions written from passage sentences, and an unanswerable twin of every
    second one.

    Answerable: the writer writes the question one sentence answers, as ``grounded tune answer``
    makes them (:mod:`grounded.optimize.questions`); it is kept when the sentence's document is
    among the top 10 passages for it (the question is about that passage, not a garbled one). The
    reference answer is the sentence; the gold document, its document.

    Unanswerable: the same question with its most specific word (the rarest in the knowledge
    base among those the sentence holds) replaced by a real word no passage contains, so no
    passage can answer it.
    """
    if n < 1:
        raise InvalidRequest(f"--generate must be at least 1; got {n}")
    say = log or (lambda _message: None)
    stats = GenerateStats()
    vocabulary = _vocabulary(store)
    foreign = [w for w in FOREIGN_WORDS if w not in vocabulary]
    out: list[Question] = []
    for _chunk_id, doc_id, title, sentence in candidate_sentences(store, 4 * n, seed=seed):
        if stats.answerable >= n:
            break
        stats.sentences += 1
        question = clean_question(writer.generate(question_messages(title, sentence), max_tokens=40).text)
        if question is None:
            stats.rejected["no_question"] = stats.rejected.get("no_question", 0) + 1
            continue
        hits = store.search(question, 10)
        if doc_id not in {h.doc_id for h in hits}:
            stats.rejected["not_retrieved"] = stats.rejected.get("not_retrieved", 0) + 1
            continue
        out.append(Question(question, True, sentence, (doc_id,), origin="generated"))
        stats.answerable += 1
        say(f"  {stats.answerable}/{n} questions from {stats.sentences} sentences")
        if stats.answerable % 2 == 0 and foreign:
            twin = _unanswerable_twin(question, sentence, vocabulary, foreign[stats.unanswerable % len(foreign)])
            if twin is not None:
                out.append(Question(twin, False, origin="generated"))
                stats.unanswerable += 1
    return out, stats


def _vocabulary(store: KnowledgeStore) -> dict[str, int]:
    """Lower-case words of every chunk, with the number of chunks holding each."""
    counts: dict[str, int] = {}
    rows = store.snapshot().store.cursor().execute("SELECT text FROM chunks").fetchall()
    for (text,) in rows:
        for word in {w.lower() for w in _words(str(text))}:
            counts[word] = counts.get(word, 0) + 1
    return counts


def _words(text: str) -> Iterable[str]:
    return "".join(c if c.isalnum() else " " for c in text).split()


def _unanswerable_twin(question: str, sentence: str, vocabulary: dict[str, int], foreign: str) -> str | None:
    """``question`` with its rarest word that also occurs in ``sentence`` replaced by ``foreign``."""
    in_sentence = content_terms(sentence)
    words = [w for w in _words(question) if len(w) > 3 and content_terms(w) & in_sentence and not w.isdigit()]
    if not words:
        return None
    rarest = min(words, key=lambda w: (vocabulary.get(w.lower(), 0), w))
    return re.sub(rf"\b{re.escape(rarest)}\b", foreign, question, count=1)
