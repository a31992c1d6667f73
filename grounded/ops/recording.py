"""A sample of the questions ``/v1/query`` answers, kept as the workload of ``grounded optimize --recorded``.

Off by default (``server.record_questions = 0``). With a share above 0, a question is recorded
when a hash of its text falls under the share, so the same question is always either recorded
or not, and recorded once: the file holds distinct questions, in the JSONL form
``grounded optimize --questions`` reads (question text only: no caller, no answer).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

__all__ = ["MAX_RECORDED", "record_question", "recorded_path"]

MAX_RECORDED = 10_000
"""Distinct questions kept; later ones are not recorded."""

_lock = threading.Lock()
_seen: dict[Path, set[str]] = {}


def recorded_path(kb_path: Path) -> Path:
    """Where the recorded questions of the knowledge base in ``kb_path`` are kept."""
    return kb_path / "optimize" / "recorded.jsonl"


def _sampled(question: str, share: float) -> bool:
    return int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def record_question(kb_path: Path, question: str, share: float) -> bool:
    """Append ``question`` to the recorded workload when it is sampled and new; whether it was."""
    text = " ".join(question.split())
    if share <= 0 or not text or not _sampled(text, share):
        return False
    path = recorded_path(kb_path)
    with _lock:
        seen = _seen.get(path)
        if seen is None:
            seen = set()
            if path.exists():
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        seen.add(str(json.loads(line)["question"]))
                    except (ValueError, KeyError, TypeError):
                        continue
            _seen[path] = seen
        if text in seen or len(seen) >= MAX_RECORDED:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"question": text}) + "\n")
        seen.add(text)
        return True
