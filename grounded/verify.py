"""The verifier: keep an answer sentence only when the evidence it cites supports it.

A sentence is supported by its cited passages when

* at least ``min_word_support`` of its content words (stemmed, stop words removed) occur in them,
* every number and every name (capitalised word inside the sentence) in it occurs in them, and
* its embedding is at least ``min_sentence_similarity`` (cosine) to one of their sentences.

An unsupported sentence is replaced by the evidence sentence that best matches both it and the
question, quoted verbatim with its citation, or dropped when that quote is already in the
answer or is not about the question. A sentence without a citation gets the passage that
supports it, if one does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grounded.answer import AnswerSentence, Citation
from grounded.config import AnswerSettings
from grounded.experts.embedding import SentenceEmbedder
from indexes.chunking import sentence_spans

__all__ = ["EvidencePool", "SupportCheck", "build_pool", "check_support", "content_terms", "key_terms", "verify"]

_STOPWORDS_TEXT = """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves one known called
    may might must shall us many much well"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

_TOKEN = re.compile(r"[A-Za-z0-9]+")


def _stem(word: str) -> str:
    w = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def content_terms(text: str) -> set[str]:
    """Stemmed content words and numbers of ``text``."""
    return {_stem(t) for t in _TOKEN.findall(text) if t.lower() not in STOPWORDS}


def key_terms(text: str) -> set[str]:
    """Numbers and names in ``text`` (stemmed): words that must appear in the evidence."""
    tokens = _TOKEN.findall(text)
    keys = {_stem(t) for t in tokens if any(ch.isdigit() for ch in t)}
    keys.update(_stem(t) for t in tokens[1:] if t[0].isupper() and t.lower() not in STOPWORDS)
    return keys


@dataclass(frozen=True, slots=True)
class EvidencePool:
    """Every sentence of the evidence passages, embedded once per question."""

    citations: tuple[Citation, ...]
    owners: tuple[int, ...]
    """Citation id of each sentence."""
    spans: tuple[tuple[int, int], ...]
    """Offsets of each sentence in its citation's text."""
    vectors: np.ndarray
    question_similarity: np.ndarray
    terms: dict[int, frozenset[str]]

    def sentence(self, i: int) -> str:
        citation = self.by_id(self.owners[i])
        a, b = self.spans[i]
        return " ".join(citation.text[a:b].split())

    def by_id(self, cid: int) -> Citation:
        return self.citations[cid - 1]

    def closest(self) -> int | None:
        """Index of the sentence most similar to the question."""
        return int(np.argmax(self.question_similarity)) if len(self.owners) else None

    def best_similarity(self) -> float:
        return float(self.question_similarity.max()) if len(self.owners) else -1.0


def build_pool(question: str, citations: Sequence[Citation], embedder: SentenceEmbedder) -> EvidencePool:
    """Split the passages into sentences and embed them with the question."""
    owners: list[int] = []
    spans: list[tuple[int, int]] = []
    texts: list[str] = []
    for c in citations:
        for a, b in sentence_spans(c.text) or [(0, len(c.text))]:
            if c.text[a:b].strip():
                owners.append(c.id)
                spans.append((a, b))
                # The title gives a sentence its subject ("It is located ..." -> "Mount Logan: It is ...").
                texts.append(f"{c.title}: {c.text[a:b]}" if c.title else c.text[a:b])
    vectors = embedder.embed(texts) if texts else np.zeros((0, 1), np.float32)
    qsim = vectors @ embedder.embed_query(question) if texts else np.zeros(0, np.float32)
    return EvidencePool(
        citations=tuple(citations),
        owners=tuple(owners),
        spans=tuple(spans),
        vectors=vectors,
        question_similarity=np.asarray(qsim, dtype=np.float32),
        terms={c.id: frozenset(content_terms(c.title + " " + c.text)) for c in citations},
    )


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
        if not check.supported and not ids:
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
            best = int(np.argmax(score))
            if best in quoted or pool.question_similarity[best] < settings.min_evidence_similarity:
                continue
            quoted.add(best)
            quote = pool.sentence(best)
            seen_text.add(" ".join(content_terms(quote)))
            kept.append(AnswerSentence(quote, (pool.owners[best],), quoted=True, support=1.0))
        if len(kept) >= settings.max_sentences:
            break
    return kept, checks
