"""The verifier: keep an answer sentence only when the evidence it cites supports it.

A sentence is supported by its cited passages when

* at least ``min_word_support`` of its content words (stemmed, stop words removed) occur in them,
* every number and every name (capitalised word inside the sentence) in it occurs in them, and
* its embedding is at least ``min_sentence_similarity`` (cosine) to one of their sentences.

An unsupported sentence is replaced by the evidence sentence that best matches both it and the
question, quoted verbatim with its citation, or dropped when that quote is already in the
answer or is not about the question. A sentence without a citation gets the passage that
supports it, if one does.

What is no sentence at all is never kept and never quoted (:func:`is_quotable`): a heading with
its underline, code or grammar, a list's intro line (``... defined with:``). Word overlap cannot
tell them apart from an answer, since every word of a copied heading is in its source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from grounded.answering.evidence import EvidencePool
from grounded.answering.types import AnswerSentence
from grounded.checks import looks_cut_off, looks_like_prose
from grounded.config import AnswerSettings
from grounded.experts.embedding import SentenceEmbedder
from grounded.text import content_terms, key_terms

__all__ = ["SupportCheck", "best_quote", "check_support", "is_quotable", "verify"]


@dataclass(frozen=True, slots=True)
class SupportCheck:
    """The verifier's findings for one sentence against some passages."""

    word_support: float
    missing: tuple[str, ...]
    similarity: float
    supported: bool


def check_support(
    sentence: str, vector: np.ndarray, cited: Sequence[int], pool: EvidencePool, settings: AnswerSettings
) -> SupportCheck:
    """Does the union of passages ``cited`` support ``sentence``? (see the module docstring)"""
    terms = content_terms(sentence)
    evidence_terms: set[str] = set()
    for cid in cited:
        evidence_terms |= pool.terms.get(cid, frozenset())
    share = len(terms & evidence_terms) / len(terms) if terms else 0.0
    missing = tuple(sorted(key_terms(sentence) - evidence_terms))
    rows = [i for i, owner in enumerate(pool.owners) if owner in cited]
    similarity = float((pool.vectors[rows] @ vector).max()) if rows else -1.0
    supported = (
        bool(cited)
        and share >= settings.min_word_support
        and not missing
        and similarity >= settings.min_sentence_similarity
    )
    return SupportCheck(round(share, 4), missing, round(similarity, 4), supported)


def is_quotable(sentence: str) -> bool:
    """Whether an evidence sentence may stand in an answer as a verbatim quote: prose of at least five
    words (no heading, code or grammar, :func:`~grounded.checks.looks_like_prose`), not cut off."""
    return looks_like_prose(sentence, min_words=5) and not looks_cut_off(sentence)


def best_quote(pool: EvidencePool, score: np.ndarray) -> int | None:
    """The index of the quotable evidence sentence (:func:`is_quotable`) with the highest ``score``
    (ties: the earliest); ``None`` when there is none."""
    for i in np.argsort(-score, kind="stable"):
        if is_quotable(pool.sentence(int(i))):
            return int(i)
    return None


def verify(
    generated: Sequence[tuple[str, tuple[int, ...]]],
    pool: EvidencePool,
    embedder: SentenceEmbedder,
    settings: AnswerSettings,
) -> tuple[list[AnswerSentence], list[SupportCheck]]:
    """Verified sentences (kept, re-cited or replaced by quotes) and the check of each input sentence."""
    if not generated or not pool.owners:
        return [], []
    vectors = embedder.embed([text for text, _ in generated])
    kept: list[AnswerSentence] = []
    checks: list[SupportCheck] = []
    seen_text: set[str] = set()
    quoted: set[int] = set()
    all_ids = [c.id for c in pool.citations]
    for (text, ids), vector in zip(generated, vectors, strict=True):
        check = check_support(text, vector, ids, pool, settings)
        if check.supported and not looks_like_prose(text):
            check = replace(check, supported=False)  # a copied heading or code line: every word is in the source
        if not check.supported and not ids and looks_like_prose(text):
            # An uncited sentence keeps its place when a passage supports it (the first that does).
            for cid in all_ids:
                alt = check_support(text, vector, (cid,), pool, settings)
                if alt.supported:
                    check, ids = alt, (cid,)
                    break
        checks.append(check)
        if check.supported:
            key = " ".join(content_terms(text))
            if key not in seen_text:
                seen_text.add(key)
                kept.append(AnswerSentence(text, ids, quoted=False, support=check.word_support))
        else:
            score = pool.vectors @ vector + pool.question_similarity
            best = best_quote(pool, score)
            if best is None or best in quoted or pool.question_similarity[best] < settings.min_evidence_similarity:
                continue
            quoted.add(best)
            quote = pool.sentence(best)
            seen_text.add(" ".join(content_terms(quote)))
            kept.append(AnswerSentence(quote, (pool.owners[best],), quoted=True, support=1.0))
        if len(kept) >= settings.max_sentences:
            break
    return kept, checks
