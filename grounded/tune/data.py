"""Training examples for ``grounded tune sql``: JSONL in, a deterministic train/dev split out.

Each line is ``{"question": "...", "sql": "..."}``. A bad line is reported with its number, so
a file of thousands of examples is fixed in one pass, not by bisection.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded.errors import InvalidRequest

__all__ = ["SqlExample", "data_digest", "jsonl_objects", "read_examples", "split_examples"]


@dataclass(frozen=True, slots=True)
class SqlExample:
    """One question and the SQL that answers it on the source's mirrored tables."""

    question: str
    sql: str


def jsonl_objects(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of each non-blank line; :class:`InvalidRequest` names a bad line.

    ``what`` says what the file should hold, for the message when it does not exist.
    """
    if not path.is_file():
        raise InvalidRequest(f"examples file {str(path)!r} does not exist; {what}")
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                raise InvalidRequest(f"{path}:{number}: not valid JSON ({exc})") from exc


def read_examples(path: Path) -> list[SqlExample]:
    """The examples of a JSONL file; raises :class:`InvalidRequest` naming the first bad line."""
    out: list[SqlExample] = []
    for number, item in jsonl_objects(path, "give a JSONL file of question/sql pairs"):
        if not isinstance(item, dict):
            raise InvalidRequest(f"{path}:{number}: expected an object with question and sql, got {item!r}")
        question, sql = item.get("question"), item.get("sql")
        for key, value in (("question", question), ("sql", sql)):
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"{path}:{number}: {key!r} must be a non-empty string; got {value!r}")
        out.append(SqlExample(" ".join(str(question).split()), str(sql).strip()))
    if not out:
        raise InvalidRequest(f"examples file {str(path)!r} holds no examples")
    return out


def data_digest(examples: Sequence[SqlExample]) -> str:
    """sha256 of the examples in order (the model card's data hash)."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.question, ex.sql], ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def split_examples(
    examples: Sequence[SqlExample], *, dev_fraction: float = 0.1, max_dev: int = 200
) -> tuple[list[SqlExample], list[SqlExample]]:
    """``(train, dev)``: an example goes to dev by a hash of its question, so the split is stable.

    Hashing (rather than shuffling with a seed) keeps an example on the same side when lines
    are added to the file, so a dev score stays comparable across retrainings.
    """
    if len(examples) < 2:
        raise InvalidRequest(f"need at least 2 examples to hold some out for dev; got {len(examples)}")

    def bucket(ex: SqlExample) -> float:
        return int(hashlib.sha256(ex.question.lower().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    ranked = sorted(examples, key=bucket)
    n_dev = max(1, min(max_dev, round(len(examples) * dev_fraction)))
    dev_questions = {ex.question for ex in ranked[:n_dev]}
    train = [ex for ex in examples if ex.question not in dev_questions]
    dev = [ex for ex in examples if ex.question in dev_questions]
    return train, dev
