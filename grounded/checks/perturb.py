"""FactCC-style rewrites of a true sentence: unsupported variants and supported paraphrases.

Each function takes a sentence (and what it may borrow from) and returns the rewrite, or
``None`` when the rule does not apply. Every unsupported rewrite changes what the sentence
claims, never only its form: negation and antonyms flip it, swapped numbers, dates, names or
roles make it false of its passage, a clause joined from another passage adds a claim the
passage does not hold, and a sentence cut off mid-way asserts nothing complete (the verifier
must never keep a fragment). Supported rewrites change the form only (case, a dropped
parenthesis or trailing clause, number formats, a hedge in front).

All choices come from the ``random.Random`` passed in, so a seed fixes them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from grounded.checks.text import STOPWORDS

__all__ = ["SUPPORTED_REWRITES", "UNSUPPORTED_REWRITES", "entities", "join_clause", "truncate"]

_AUX = re.compile(
    r"\b(is|are|was|were|has|have|had|can|could|will|would|should|does|do|did|must|may)\b(?! not\b| never\b)",
    re.IGNORECASE,
)
_NEGATED = re.compile(r"\b(is|are|was|were|has|have|had|can|could|will|would|should|does|do|did|must) (not|never) ")
_CONTRACTED = re.compile(r"\b(is|are|was|were|has|have|had|could|would|should|does|do|did)n't\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w])")
_ENTITY = re.compile(r"\b([A-Z][a-zA-Z'\u2019.-]+(?:\s+(?:of|de|the|and|von|van|la|du)?\s*[A-Z][a-zA-Z'\u2019.-]+)*)")
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_ANTONYMS = dict(
    pair
    for a, b in [
        ("increase", "decrease"),
        ("increases", "decreases"),
        ("increased", "decreased"),
        ("before", "after"),
        ("more", "less"),
        ("larger", "smaller"),
        ("largest", "smallest"),
        ("first", "last"),
        ("higher", "lower"),
        ("highest", "lowest"),
        ("earliest", "latest"),
        ("north", "south"),
        ("east", "west"),
        ("always", "never"),
        ("positive", "negative"),
        ("true", "false"),
        ("allowed", "forbidden"),
        ("include", "exclude"),
        ("includes", "excludes"),
        ("maximum", "minimum"),
        ("older", "younger"),
        ("oldest", "youngest"),
        ("won", "lost"),
        ("wins", "loses"),
        ("above", "below"),
        ("inside", "outside"),
        ("early", "late"),
        ("long", "short"),
        ("longer", "shorter"),
        ("many", "few"),
        ("most", "least"),
        ("rise", "fall"),
        ("required", "optional"),
        ("mutable", "immutable"),
        ("public", "private"),
        ("start", "end"),
        ("success", "failure"),
        ("can", "cannot"),
        ("enabled", "disabled"),
        ("male", "female"),
    ]
    for pair in ((a, b), (b, a))
)


def negate(sentence: str, rng: random.Random) -> str | None:
    """Flip the first auxiliary: "is" -> "is not", "is not" -> "is", "isn't" -> "is"."""
    if m := _NEGATED.search(sentence):
        return sentence[: m.start()] + m.group(1) + " " + sentence[m.end() :]
    if m := _CONTRACTED.search(sentence):
        return sentence[: m.start()] + m.group(1) + sentence[m.end() :]
    if m := _AUX.search(sentence):
        return sentence[: m.end()] + rng.choice((" not", " never")) + sentence[m.end() :]
    # No auxiliary: "never" before the first verb-looking word ("X calls Y" -> "X never calls Y").
    tokens = sentence.split(" ")
    for i in range(1, len(tokens) - 1):
        word, before = tokens[i], tokens[i - 1].lower()
        if (
            word.islower()
            and word.isalpha()
            and len(word) > 3
            and word.endswith(("s", "ed"))
            and not word.endswith(("ss", "us", "is"))
            and word not in STOPWORDS
            and before not in STOPWORDS
        ):
            return " ".join([*tokens[:i], "never", *tokens[i:]])
    return None


def antonym(sentence: str, rng: random.Random) -> str | None:
    """Replace one word by its opposite (increase/decrease, before/after, first/last, ...)."""
    hits = [m for m in re.finditer(r"[A-Za-z]+", sentence) if m.group().lower() in _ANTONYMS]
    if not hits:
        return None
    m = rng.choice(hits)
    word = _ANTONYMS[m.group().lower()]
    if m.group()[0].isupper():
        word = word.capitalize()
    return sentence[: m.start()] + word + sentence[m.end() :]


def swap_number(sentence: str, rng: random.Random) -> str | None:
    """Change one number (a year by a few years, others by a visible amount) or one month."""
    numbers = list(_NUMBER.finditer(sentence))
    months = list(re.finditer(r"\b(" + "|".join(_MONTHS) + r")\b", sentence))
    if not numbers and not months:
        return None
    if months and (not numbers or rng.random() < 0.25):
        m = rng.choice(months)
        new = rng.choice([x for x in _MONTHS if x != m.group()])
        return sentence[: m.start()] + new + sentence[m.end() :]
    m = rng.choice(numbers)
    text = m.group()
    value = float(text.replace(",", ""))
    if "." in text:
        new = f"{value * rng.choice((0.5, 1.5, 2, 3)):.{len(text.split('.')[1])}f}"
    elif 1000 <= value <= 2100 and "," not in text:  # a year
        new = str(int(value) + rng.choice((-12, -7, -3, -2, -1, 1, 2, 3, 5, 10, 21)))
    else:
        n = int(value)
        new_n = rng.choice((n + rng.randint(1, 9), n * rng.randint(2, 5), max(0, n - rng.randint(1, max(1, n)))))
        if new_n == n:
            new_n = n + 1
        new = f"{new_n:,}" if "," in text else str(new_n)
    return sentence[: m.start()] + new + sentence[m.end() :]


def entities(text: str) -> list[str]:
    """Capitalised spans of ``text`` that are not sentence-initial stop words (rough named entities)."""
    found = []
    for m in _ENTITY.finditer(text):
        span = m.group(1).strip()
        if span.lower() in STOPWORDS or len(span) < 3:
            continue
        if m.start() == 0 and len(span.split()) == 1:  # "The", "Many": sentence-initial capitals
            continue
        found.append(span)
    return found


def swap_entity(sentence: str, rng: random.Random, pool: Sequence[str] = ()) -> str | None:
    """Replace one name in ``sentence`` by another name from ``pool`` (its passage, then others)."""
    own = entities(sentence)
    others = sorted({e for e in pool if e not in own and e not in sentence})
    if not own or not others:
        return None
    target = rng.choice(own)
    return sentence.replace(target, rng.choice(others), 1)


def swap_roles(sentence: str, rng: random.Random) -> str | None:
    """Exchange two different names or two different numbers of the sentence ("A beat B" -> "B beat A")."""
    spans = sorted({e for e in entities(sentence) if sentence.count(e) == 1}, key=sentence.index)
    if len(spans) < 2:
        spans = [m.group() for m in _NUMBER.finditer(sentence)]
        spans = [s for s in dict.fromkeys(spans) if sentence.count(s) == 1]
    if len(spans) < 2:
        return None
    a, b = rng.sample(spans, 2)
    swapped = sentence.replace(a, "\x00").replace(b, a).replace("\x00", b)
    return swapped if swapped != sentence else None


def truncate(sentence: str, rng: random.Random) -> str | None:
    """Cut the sentence after 30-75% of its words, as a writer stopped by its token limit does."""
    tokens = sentence.split()
    if len(tokens) < 6:
        return None
    cut = max(2, min(len(tokens) - 2, round(len(tokens) * rng.uniform(0.3, 0.75))))
    head = " ".join(tokens[:cut]).rstrip(",;:-(")
    return head if rng.random() < 0.5 else head + "."


def join_clause(sentence: str, other: str, rng: random.Random) -> str | None:
    """``sentence`` with a clause of ``other`` (a sentence the evidence does not hold) joined to it."""
    a, b = sentence.rstrip(" ."), other.rstrip(" .")
    if not a or not b or a == b:
        return None
    b = b[0].lower() + b[1:] if not b[:2].isupper() and b.split()[0].lower() in STOPWORDS else b
    joiner = rng.choice((", and ", "; ", ", while ", ", and also ", ". In addition, "))
    text = f"{a}{joiner}{b}." if rng.random() < 0.6 else f"{other.rstrip(' .')}{joiner}{a[0].lower() + a[1:]}."
    return text


# Supported rewrites: the same claim in another form.


def lowercase(sentence: str, rng: random.Random) -> str | None:
    return sentence.lower() if sentence.lower() != sentence else None


def drop_clause(sentence: str, rng: random.Random) -> str | None:
    """Drop a parenthesis, or everything after the last comma of a long sentence."""
    no_paren = re.sub(r"\s*\([^()]*\)", "", sentence)
    if no_paren != sentence and len(no_paren.split()) >= 4:
        return no_paren
    if sentence.count(",") and len(sentence.split()) >= 12:
        head = sentence[: sentence.rfind(",")].rstrip()
        if len(head.split()) >= 6:
            return head + "."
    return None


def reformat_numbers(sentence: str, rng: random.Random) -> str | None:
    """Write a number another way: 1,000 <-> 1000, 10% <-> 10 percent, 25 August 1830 <-> August 25, 1830."""
    day_month = re.search(r"\b(\d{1,2}) (" + "|".join(_MONTHS) + r") (\d{4})\b", sentence)
    if day_month:
        d, mth, y = day_month.groups()
        return sentence[: day_month.start()] + f"{mth} {d}, {y}" + sentence[day_month.end() :]
    if m := re.search(r"\b(\d{1,3}(?:,\d{3})+)\b", sentence):
        return sentence[: m.start()] + m.group().replace(",", "") + sentence[m.end() :]
    if m := re.search(r"(\d)\s*%", sentence):
        return sentence[: m.start()] + m.group(1) + " percent" + sentence[m.end() :]
    if (m := re.search(r"\b(\d{4,})\b", sentence)) and not 1000 <= int(m.group()) <= 2100:
        return sentence[: m.start()] + f"{int(m.group()):,}" + sentence[m.end() :]
    return None


def hedge(sentence: str, rng: random.Random) -> str | None:
    """Put a conversational opener in front, as assistants do ("Yes, ...", "According to the text, ...")."""
    opener = rng.choice(("Yes, ", "According to the document, ", "The source says that ", "In short, ", "Note that "))
    first = sentence.split()[0] if sentence.split() else ""
    rest = sentence[:1].lower() + sentence[1:] if first.lower() in STOPWORDS and first != "I" else sentence
    return opener + rest


Rewrite = Callable[[str, random.Random], "str | None"]

UNSUPPORTED_REWRITES: dict[str, Rewrite] = {
    "negation": negate,
    "antonym": antonym,
    "number": swap_number,
    "roles": swap_roles,
    "truncated": truncate,
}
"""Rewrites that need nothing but the sentence (entity swaps and joined clauses take more)."""

SUPPORTED_REWRITES: dict[str, Rewrite] = {
    "lowercase": lowercase,
    "clause_dropped": drop_clause,
    "numbers_reformatted": reformat_numbers,
    "hedged": hedge,
}
