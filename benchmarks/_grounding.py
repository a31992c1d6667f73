"""Helpers shared by the grounding benchmarks: the GeoQuery knowledge base and its questions."""

from __future__ import annotations

import json
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
