"""Training examples for ``grounded tune answer``, made from the knowledge base's own passages.

For each sampled passage sentence:

1. a text expert writes the question that sentence answers (few-shot, greedy);
2. the question is retrieved for as the engine would (hybrid search, ``answer.k`` passages,
   each cut to its sentences closest to the question), giving the exact prompt served;
3. it is kept only when the sentence's passage is retrieved, the sentence is among those shown,
   it is close enough to the question that the engine would ask the model at all, and the
   verifier accepts the sentence cited as ``[n]``: the target is that sentence (and the next
   one shown, when it is about the question too), quoted with its citation;
4. for each kept question (or every ``unanswerable_every``-th), an unanswerable case: the same
   question with the next passages from other documents only (none of which supports the answer
   sentence), and the target :data:`~grounded.answering.types.ABSTAIN_TEXT`. Cases whose passages are far
   from the question are kept too: with ``answer.min_evidence_similarity`` lowered (or off) the
   model sees them.

Two optional passes over the examples:

* :func:`distill_targets` asks the configured expert itself, with the long prompt the engine
  serves, and where the verifier keeps its whole reply as written (one sentence on the answer's
  passage), that reply, cited as the verifier cites it, becomes the target instead of the quote:
  the model learns to say under a short prompt what it already says under the long one, which
  is a smaller step than learning to quote;
* :func:`with_unanswerable_share` keeps every answerable example and only as many unanswerable
  ones as make a given share: abstaining is the easiest thing to learn (one fixed sentence), and
  a 1:1 mix teaches a small model to abstain on answerable questions.

The examples round-trip through JSONL, so a run can be inspected and repeated on the same data.

Example::

    examples, stats = build_answer_examples(kb, kb.engine.expert, candidates=300)
    stats.kept_answerable, stats.unanswerable
    examples, replaced = distill_targets(kb, examples, kb.engine.expert)
    examples = with_unanswerable_share(examples, 0.25)
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded.answering.evidence import build_pool, select_evidence
from grounded.answering.types import Citation, cited_text
from grounded.answering.verify import check_support, verify
from grounded.answering.writer import ABSTAIN_TEXT, format_passages, is_abstention, parse_sentences, passage_messages
from grounded.errors import InvalidRequest
from grounded.experts.base import TextGenerator
from grounded.optimize.questions import candidate_sentences, clean_question, question_messages, stable_hash
from grounded.tune.data import jsonl_objects

if TYPE_CHECKING:
    from grounded.kb import KnowledgeBase

__all__ = [
    "AnswerExample",
    "BuildStats",
    "build_answer_examples",
    "distill_targets",
    "examples_digest",
    "read_answer_examples",
    "reply_target",
    "with_unanswerable_share",
    "write_answer_examples",
]

_ORIGINS = ("passage", "expert", "abstain")


@dataclass(frozen=True, slots=True)
class AnswerExample:
    """A question, the passages the writer is shown, and the reply to learn.

    ``gold`` is the passage the target cites (``None``: unanswerable, the target abstains);
    ``sources`` are ``(id, title, full passage text)`` for verifying a dev reply; ``origin`` is
    where the target comes from: ``"passage"`` (quoted sentences), ``"expert"`` (the expert's
    own verified reply, see :func:`distill_targets`) or ``"abstain"``.
    """

    question: str
    passages: str
    target: str
    gold: int | None
    sources: tuple[tuple[int, str, str], ...]
    origin: str = "passage"

    @property
    def answerable(self) -> bool:
        return self.gold is not None

    def citations(self) -> tuple[Citation, ...]:
        """The sources as citations (only what the verifier reads is filled in)."""
        return tuple(
            Citation(i, 0, "", title, "", 0, len(text), text, "", None, 0.0) for i, title, text in self.sources
        )


@dataclass(slots=True)
class BuildStats:
    """What happened to the candidate sentences (the survival rate is ``kept_answerable / candidates``)."""

    candidates: int = 0
    no_question: int = 0
    not_retrieved: int = 0
    not_shown: int = 0
    too_far: int = 0
    not_verified: int = 0
    kept_answerable: int = 0
    unanswerable: int = 0
    unanswerable_dropped: int = 0
    seconds: float = 0.0
    rejected: dict[str, str] = field(default_factory=dict)
    """One example question per reason, for the log."""

    def as_card(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("rejected")
        out["survival"] = round(self.kept_answerable / self.candidates, 4) if self.candidates else 0.0
        return out


def build_answer_examples(
    kb: KnowledgeBase,
    writer: TextGenerator,
    *,
    candidates: int = 300,
    unanswerable_every: int = 1,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[list[AnswerExample], BuildStats]:
    """Examples from ``candidates`` passage sentences (see the module docstring); every
    ``unanswerable_every``-th kept question also yields an unanswerable case."""
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    if candidates < 1:
        raise InvalidRequest(f"candidates (sentences to write questions for) must be at least 1; got {candidates}")
    settings = kb.settings.answer
    snapshot = kb.snapshot()
    stats = BuildStats()
    out: list[AnswerExample] = []
    started = time.perf_counter()

    def reject(reason: str, question: str) -> None:
        setattr(stats, reason, getattr(stats, reason) + 1)
        stats.rejected.setdefault(reason, question)

    def prompt_for(question: str, hits: Sequence[Any]) -> tuple[Any, Any]:
        synced = kb.store.synced_at(snapshot)
        citations = [Citation.from_hit(i, hit, synced.get(hit.source)) for i, hit in enumerate(hits, start=1)]
        pool = build_pool(question, citations, kb.embedder)
        return pool, select_evidence(pool, settings.sentences_per_passage)

    for chunk_id, doc_id, title, sentence in candidate_sentences(kb, candidates, seed=seed):
        if stats.candidates and stats.candidates % 25 == 0:
            rate = (time.perf_counter() - started) / stats.candidates
            say(f"  {stats.candidates}/{candidates} sentences, {len(out)} examples, {rate:.1f} s each")
        stats.candidates += 1
        question = clean_question(writer.generate(question_messages(title, sentence), max_tokens=40).text)
        if question is None:
            reject("no_question", sentence)
            continue
        hits = list(kb.search(question, k=settings.k + 5, snapshot=snapshot))
        if not any(h.chunk_id == chunk_id for h in hits[: settings.k]):
            reject("not_retrieved", question)
            continue
        pool, evidence = prompt_for(question, hits[: settings.k])
        gold = next(e for e in evidence if e.citation.chunk_id == chunk_id)
        shown = [" ".join(gold.citation.text[a:b].split()) for a, b in gold.sentences]
        if sentence not in shown:
            reject("not_shown", question)
            continue
        rows = {pool.sentence(i): i for i, owner in enumerate(pool.owners) if owner == gold.citation.id}
        if float(pool.question_similarity[rows[sentence]]) < settings.min_evidence_similarity:
            reject("too_far", question)
            continue
        # The sentence after it joins the answer when the question is about it too.
        picked = [sentence]
        at = shown.index(sentence)
        after = shown[at + 1] if at + 1 < len(shown) else ""
        close = after in rows and float(pool.question_similarity[rows[after]]) >= settings.min_evidence_similarity
        if close and len(after) <= 400:
            picked.append(after)
        cid = gold.citation.id
        kept, _ = verify([(s, (cid,)) for s in picked], pool, kb.embedder, settings)
        if not kept or any(s.quoted for s in kept):
            reject("not_verified", question)
            continue
        target = " ".join(f"{s.text} [{cid}]" for s in kept)
        sources = tuple((c.id, c.title, c.text) for c in pool.citations)
        out.append(AnswerExample(question, format_passages(evidence), target, cid, sources))
        stats.kept_answerable += 1
        if stats.kept_answerable % unanswerable_every:
            continue
        others = [h for h in hits if h.doc_id != doc_id][: settings.k]
        if len(others) < settings.k:
            stats.unanswerable_dropped += 1
            continue
        neg_pool, neg_evidence = prompt_for(question, others)
        vector = kb.embedder.embed([sentence])[0]
        supported = check_support(sentence, vector, [c.id for c in neg_pool.citations], neg_pool, settings).supported
        if supported:  # another document holds the answer too
            stats.unanswerable_dropped += 1
            continue
        neg_sources = tuple((c.id, c.title, c.text) for c in neg_pool.citations)
        out.append(AnswerExample(question, format_passages(neg_evidence), ABSTAIN_TEXT, None, neg_sources, "abstain"))
        stats.unanswerable += 1
    stats.seconds = round(time.perf_counter() - started, 1)
    return out, stats


def distill_targets(
    kb: KnowledgeBase,
    examples: Sequence[AnswerExample],
    writer: TextGenerator,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[list[AnswerExample], int]:
    """The examples, each answerable one's target replaced by ``writer``'s reply to the long prompt
    where the verifier keeps that reply whole (see the module docstring); and how many were replaced.

    Greedy decoding, so the same examples and writer give the same targets.
    """
    say = log or (lambda message: print(message, file=sys.stderr, flush=True))
    settings = kb.settings.answer
    out: list[AnswerExample] = []
    replaced = 0
    answerable = sum(ex.answerable for ex in examples)
    started = time.perf_counter()
    done = 0
    for ex in examples:
        if not ex.answerable or ex.origin == "expert":
            replaced += ex.origin == "expert"
            out.append(ex)
            continue
        if done and done % 25 == 0:
            rate = (time.perf_counter() - started) / done
            say(f"  {done}/{answerable} replies, {replaced} kept, {rate:.1f} s each")
        done += 1
        reply = writer.generate(passage_messages(ex.question, ex.passages), max_tokens=settings.max_new_tokens).text
        target = reply_target(kb, ex, reply) if not is_abstention(reply) else None
        if target is None:
            out.append(ex)
            continue
        out.append(AnswerExample(ex.question, ex.passages, target, ex.gold, ex.sources, "expert"))
        replaced += 1
    return out, replaced


def reply_target(kb: KnowledgeBase, ex: AnswerExample, reply: str) -> str | None:
    """``reply`` in the target's form (``sentence [n]`` ...) when the verifier keeps every sentence
    of it as written, one of them on the answer's passage; else ``None``.

    The citations are the verifier's: a small model often leaves them out under the long prompt
    (the engine then cites the passage that supports the sentence), and the target is to learn
    them.
    """
    parsed = parse_sentences(reply, [i for i, _, _ in ex.sources])
    if not parsed:
        return None
    pool = build_pool(ex.question, ex.citations(), kb.embedder)
    kept, _ = verify(parsed, pool, kb.embedder, kb.settings.answer)
    whole = len(kept) == len(parsed) and all(
        not s.quoted and s.text == text for s, (text, _) in zip(kept, parsed, strict=True)
    )
    if not whole or not any(ex.gold in s.citations for s in kept):
        return None
    return cited_text(kept)


def with_unanswerable_share(examples: Sequence[AnswerExample], share: float) -> list[AnswerExample]:
    """Every answerable example and at most ``share`` of the result unanswerable, in their order.

    The unanswerable cases kept are picked by a hash of their question (the same on every run).
    """
    if not 0.0 <= share < 1.0:
        raise InvalidRequest(f"the unanswerable share must be at least 0 and below 1; got {share}")
    answerable = sum(ex.answerable for ex in examples)
    room = int(share * answerable / (1.0 - share))
    negatives = [ex for ex in examples if not ex.answerable]
    if len(negatives) <= room:
        return list(examples)
    # Salted: the dev split orders questions by their plain hash, and the dev set should get its
    # share of unanswerable cases, not all of the first ones.
    keep = {id(ex) for ex in sorted(negatives, key=lambda ex: stable_hash(f"unanswerable:{ex.question}"))[:room]}
    return [ex for ex in examples if ex.answerable or id(ex) in keep]


def examples_digest(examples: Sequence[AnswerExample]) -> str:
    """sha256 of the examples in order (the model card's data hash)."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(_line(ex).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _line(ex: AnswerExample) -> str:
    return json.dumps(asdict(ex), ensure_ascii=False, sort_keys=True)


def write_answer_examples(path: Path, examples: Sequence[AnswerExample]) -> None:
    """Write ``examples`` as JSONL (one object per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(_line(ex) + "\n" for ex in examples), encoding="utf-8")


def read_answer_examples(path: Path) -> list[AnswerExample]:
    """Examples written by :func:`write_answer_examples`; raises :class:`InvalidRequest` naming a bad line."""
    out: list[AnswerExample] = []
    for number, item in jsonl_objects(path, "write one with grounded tune answer --write-examples"):
        try:
            gold = item["gold"]
            example = AnswerExample(
                question=str(item["question"]),
                passages=str(item["passages"]),
                target=str(item["target"]),
                gold=None if gold is None else int(gold),
                sources=tuple((int(i), str(t), str(x)) for i, t, x in item["sources"]),
                origin=str(item.get("origin", "passage" if gold is not None else "abstain")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(
                f"{path}:{number}: expected an object with question, passages, target, gold and sources ({exc!r})"
            ) from exc
        if example.origin not in _ORIGINS:
            raise InvalidRequest(
                f"{path}:{number}: 'origin' must be one of {', '.join(_ORIGINS)}; got {example.origin!r}"
            )
        if not example.question.strip() or not example.target.strip():
            raise InvalidRequest(f"{path}:{number}: 'question' and 'target' must be non-empty strings")
        out.append(example)
    if not out:
        raise InvalidRequest(f"examples file {str(path)!r} holds no examples")
    return out
