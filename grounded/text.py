"""Words as the verifier, the schema linker and the displays count them: stop words, stems, terms.

One definition, shared, so a word that counts as support in the verifier is the word a display
highlights and the schema linker matches.
"""

from __future__ import annotations

import re

__all__ = ["STOPWORDS", "content_terms", "key_terms", "stem"]

_STOPWORDS_TEXT = """a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves one known called
    may might must shall us many much well"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

_TOKEN = re.compile(r"[A-Za-z0-9]+")


def stem(word: str) -> str:
    """A crude suffix stemmer (-ing, -ed, -es, -s) that keeps at least three letters."""
    w = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def content_terms(text: str) -> set[str]:
    """Stemmed content words and numbers of ``text``."""
    return {stem(t) for t in _TOKEN.findall(text) if t.lower() not in STOPWORDS}


def key_terms(text: str) -> set[str]:
    """Numbers and names in ``text`` (stemmed): words that must appear in the evidence."""
    tokens = _TOKEN.findall(text)
    keys = {stem(t) for t in tokens if any(ch.isdigit() for ch in t)}
    keys.update(stem(t) for t in tokens[1:] if t[0].isupper() and t.lower() not in STOPWORDS)
    return keys
