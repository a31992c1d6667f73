"""Readers keep answering, from one consistent version each, while ten refreshes publish.

A reader thread hammers ``/v1/search`` and ``/v1/query`` on a real server while the main thread
refreshes the source ten times, each time rewriting one marker document to say which
generation it is. Version ``000001`` holds generation 0, so every response must show
``generation == int(index_version) - 1``: hits and version from the same snapshot.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import grounded
from grounded.api.app import create_app
from tests.api.serving import serving
from tests.conftest import write_topics
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

REFRESHES = 10


def _marker(folder: Path, generation: int) -> None:
    (folder / "marker.txt").write_text(
        f"The zebracorn ledger is at generation {generation}. It changes with every refresh.", encoding="utf-8"
    )


def _check(kind: str, body: dict[str, Any], seen: list[tuple[str, str, int]], errors: list[str]) -> None:
    version = body["index_version"]
    texts = [h["text"] for h in body["hits"]] if kind == "search" else [c["text"] for c in body["citations"]]
    generations = {int(g) for t in texts for g in re.findall(r"zebracorn ledger is at generation (\d+)", t)}
    if generations != {int(version) - 1}:
        errors.append(f"{kind}: version {version} answered with generations {sorted(generations)}")
    seen.append((kind, version, len(texts)))


def test_ten_refreshes_under_continuous_queries(tmp_path: Path, fake_backend: str) -> None:  # noqa: F811
    corpus = write_topics(tmp_path / "corpus", ("with", "pass", "lambda"))
    _marker(corpus, 0)
    kb = grounded.open(
        tmp_path / "kb",
        keep_versions=2,
        experts={"answer": {"backend": fake_backend, "model": "echo"}},
        server={"rate_limit": 0},
    )
    kb.ingest(corpus, source="docs")
    writer = grounded.open(tmp_path / "kb", keep_versions=2)  # another KnowledgeBase, as a refresh process has
    stop = threading.Event()
    failures: list[str] = []
    seen: list[tuple[str, str, int]] = []

    def read(base: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if n % 3:
                        r = client.post("/v1/search", json={"query": "zebracorn ledger generation", "k": 2})
                        kind = "search"
                    else:
                        r = client.post(
                            "/v1/query", json={"query": "What generation is the zebracorn ledger at?", "k": 1}
                        )
                        kind = "query"
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    failures.append(f"{r.status_code}: {r.text[:300]}")
                    continue
                _check(kind, r.json(), seen, failures)

    with serving(create_app(kb)) as base:
        readers = [threading.Thread(target=read, args=(base,)) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            for generation in range(1, REFRESHES + 1):
                _marker(corpus, generation)
                stats = writer.ingest(corpus, source="docs")
                assert stats.version == f"{generation + 1:06d}"
        finally:
            stop.set()
            for t in readers:
                t.join(timeout=60)

    assert failures == []
    versions = {v for _, v, _ in seen}
    assert len(seen) > 20
    assert len(versions) >= 3, f"readers saw too few versions to prove anything: {sorted(versions)}"
    assert all(n >= 1 for _, _, n in seen)
    assert len(writer.versions.list_ids()) == 2  # pruned while readers held older versions
