"""Training and evaluation pairs for the checks, built from passages, ClapNQ and MT-RAG.

A :class:`Pair` is what the cross-encoder reads: ``text`` (a claim for the ``support`` task, a
question for the ``answerable`` task) against ``evidence`` (the window of the passages that
aligns with it, :func:`~grounded.checks.text.evidence_window`), a 0/1 label, the rule that made
it (``kind``) and a ``group`` (passage, question or conversation) that decides its split, so a
passage's pairs are all in train or all in dev, never both.

Sources (none is copied anywhere; every builder reads a folder of the same layout):

* passages of any knowledge base (:func:`synthetic_pairs`): each sentence's rewrites from
  :mod:`grounded.checks.perturb`, plus a true sentence of a *different* passage on the same
  topic (unsupported), plus pseudo-questions for the gate;
* ClapNQ dev (:mod:`grounded.checks.sources`): human answers and selected sentences
  (supported), their rewrites (unsupported), answerable and unanswerable questions (gate);
* MT-RAG reference tasks: reference answers (supported), their rewrites, answerability labels.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from grounded.checks import perturb
from grounded.checks.text import STOPWORDS, content_words, evidence_window, passage_windows, split_sentences

__all__ = [
    "GateCase",
    "Pair",
    "Passage",
    "Split",
    "Task",
    "balance",
    "claim_pairs",
    "far_passage",
    "gate_pairs",
    "neighbours",
    "pseudo_question",
    "split_of",
    "synthetic_gate_cases",
    "synthetic_pairs",
]

Task = Literal["support", "answerable"]


@dataclass(frozen=True, slots=True)
class Passage:
    """A passage of a knowledge base: ``pid`` unique, ``title`` may be empty."""

    pid: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled input of the cross-encoder (see the module docstring)."""

    task: Task
    text: str
    evidence: str
    label: int
    kind: str
    group: str
    source: str


Split = Literal["train", "dev", "test"]


def split_of(group: str, dev_share: float = 0.15, test_share: float = 0.15, *, salt: str = "checks") -> Split:
    """A group's split, by a hash of ``salt:group``: ``"test"`` for a stable ``test_share`` of
    groups (never trained on, never used to choose anything: the figures to report),
    ``"dev"`` for the next ``dev_share`` (thresholds are chosen there), else ``"train"``."""
    h = int(hashlib.sha256(f"{salt}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < test_share:
        return "test"
    return "dev" if h < test_share + dev_share else "train"


def rng_for(*parts: object) -> random.Random:
    """A generator seeded by a hash of ``parts``: the same pairs on every run and machine."""
    return random.Random(int(hashlib.sha256(repr(parts).encode()).hexdigest()[:16], 16))


def neighbours(passages: Sequence[Passage], *, rare_terms: int = 12) -> list[int]:
    """For each passage, the index of the other passage sharing most of its rarer words (-1: none)."""
    terms = [content_words(p.title + " " + p.text) for p in passages]
    df = Counter(t for ts in terms for t in ts)
    postings: dict[str, list[int]] = {}
    for i, ts in enumerate(terms):
        for t in ts:
            if 1 < df[t] <= max(2, len(passages) // 20):
                postings.setdefault(t, []).append(i)
    out = []
    for i, ts in enumerate(terms):
        rare = sorted((t for t in ts if t in postings), key=lambda t: (df[t], t))[:rare_terms]
        votes: Counter[int] = Counter(j for t in rare for j in postings[t] if j != i)
        out.append(min(votes, key=lambda j: (-votes[j], j)) if votes else -1)
    return out


def _claimable(sentences: Sequence[str]) -> list[str]:
    return [s for s in sentences if 6 <= len(s.split()) <= 60 and not s.endswith((":", "?"))]


def claim_pairs(
    claim: str,
    evidence: Sequence[str],
    *,
    rng: random.Random,
    group: str,
    source: str,
    foreign: Sequence[str] = (),
    names: Sequence[str] = (),
    negatives: int = 2,
    positive_rewrites: int = 1,
) -> list[Pair]:
    """A supported ``claim`` of ``evidence``: the claim itself, ``positive_rewrites`` supported
    rewrites, and up to ``negatives`` unsupported ones (rules drawn at random among those that
    apply; ``foreign`` sentences, true elsewhere, feed the joined-clause and other-passage rules,
    ``names`` the entity swap)."""

    def pair(text: str, label: int, kind: str) -> Pair:
        return Pair("support", text, evidence_window(text, evidence), label, kind, group, source)

    pairs = [pair(claim, 1, "original")]
    rewrites = list(perturb.SUPPORTED_REWRITES.items())
    rng.shuffle(rewrites)
    for kind, rewrite in rewrites:
        if len(pairs) > positive_rewrites:
            break
        if (text := rewrite(claim, rng)) and text != claim:
            pairs.append(pair(text, 1, kind))
    candidates: list[tuple[str, str]] = []
    for kind, rule in perturb.UNSUPPORTED_REWRITES.items():
        if (text := rule(claim, rng)) and text != claim:
            candidates.append((kind, text))
    if text := perturb.swap_entity(claim, rng, names):
        candidates.append(("entity", text))
    joined = " ".join(evidence)
    outside = [s for s in foreign if s not in joined]
    if outside:
        other = rng.choice(outside)
        if text := perturb.join_clause(claim, other, rng):
            candidates.append(("joined", text))
        candidates.append(("other_passage", other))
    rng.shuffle(candidates)
    # Prefer distinct rules; "truncated" is kept rarer than the rules that change meaning.
    candidates.sort(key=lambda kt: kt[0] == "truncated" and rng.random() < 0.5)
    for kind, text in candidates[:negatives]:
        pairs.append(pair(text, 0, kind))
    return pairs


_WH_NUMBER = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b|\b\d[\d,.]*\b")


def pseudo_question(sentence: str, rng: random.Random) -> tuple[str, str] | None:
    """``(question, answer)`` from a sentence by blanking a year, number or name (crude, but
    it asks for something the sentence holds); ``None`` when nothing can be blanked."""
    spans: list[tuple[str, str]] = []
    for m in _WH_NUMBER.finditer(sentence):
        spans.append(("when" if m.group(1) else "how many", m.group()))
    spans += [("what", e) for e in perturb.entities(sentence) if len(e.split()) <= 4]
    if not spans:
        return None
    wh, answer = rng.choice(spans)
    body = " ".join(sentence.rstrip(" .").replace(answer, " ", 1).split())
    body = re.sub(r"\(\s*\)|\s+([,;:)])", r"\1", body).strip(" ,;:")
    if len(body.split()) < 4:
        return None
    first = body.split()[0]
    if first.lower() in STOPWORDS:
        body = body[:1].lower() + body[1:]
    return f"{wh} {body}?", answer


def synthetic_pairs(
    passages: Sequence[Passage],
    *,
    source: str,
    claims_per_passage: int = 1,
    negatives: int = 2,
    questions: bool = True,
    seed: int = 0,
) -> Iterator[Pair]:
    """Support pairs (FactCC rules) and, with ``questions``, gate pairs from ``passages`` alone.

    Gate pairs: a pseudo-question of one sentence is answerable from its passage, and not from
    the same passage with that sentence (and every other holding the answer) removed, nor from
    the nearest other passage when that one lacks the answer, nor from a passage far away in the
    corpus (off topic, as a question outside the knowledge base meets its retrieved passages).
    """
    near = neighbours(passages)
    for i, p in enumerate(passages):
        rng = rng_for(seed, source, p.pid)
        sentences = split_sentences(p.text)
        claims = _claimable(sentences)
        if not claims:
            continue
        other = passages[near[i]] if near[i] >= 0 else passages[(i + 1) % len(passages)]
        foreign = _claimable(split_sentences(other.text))
        names = perturb.entities(p.text) + perturb.entities(other.text)
        for claim in rng.sample(claims, min(claims_per_passage, len(claims))):
            yield from claim_pairs(
                claim, [p.text], rng=rng, group=p.pid, source=source, foreign=foreign, names=names, negatives=negatives
            )
        if not questions:
            continue
        made = pseudo_case(p, other, claims, rng)
        if made is None:
            continue
        question, sentence, answer = made
        yield from gate_pairs(
            question, [p.text], 1, group=p.pid, source=source, kind="pseudo_question", hint=[sentence]
        )
        rest = [s for s in sentences if answer not in s]
        if 2 <= len(rest) < len(sentences):
            window = evidence_window(question, [" ".join(rest)])
            yield Pair("answerable", question, window, 0, "answer_removed", p.pid, source)
        if answer not in other.text:
            window = evidence_window(question, [other.text])
            yield Pair("answerable", question, window, 0, "neighbour_passage", p.pid, source)
        far = passages[far_passage(i, len(passages))]
        if answer not in far.text:
            yield Pair("answerable", question, evidence_window(question, [far.text]), 0, "off_topic", p.pid, source)


def far_passage(i: int, count: int) -> int:
    """The passage an off-topic question is asked of: half the corpus away from passage ``i``
    (a question the knowledge base was never meant to answer, whose retrieved passages are beside it)."""
    return (i + max(1, count // 2)) % count


def pseudo_case(
    passage: Passage, other: Passage, claims: Sequence[str], rng: random.Random
) -> tuple[str, str, str] | None:
    """``(question, sentence, answer)``: a pseudo-question about one of ``claims``, or ``None``."""
    sentence = rng.choice(claims)
    made = pseudo_question(sentence, rng)
    return None if made is None else (made[0], sentence, made[1])


def synthetic_gate_cases(passages: Sequence[Passage], *, source: str, seed: int = 0) -> Iterator[GateCase]:
    """Question-level gate cases from passages alone: a pseudo-question is answerable from its
    passage (1) and not from the nearest other passage when that lacks the answer, nor from a far
    one (off topic) (0)."""
    near = neighbours(passages)
    for i, p in enumerate(passages):
        rng = rng_for(seed, source, "case", p.pid)
        claims = _claimable(split_sentences(p.text))
        other = passages[near[i]] if near[i] >= 0 else passages[(i + 1) % len(passages)]
        made = pseudo_case(p, other, claims, rng) if claims else None
        if made is None:
            continue
        question, _, answer = made
        yield GateCase(question, (p.text,), 1, "pseudo_question", p.pid)
        if answer not in other.text:
            yield GateCase(question, (other.text,), 0, "neighbour_passage", p.pid)
        far = passages[far_passage(i, len(passages))]
        if answer not in far.text:
            yield GateCase(question, (far.text,), 0, "off_topic", p.pid)


@dataclass(frozen=True, slots=True)
class GateCase:
    """A question with its top passages and whether they answer it (the gate's evaluation unit)."""

    question: str
    passages: tuple[str, ...]
    answerable: int
    kind: str
    group: str


def gate_pairs(
    question: str,
    passages: Sequence[str],
    label: int,
    *,
    group: str,
    source: str,
    kind: str,
    hint: Sequence[str] = (),
    positive: str | None = None,
    rng: random.Random | None = None,
) -> list[Pair]:
    """Gate pairs of one question against the windows of its passages (:func:`passage_windows`).

    Answerable with a ``hint`` (sentences that hold the answer): windows holding a hint are
    positives, and the non-holding window most like the question a negative (``answer_removed``).
    Answerable with a ``positive`` window (e.g. where a reference answer rests): that window alone.
    Answerable without either: the window best aligned with the question is a positive.
    Unanswerable: the best-aligned window, and one other, are negatives.
    """
    windows = passage_windows(passages)
    if not windows:
        return []
    best = evidence_window(question, list(passages))

    def pair(window: str, y: int, k: str) -> Pair:
        return Pair("answerable", question, window, y, k, group, source)

    if label and positive:
        return [pair(positive, 1, kind)]
    if label and hint:
        keys = [h[:60] for h in hint if h]
        holding = [w for w in windows if any(k in w for k in keys)]
        others = [w for w in windows if w not in holding]
        out = [pair(w, 1, kind) for w in holding[:2]]
        if others:
            wanted = content_words(question)
            out.append(pair(max(others, key=lambda w: len(content_words(w) & wanted)), 0, "answer_removed"))
        return out if holding else [pair(best, 1, kind)]
    if label:
        return [pair(best, 1, kind)]
    out = [pair(best, 0, kind)]
    rest = [w for w in windows if w != best]
    if rest and rng is not None:
        out.append(pair(rng.choice(rest), 0, kind))
    return out


def balance(pairs: Iterable[Pair]) -> dict[str, int]:
    """Counts by ``task/label/kind`` (for logs and the model card)."""
    return dict(sorted(Counter(f"{p.task}/{p.label}/{p.kind}" for p in pairs).items()))
