"""What the trained answerability model reads about one conversation turn (:class:`TurnFeatures`).

Three kinds of signal, each a plain number, computed from what the engine already has after
retrieval (no extra model runs besides two cached query embeddings):

* **the turn**: how far into the conversation it is, whether it was rewritten, whether it leans
  on a pronoun, a demonstrative ("this library") or a definite noun no earlier turn names ("the
  park"), whether it names something (a capitalised name, a number), how many of its words are
  new to the conversation, and how close it is in meaning to the previous user turn;
* **the question's shape**: how many parts it asks for ("and", "or", several questions), whether
  it asks for a quantity or a date (a fact a passage may hold or lack exactly), whether it asks
  yes or no ("Is there a plan for small businesses?": a passage on the topic rarely settles it)
  and whether it asks for a recommendation or a judgement ("which one do you recommend?"), which
  reference passages hold only in part or not at all;
* **the evidence**: the similarity of the best evidence sentences to the (rewritten) question,
  whether several passages match about equally well (many parks, many courts: which one?), how
  many of the question's words, names and numbers the passages hold, and whether a question
  asking "how much" or "when" finds any number in the passages that match it best.

The features are general on purpose: none reads a data set's vocabulary, so a model fitted on one
half of a public set is judged fairly on the other (docs/conversations.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from grounded.answering.conversation import NOT_REFERENTS, Turn, needs_rewrite, unresolved_reference
from grounded.answering.evidence import EvidencePool
from grounded.answering.types import Citation
from grounded.experts.embedding import SentenceEmbedder
from grounded.text import STOPWORDS, content_terms, key_terms

__all__ = ["TurnFeatures", "definite_referent", "demonstrative_referent", "turn_features", "uncovered_terms"]

_DEMONSTRATIVE = re.compile(r"\b(this|that|these|those)\s+(?:particular\s+|specific\s+|same\s+)?([a-z][a-z-]+)", re.I)
_DEFINITE = re.compile(r"\bthe\s+([a-z][a-z-]+)(?:\s+([a-z][a-z-]+))?", re.I)
_PARTS = re.compile(r"\b(and|or|as well as|also|both)\b|[,;?]", re.I)
_QUANTITY = re.compile(
    r"\b(how (?:much|many|long|often|old|far)|what (?:percentage|percent|number|amount|rate|date|year|time)|"
    r"when|cost|costs|fee|fees|price|number|rate|deadline|limit)\b",
    re.I,
)
# A sentence that opens with an auxiliary verb asks yes or no (an interjection or a "so," may come first).
_YES_NO = re.compile(
    r"(?:^|[.?!]\s+)(?:\w+,\s+)?(is|are|was|were|can|could|does|do|did|will|would|should|shall|has|have|may|might|"
    r"isn't|aren't|doesn't|don't|can't|won't)\b",
    re.I,
)
_OPINION = re.compile(
    r"\b(recommend\w*|best|better|worse|should I|do you think|opinion|worth|prefer\w*|advi[cs]e|suggest\w*)\b", re.I
)
# Words after "the"/"this" that name no thing one could ask "which one?" about: the time words the
# rewriter already ignores, and words of order or position.
_NOT_THINGS = NOT_REFERENTS | {
    "same",
    "best",
    "most",
    "first",
    "last",
    "next",
    "other",
    "following",
    "above",
    "below",
    "whole",
    "end",
}
_VERBISH = re.compile(r"(ing|ed|ly)$")
# A second word that is an adjective ("the opportunities available") is not part of the noun.
_ADJECTIVE = re.compile(r"(able|ible|al|ous|ive|ful|less|ic)$")


@dataclass(frozen=True, slots=True)
class TurnFeatures:
    """One turn's signals (see the module docstring); every field is a float or a flag."""

    user_turns: float = 0.0
    rewritten: float = 0.0
    pronoun: float = 0.0
    demonstrative: float = 0.0
    unresolved: float = 0.0
    definite_unnamed: float = 0.0
    names: float = 0.0
    content_words: float = 0.0
    new_words: float = 0.0
    history_similarity: float = 0.0
    parts: float = 0.0
    quantity: float = 0.0
    best_sentence: float = -1.0
    top3_sentences: float = -1.0
    passage_agreement: float = 0.0
    covered: float = 0.0
    covered_top: float = 0.0
    missing_keys: float = 0.0
    quantity_unmet: float = 0.0
    """It asks for a quantity or a date and none of the three best-matching passages holds a number."""
    yes_no: float = 0.0
    """A sentence of it opens with an auxiliary verb: it asks yes or no."""
    opinion: float = 0.0
    """It asks for a recommendation or a judgement ("best", "recommend", "do you think", "worth")."""

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def demonstrative_referent(question: str) -> str | None:
    """The noun after "this"/"that" ("this particular index fund" -> "index"), named earlier or not."""
    for match in _DEMONSTRATIVE.finditer(question):
        noun = match.group(2).lower()
        if noun not in _NOT_THINGS and noun not in STOPWORDS and not _VERBISH.search(noun):
            return noun
    return None


def definite_referent(question: str, history: Sequence[Turn]) -> str | None:
    """A "the X" of the question whose noun no earlier turn names ("the park"), or ``None``.

    Two words when the second is a noun too ("the police department"); a capitalised X is a name
    ("the Causeway VA Clinic"), never underspecified, and is skipped.
    """
    earlier = content_terms(" ".join(t.text for t in history))
    for match in _DEFINITE.finditer(question):
        first, second = match.group(1), match.group(2)
        if first[0].isupper() or first.lower() in _NOT_THINGS or first.lower() in STOPWORDS:
            continue
        words = [first.lower()]
        if (
            second
            and not second[0].isupper()
            and second.lower() not in STOPWORDS
            and not _VERBISH.search(second)
            and not _ADJECTIVE.search(second.lower())
        ):
            words.append(second.lower())
        if not content_terms(" ".join(words)) & earlier:
            return " ".join(words)
    return None


def uncovered_terms(question: str, pool: EvidencePool | None) -> tuple[str, ...]:
    """Content words of ``question`` (as written) that no evidence passage holds, in order."""
    mentioned: set[str] = set().union(*pool.terms.values()) if pool is not None and pool.terms else set()
    out: list[str] = []
    for token in re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", question):
        word = token.strip("'-")
        terms = content_terms(word)
        if terms and not terms <= mentioned and word.lower() not in (w.lower() for w in out):
            out.append(word)
    return tuple(out)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b) / (na * nb) if na and nb else 0.0


def turn_features(
    question: str,
    history: Sequence[Turn],
    rewrite: str,
    pool: EvidencePool | None,
    embedder: SentenceEmbedder | None,
) -> TurnFeatures:
    """The features of ``question`` asked after ``history``, rewritten as ``rewrite``, with the
    evidence ``pool`` retrieved for the rewrite (``None``: no evidence). ``embedder`` gives the
    similarity to the previous user turn (``None``: 0)."""
    users = [t.text for t in history if t.role == "user"]
    earlier = content_terms(" ".join(t.text for t in history))
    own = content_terms(question)
    tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", question)
    names = sum(1 for i, t in enumerate(tokens) if any(c.isdigit() for c in t) or (i > 0 and t[:1].isupper()))
    cue = needs_rewrite(question, history) if history else None
    similarity = 0.0
    if embedder is not None and users:
        similarity = _cosine(embedder.embed_query(question), embedder.embed_query(users[-1]))
    evidence = _evidence(question, pool)
    asks_quantity = _QUANTITY.search(question) is not None
    if asks_quantity:
        best = _best_passages(pool, 3) if pool is not None and len(pool.owners) else []
        evidence["quantity_unmet"] = float(not any(_DIGIT.search(c.text) for c in best))
    return TurnFeatures(
        user_turns=math.log1p(len(users)),
        rewritten=float(rewrite != question),
        pronoun=float(cue is not None and cue.startswith("reference")),
        demonstrative=float(demonstrative_referent(question) is not None),
        unresolved=float(unresolved_reference(question, history) is not None),
        definite_unnamed=float(definite_referent(question, history) is not None),
        names=math.log1p(names),
        content_words=math.log1p(len(own)),
        new_words=len(own - earlier) / len(own) if own else 0.0,
        history_similarity=similarity,
        parts=math.log1p(len(_PARTS.findall(question.rstrip("?")))),
        quantity=float(asks_quantity),
        yes_no=float(_YES_NO.search(question.strip()) is not None),
        opinion=float(_OPINION.search(question) is not None),
        **evidence,
    )


_DIGIT = re.compile(r"\d")


def _best_passages(pool: EvidencePool, n: int) -> list[Citation]:
    """The ``n`` passages whose best sentence is most similar to the question, best first."""
    best: dict[int, float] = {}
    for owner, s in zip(pool.owners, pool.question_similarity.tolist(), strict=True):
        best[owner] = max(best.get(owner, -1.0), float(s))
    return [pool.by_id(o) for o, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def _evidence(question: str, pool: EvidencePool | None) -> dict[str, float]:
    if pool is None or not len(pool.owners):
        return {"missing_keys": float(len(key_terms(question)))}
    sims = np.sort(pool.question_similarity.astype(np.float64))[::-1]
    per_passage: dict[int, float] = {}
    for owner, s in zip(pool.owners, pool.question_similarity.tolist(), strict=True):
        per_passage[owner] = max(per_passage.get(owner, -1.0), float(s))
    best = sorted(per_passage.values(), reverse=True)
    own = content_terms(question)
    mentioned: set[str] = set().union(*pool.terms.values())
    top = pool.terms.get(pool.owners[int(np.argmax(pool.question_similarity))], frozenset())
    keys = key_terms(question)
    return {
        "best_sentence": float(sims[0]),
        "top3_sentences": float(sims[:3].mean()),
        "passage_agreement": best[1] / best[0] if len(best) > 1 and best[0] > 0 else 0.0,
        "covered": len(own & mentioned) / len(own) if own else 1.0,
        "covered_top": len(own & top) / len(own) if own else 1.0,
        "missing_keys": float(len(keys - mentioned)),
    }
