"""Tuned experts on disk: ``<kb>/experts/<name>/`` plus an ``active`` pointer per task and source.

::

    kb/experts/
        sql-geo-20261127T091500-3f2a9c1e/    HF weights, tokenizer, card.json, MODEL_CARD.md
        active/sql-geo.json                  {"history": ["sql-geo-...-old", "sql-geo-...-new"]}

The last name of a pointer's history is active; ``rollback`` drops it, so the one before serves
again. An expert directory is written under a temporary name and renamed when complete, and a
pointer is replaced atomically, so a server reading them never sees half a model: training runs
in its own process and never blocks serving. :class:`TunedExperts` re-reads a pointer when its
modification time changes, so a running server picks up a new expert (or a rollback) on the next
question, without a restart. Nothing here imports torch.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded.config import ExpertSpec
from grounded.errors import ConfigError, CorruptKnowledgeBase, NotFound
from grounded.experts.base import TextGenerator
from grounded.experts.registry import backend_factory

__all__ = [
    "ANSWER_PROMPT_FORMAT",
    "ANSWER_SCOPE",
    "PROMPT_FORMATS",
    "SERVED_FORMATS",
    "SQL_PROMPT_FORMAT",
    "TunedExpert",
    "TunedExperts",
    "activate",
    "active_name",
    "experts_dir",
    "list_experts",
    "rollback",
]

EXPERTS = "experts"

SQL_PROMPT_FORMAT = "sql-compact-v2"
"""The prompt a tuned SQL expert is trained with (:func:`grounded.sql.prompts.tuned_sql_messages`
with the question's value hints); served under the SQL grammar of its source's tables."""
ANSWER_PROMPT_FORMAT = "answer-short-v1"
"""The prompt a tuned answer expert is served with (:func:`grounded.answering.writer.tuned_answer_messages`)."""
PROMPT_FORMATS = {"sql": SQL_PROMPT_FORMAT, "answer": ANSWER_PROMPT_FORMAT}
"""The prompt format this grounded trains each tuned task with."""
SERVED_FORMATS = {"sql": (SQL_PROMPT_FORMAT, "sql-compact-v1"), "answer": (ANSWER_PROMPT_FORMAT,)}
"""The prompt formats this grounded serves (a card naming another is refused): an expert tuned by
an earlier version keeps the prompt it learnt (``sql-compact-v1``: no value hints, no grammar)."""
ANSWER_SCOPE = "kb"
"""The ``source`` of a tuned answer expert: one serves the whole knowledge base."""


def experts_dir(kb_path: Path) -> Path:
    """Where a knowledge base keeps its tuned experts."""
    return Path(kb_path) / EXPERTS


def _pointer(kb_path: Path, task: str, source: str) -> Path:
    return experts_dir(kb_path) / "active" / f"{task}-{source}.json"


@contextmanager
def _locked(kb_path: Path) -> Iterator[None]:
    lock = experts_dir(kb_path) / "active" / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _history(path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        history = json.loads(path.read_text(encoding="utf-8"))["history"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptKnowledgeBase(f"expert pointer {path} is unreadable ({exc}); delete it to serve the base") from exc
    return [str(name) for name in history]


def _write_history(path: Path, history: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"history": history}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def activate(kb_path: Path, task: str, source: str, name: str) -> None:
    """Make expert ``name`` the one serving ``task`` for ``source`` (the previous stays for rollback)."""
    if not (experts_dir(kb_path) / name / "card.json").is_file():
        raise NotFound(f"no tuned expert {name!r} in {experts_dir(kb_path)}; `grounded tune list` shows them")
    with _locked(kb_path):
        path = _pointer(kb_path, task, source)
        history = [n for n in _history(path) if n != name]
        _write_history(path, [*history, name])


def rollback(kb_path: Path, task: str, source: str) -> str | None:
    """Deactivate the current expert of ``task`` for ``source``; the name now active, or ``None`` (the base)."""
    with _locked(kb_path):
        path = _pointer(kb_path, task, source)
        history = _history(path)
        if not history:
            raise NotFound(f"no tuned {task} expert is active for source {source!r}; nothing to roll back")
        history.pop()
        _write_history(path, history)
        return history[-1] if history else None


def active_name(kb_path: Path, task: str, source: str) -> str | None:
    """The name of the expert serving ``task`` for ``source``, or ``None``."""
    history = _history(_pointer(kb_path, task, source))
    return history[-1] if history else None


def list_experts(kb_path: Path) -> list[dict[str, Any]]:
    """Every complete tuned expert's card (plus ``name`` and ``active``), newest first."""
    root = experts_dir(kb_path)
    out: list[dict[str, Any]] = []
    for card_path in sorted(root.glob("*/card.json")):
        card = json.loads(card_path.read_text(encoding="utf-8"))
        name = card_path.parent.name
        card["name"] = name
        card["active"] = active_name(kb_path, str(card.get("task")), str(card.get("source"))) == name
        out.append(card)
    return sorted(out, key=lambda c: (str(c.get("created_at", "")), c["name"]), reverse=True)


@dataclass(frozen=True, slots=True)
class TunedExpert:
    """An active tuned expert: its directory, its card and a generator serving it."""

    name: str
    path: Path
    card: dict[str, Any]
    generator: TextGenerator


class TunedExperts:
    """The active tuned experts of one knowledge base, re-read when a pointer changes.

    >>> experts = TunedExperts(Path("kb"))          # doctest: +SKIP
    >>> experts.get("sql", "geo").card["metrics"]   # doctest: +SKIP
    """

    def __init__(self, kb_path: Path) -> None:
        self.kb_path = Path(kb_path)
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[int, TunedExpert | None]] = {}

    def get(self, task: str, source: str) -> TunedExpert | None:
        """The expert active for ``task`` and ``source`` now, or ``None`` to use the configured one."""
        pointer = _pointer(self.kb_path, task, source)
        try:
            stamp = pointer.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            seen = self._seen.get((task, source))
            if seen is not None and seen[0] == stamp:
                return seen[1]
            name = active_name(self.kb_path, task, source)
            expert = None
            if name is not None:
                current = seen[1] if seen else None
                expert = current if current is not None and current.name == name else self._load(name)
            self._seen[(task, source)] = (stamp, expert)
            return expert

    def any(self, task: str) -> bool:
        """Whether some source has a tuned expert active for ``task`` (without loading it)."""
        root = experts_dir(self.kb_path) / "active"
        return any(_history(p) for p in root.glob(f"{task}-*.json"))

    def fingerprints(self, task: str) -> dict[str, str]:
        """``{source: fingerprint}`` of the active experts of ``task`` (for answer-cache keys)."""
        root = experts_dir(self.kb_path) / "active"
        out: dict[str, str] = {}
        for pointer in sorted(root.glob(f"{task}-*.json")):
            source = pointer.stem[len(task) + 1 :]
            expert = self.get(task, source)
            if expert is not None:
                out[source] = expert.generator.fingerprint
        return out

    def _load(self, name: str) -> TunedExpert:

        path = experts_dir(self.kb_path) / name
        try:
            card = json.loads((path / "card.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptKnowledgeBase(f"tuned expert {path} has no readable card.json ({exc})") from exc
        task = str(card.get("task", "sql"))
        serves = SERVED_FORMATS.get(task, ())
        if card.get("prompt_format") not in serves:
            # Serving it another prompt than it learnt would quietly lose what tuning bought.
            raise ConfigError(
                f"tuned expert {name!r} was trained with prompt format {card.get('prompt_format')!r}; this grounded "
                f"serves {' or '.join(map(repr, serves))} for {task}: retrain it, or roll it back "
                f"(grounded tune rollback --task {task})"
            )
        # Weights are a plain HF directory, so the standard transformers backend serves them.
        spec = ExpertSpec(backend="transformers", model=str(path))
        return TunedExpert(name, path, card, backend_factory(spec.backend)(spec))
