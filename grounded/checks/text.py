"""Text helpers shared by the checks: words, sentences, and the evidence window a pair is scored on.

A cross-encoder reads at most ``max_tokens`` tokens, and reading them costs time linear in
their number (quadratic in attention), so a claim is never scored against a whole passage: it
is scored against the few evidence sentences that share most of its words, kept in their
original order, with their neighbours when room is left (so "It" keeps its subject). The
choice is lexical, cheap and deterministic (ties break by position).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from indexes.chunking import sentence_spans

__all__ = [
    "STOPWORDS",
    "content_words",
    "detokenize",
    "evidence_window",
    "passage_windows",
    "split_sentences",
    "words",
]

_STOPWORDS_TEXT = """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves may might must
    shall us many much well"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)?")


def words(text: str) -> list[str]:
    """Word tokens of ``text`` (letters and digits), as written."""
    return _WORD.findall(text)


def _stem(word: str) -> str:
    w = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def content_words(text: str) -> set[str]:
    """Stemmed, lower-cased words of ``text`` that are not stop words."""
    return {_stem(w) for w in words(text) if w.lower() not in STOPWORDS}


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, whitespace collapsed, empty ones dropped."""
    found = [" ".join(text[a:b].split()) for a, b in sentence_spans(text)]
    return [s for s in found if s]


_DETOK = (
    (re.compile(r" ([.,;:!?%)\]}])"), r"\1"),
    (re.compile(r"([(\[{$]) "), r"\1"),
    (re.compile(r" ('s|'re|'ve|'ll|'d|n't)\b"), r"\1"),
    (re.compile(r"`` ?| ?''"), '"'),
    (re.compile(r" -- "), " - "),
    (re.compile(r"\s+"), " "),
)


def detokenize(text: str) -> str:
    """Undo Penn-Treebank style spacing (``word , word ( x )``) as in Natural Questions' text."""
    for pattern, repl in _DETOK:
        text = pattern.sub(repl, text)
    return text.strip()


def evidence_window(claim: str, passages: Sequence[str], *, max_words: int = 75, max_picks: int = 3) -> str:
    """The evidence ``claim`` is scored against: its best-aligned sentences of ``passages``.

    Greedily picks up to ``max_picks`` sentences, each covering most of the claim's words not
    yet covered (ties: earliest), then adds the sentences next to the picked ones while the
    window stays within ``max_words`` words; returns them in passage order, passages joined
    by `` … ``. A claim sharing no word with the evidence gets the passages' opening.

    >>> evidence_window("Paris is in France.", ["Rome is in Italy. Paris is the capital of France."])
    'Rome is in Italy. Paris is the capital of France.'
    """
    sentences: list[tuple[int, int, str]] = []  # (passage, position, sentence)
    for p, passage in enumerate(passages):
        for i, sentence in enumerate(split_sentences(passage)):
            sentences.append((p, i, sentence))
    if not sentences:
        return ""
    terms = [content_words(s) for _, _, s in sentences]
    lengths = [len(s.split()) for _, _, s in sentences]
    wanted = content_words(claim)
    chosen: set[int] = set()
    budget = max_words
    uncovered = set(wanted)
    for _ in range(max_picks):
        gains = [(len(terms[k] & uncovered), -k) for k in range(len(sentences)) if k not in chosen]
        if not gains:
            break
        gain, neg_k = max(gains)
        k = -neg_k
        if gain == 0 or (chosen and lengths[k] > budget):
            break
        chosen.add(k)
        budget -= lengths[k]
        uncovered -= terms[k]
    if not chosen:
        chosen.add(0)
        budget -= lengths[0]
    # Neighbours (previous first: it usually holds the subject), nearest to the picks first.
    for distance in (1, 2):
        for k in sorted(chosen):
            for n in (k - distance, k + distance):
                same_passage = 0 <= n < len(sentences) and sentences[n][0] == sentences[k][0]
                if same_passage and n not in chosen and lengths[n] <= budget:
                    chosen.add(n)
                    budget -= lengths[n]
    parts: list[str] = []
    last: tuple[int, int] | None = None
    for k in sorted(chosen):
        p, i, sentence = sentences[k]
        if last is not None and (p != last[0] or i != last[1] + 1):
            parts.append("…")
        parts.append(sentence)
        last = (p, i)
    return " ".join(parts)


def passage_windows(passages: Sequence[str], *, max_words: int = 75, max_windows: int = 12) -> list[str]:
    """Consecutive runs of whole sentences of each passage, each at most about ``max_words`` words
    (a longer sentence is a window of its own), at most ``max_windows`` in all, in order.

    The gate reads every window of the top passages and keeps the best, so an answer far from
    the question's words is still read.

    >>> passage_windows(["One two three. Four five six. Seven."], max_words=6)
    ['One two three. Four five six.', 'Seven.']
    """
    out: list[str] = []
    for passage in passages:
        current: list[str] = []
        size = 0
        for sentence in split_sentences(passage):
            n = len(sentence.split())
            if current and size + n > max_words:
                out.append(" ".join(current))
                current, size = [], 0
            current.append(sentence)
            size += n
        if current:
            out.append(" ".join(current))
    return out[:max_windows]
