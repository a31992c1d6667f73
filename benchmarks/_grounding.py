"""Helpers shared by the grounding benchmarks: the GeoQuery knowledge base and its questions."""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One definition for the benchmarks and `grounded tune` (benchmarks/sql.py imports it from here).
from grounded.tune.evaluate import normalise_rows  # noqa: F401

GEO_DB = "geography-db.added-in-2020.sqlite"
# The GeoQuery tables declare no primary key; the mirror upserts by key, so name one.
# river has 12 rows that repeat another row exactly: keyed on all columns they collapse.
GEO_KEYS = {
    "border_info": ["state_name", "border"],
    "city": ["city_name", "state_name"],
    "highlow": ["state_name"],
    "lake": ["lake_name", "state_name"],
    "mountain": ["mountain_name", "state_name"],
    "river": ["river_name", "length", "country_name", "traverse"],
    "state": ["state_name"],
}


def geo_kb(data: Path, root: Path) -> Any:
    """A knowledge base at ``root`` with the GeoQuery tables mirrored as source ``geo``."""
    import grounded
    from connectors.registry import build_connector

    kb = grounded.open(root)
    if kb.version is None or "geo" not in {s["name"] for s in kb.snapshot().store.sources()}:
        params = {
            "path": str(data / GEO_DB),
            "tables": [{"name": t, "primary_key": k} for t, k in GEO_KEYS.items()],
        }
        kb.sync("geo", build_connector("sqlite", params, source="geo"))
    return kb


def geo_questions(data: Path, splits: tuple[str, ...] = ("dev",)) -> list[tuple[str, str]]:
    """``(question, gold SQL)`` of the question split(s), variables filled in."""
    out: list[tuple[str, str]] = []
    for item in json.loads((data / "geography.json").read_text()):
        for sentence in item["sentences"]:
            if sentence["question-split"] not in splits:
                continue
            text, sql = sentence["text"], item["sql"][0]
            for name, value in sentence["variables"].items():
                text = text.replace(name, value)
                sql = sql.replace(f'"{name}"', f"'{value}'").replace(name, value)
            out.append((text, sql))
    return out


def clapnq_questions(data: Path) -> list[str]:
    out = []
    for name in ("dev_answerable.jsonl", "dev_unanswerable.jsonl"):
        for line in (data / name).read_text().splitlines():
            if line.strip():
                out.append(json.loads(line)["input"])
    return out


def add_sql_arguments(parser: argparse.ArgumentParser) -> None:
    """``--grammar`` and ``--threads``, for the benchmarks that write SQL with ``sql_writers``."""
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads of a local expert (default: the backend's own)"
    )
    parser.add_argument(
        "--grammar",
        choices=("free", "grammar", "both"),
        default="both",
        help="decode SQL freely, under the linked tables' SQL grammar, or both side by side (default)",
    )
    parser.add_argument(
        "--path",
        choices=("plain", "values", "both"),
        default="values",
        help="the zero-shot path: plain (sample rows, one repair turn; before issue 25), values (value linking, "
        "qualified names, candidates chosen by execution, repairs with the binder's hint; default), or both",
    )
    parser.add_argument(
        "--examples",
        default="0",
        help="worked examples in the zero-shot prompt, made from the shown tables' own columns and values "
        "(template queries, never a benchmark question; default 0: none); a comma list (0,3) runs one "
        "writer per count side by side",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures and every question's outcome here")


def sql_writers(args: argparse.Namespace, linker: Any) -> dict[str, Any]:
    """One ``SqlWriter`` per decoding mode of ``--grammar``, named "<backend>:<model> <mode>"."""
    from grounded.config import ExpertSpec
    from grounded.experts.registry import backend_factory
    from grounded.sql.writer import SqlWriter

    expert = backend_factory(args.backend)(
        ExpertSpec(backend=args.backend, model=args.model, url=args.url, timeout_s=600, threads=args.threads)
    )
    label = f"{args.backend}:{Path(args.model).name}"
    modes = ("free", "grammar") if args.grammar == "both" else (args.grammar,)
    paths = ("plain", "values") if args.path == "both" else (args.path,)
    counts = [int(n) for n in str(args.examples).split(",")]
    return {
        f"{label} {mode} {path}" + (f" examples={n}" if len(counts) > 1 else ""): SqlWriter(
            expert, linker, db=linker.db, grammar=mode == "grammar", values=path == "values", examples=n
        )
        for path in paths
        for mode in modes
        for n in counts
    }


@dataclass
class Tally:
    """What one SQL writer scored over the questions."""

    correct: int = 0
    valid: int = 0
    repaired: int = 0
    seconds: list[float] = field(default_factory=list)
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def add(self, ok: bool, valid: bool, repaired: bool, seconds: float, **outcome: Any) -> None:
        self.correct += ok
        self.valid += valid
        self.repaired += valid and repaired
        self.seconds.append(seconds)
        self.outcomes.append({"ok": ok, "valid": valid, "seconds": round(seconds, 2), **outcome})

    def summary(self, n: int) -> dict[str, Any]:
        return {
            "questions": n,
            "correct": self.correct,
            "accuracy": round(self.correct / n, 4) if n else 0.0,
            "valid": round(self.valid / n, 4) if n else 0.0,
            "repaired": self.repaired,
            "p50_s": round(statistics.median(self.seconds), 2) if self.seconds else None,
            "mean_s": round(statistics.mean(self.seconds), 2) if self.seconds else None,
        }


def write_json(path: Path | None, title: str, tallies: dict[str, Tally], n: int, **extra: Any) -> None:
    """The tallies (and every question's outcome) as JSON at ``path`` (``--json``), if given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "title": title,
        **extra,
        "writers": {name: {**t.summary(n), "outcomes": t.outcomes} for name, t in tallies.items()},
    }
    path.write_text(json.dumps(body, indent=1, default=str))


def print_tallies(title: str, tallies: dict[str, Tally], n: int) -> None:
    """The writers side by side as a Markdown table (the caller adds rows shared by all)."""
    print(f"\n| {title} | " + " | ".join(tallies) + " |")
    print("|---|" + "---|" * len(tallies))
    rows = {
        "accuracy": lambda t: f"{t.correct / n:.1%} ({t.correct}/{n})",
        "valid SQL (passed guard + binder)": lambda t: f"{t.valid / n:.1%}",
        "repaired on the 2nd try": lambda t: str(t.repaired),
        "seconds per question, p50 / mean": lambda t: (
            f"{statistics.median(t.seconds):.1f} / {statistics.mean(t.seconds):.1f}"
        ),
    }
    for label, cell in rows.items():
        print(f"| {label} | " + " | ".join(cell(t) for t in tallies.values()) + " |")
