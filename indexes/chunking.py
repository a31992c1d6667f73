"""Split documents into chunks on sentence boundaries, keeping character offsets.

Every chunk is an exact slice of the source text (``text[start:end]``), so a citation can
point back into the original document. Sentences are packed greedily up to ``max_chars``; a
sentence longer than that is cut at whitespace. Blank lines always end a sentence.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from indexes.base import Chunk

__all__ = ["ChunkingConfig", "chunk_document", "chunk_id_for", "evidence_sentences", "sentence_spans"]

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) and whitespace, when
# the next non-space character starts a new sentence (capital, digit, quote, bracket). Common
# abbreviations ("e.g.", "Dr.", "Fig.") and single initials are not ends.
_END = re.compile(r"""[.!?]+["')\]]*\s+(?=["'(\[]?[A-Z0-9])|\n\s*\n""")
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "vs",
        "cf",
        "al",
        "fig",
        "figs",
        "eq",
        "eqs",
        "no",
        "nos",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "sr",
        "jr",
        "st",
        "approx",
        "ca",
        "resp",
        "inc",
        "ltd",
        "co",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
    ]
)


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    """``max_chars``: soft upper bound of a chunk; ``overlap_sentences``: sentences repeated
    at the start of the next chunk so that a fact split across chunks stays findable."""

    max_chars: int = 1000
    overlap_sentences: int = 0

    def __post_init__(self) -> None:
        if self.max_chars < 50:
            raise ValueError(f"max_chars={self.max_chars} is too small; use at least 50")
        if self.overlap_sentences < 0:
            raise ValueError(f"overlap_sentences={self.overlap_sentences} must be >= 0")


def _is_abbreviation(text: str, end: int) -> bool:
    """True when the period at ``text[end]`` closes an abbreviation or an initial."""
    start = end
    while start > 0 and (text[start - 1].isalpha() or text[start - 1] == "."):
        start -= 1
    word = text[start:end].lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Return ``(start, end)`` spans of the sentences in ``text``, whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _END.finditer(text):
        if text[match.start()] == "." and _is_abbreviation(text, match.start()):
            continue
        end = match.end()
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    trimmed: list[tuple[int, int]] = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            trimmed.append((s, e))
    return trimmed


def evidence_sentences(title: str, text: str) -> list[tuple[tuple[int, int], str]]:
    """The sentences of a passage as the answer path embeds them: ``((start, end), text)``.

    Offsets are into ``text``; the embedded text is prefixed with the title, which gives a
    sentence its subject ("It is located ..." -> "Mount Logan: It is located ..."). Ingest
    stores these with each chunk and question time computes them for passages without them
    (tool results, older knowledge bases): one function, so both give the same sentences.
    """
    return [
        ((a, b), f"{title}: {text[a:b]}" if title else text[a:b])
        for a, b in sentence_spans(text) or [(0, len(text))]
        if text[a:b].strip()
    ]


def _split_long(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Cut an over-long sentence at the last whitespace before each ``max_chars`` boundary."""
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        if cut <= start:
            cut = start + max_chars
        yield start, cut
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        yield start, end


def chunk_id_for(doc_id: str, start: int, end: int, text: str) -> int:
    """A stable 63-bit id from the document id, the span and its text."""
    digest = hashlib.blake2b(f"{doc_id}\x00{start}\x00{end}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def chunk_document(doc_id: str, text: str, config: ChunkingConfig | None = None) -> list[Chunk]:
    """Split ``text`` into chunks of whole sentences of at most about ``max_chars`` characters.

    >>> [c.text for c in chunk_document("d", "One. Two is here.", ChunkingConfig(max_chars=50))]
    ['One. Two is here.']
    """
    config = config or ChunkingConfig()
    pieces: list[tuple[int, int]] = []
    for s, e in sentence_spans(text):
        pieces.extend(_split_long(text, s, e, config.max_chars))

    groups: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for piece in pieces:
        if current and piece[1] - current[0][0] > config.max_chars:
            groups.append(current)
            keep = current[-config.overlap_sentences :] if config.overlap_sentences else []
            # Overlap must not make the next chunk overflow on its own.
            while keep and piece[1] - keep[0][0] > config.max_chars:
                keep = keep[1:]
            current = list(keep)
        current.append(piece)
    if current:
        groups.append(current)

    chunks: list[Chunk] = []
    for ordinal, group in enumerate(groups):
        start, end = group[0][0], group[-1][1]
        body = text[start:end]
        chunks.append(
            Chunk(
                chunk_id=chunk_id_for(doc_id, start, end, body),
                doc_id=doc_id,
                ordinal=ordinal,
                start=start,
                end=end,
                text=body,
            )
        )
    return chunks
