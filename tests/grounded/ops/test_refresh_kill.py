"""SIGKILL a refreshing process at random points; the knowledge base must come up on a good version.

The child refreshes in a loop, each time rewriting a marker document with a new generation
and printing the version it published. After the kill, a fresh process (this one) must find
``CURRENT`` on a complete version (its marker, chunk count and vectors agree), the server must
be ready on it, and the next refresh must complete.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import grounded
from grounded.api.app import create_app
from tests.conftest import write_topics

pytestmark = pytest.mark.slow

CHILD = """
import itertools, pathlib, sys
import grounded
kb = grounded.open(sys.argv[1])
corpus = pathlib.Path(sys.argv[2])
kb.embedder.embed_query("warm up")
print("ready", flush=True)
for generation in itertools.count(int(sys.argv[3])):
    (corpus / "marker.txt").write_text(
        f"The zebracorn ledger is at generation {generation}. " + "It changes with every refresh. " * generation,
        encoding="utf-8",
    )
    stats = kb.ingest(corpus, source="docs")
    print("published", stats.version, generation, flush=True)
"""


def _marker_generation(kb: grounded.KnowledgeBase) -> int:
    hits = kb.search("zebracorn ledger generation", k=1, mode="bm25")
    found = re.findall(r"zebracorn ledger is at generation (\d+)", hits[0].text)
    return int(found[0])


def test_sigkill_during_refresh_leaves_the_last_good_version(tmp_path: Path) -> None:
    seed = int(os.environ.get("GROUNDED_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    corpus = write_topics(tmp_path / "corpus", ("with", "pass"))
    (corpus / "marker.txt").write_text("The zebracorn ledger is at generation 0.", encoding="utf-8")
    kb_path = tmp_path / "kb"
    grounded.open(kb_path).ingest(corpus, source="docs")
    published: dict[str, int] = {"000001": 0}
    generation = 1
    for round_ in range(int(os.environ.get("GROUNDED_KILL_ROUNDS", "2"))):
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, str(kb_path), str(corpus), str(generation)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            delay = rng.uniform(0.0, 2.5)
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
            child.wait()
            for line in child.stdout.read().splitlines():
                _, version, gen = line.split()
                published[version] = int(gen)
                generation = max(generation, int(gen) + 1)
        generation += 1  # the generation the kill interrupted may be half-written on disk

        restarted = grounded.open(kb_path, create=False)  # a server starting after the crash
        current = restarted.version
        context = f"seed {seed}, round {round_}, killed after {delay:.2f} s, current {current}, seen {published}"
        assert current is not None, context
        stats = restarted.stats()
        assert stats["chunks"] == restarted.snapshot().vectors.ntotal, context
        found = _marker_generation(restarted)
        if current in published:
            assert found == published[current], context
        else:  # killed after publishing, before printing: the newest version, one generation on
            assert int(current) == max(int(v) for v in published) + 1, context
            published[current] = found
        with TestClient(create_app(restarted)) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, context
            assert ready.json()["index_version"] == current

    final = grounded.open(kb_path, create=False)
    (corpus / "marker.txt").write_text("The zebracorn ledger is at generation 999.", encoding="utf-8")
    stats = final.ingest(corpus, source="docs")
    assert stats.published
    assert _marker_generation(final) == 999
    assert list((kb_path / "staging").iterdir()) == []
