"""The Ray engine on a real local Ray cluster (one per module, 2 CPUs): same version as a local ingest."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import grounded
from grounded.ingest.ray_engine import embed_on_ray
from grounded.kb import KnowledgeBase
from tests.ci import import_or_skip
from tests.conftest import DEMO_TOPICS, write_topics

pytestmark = pytest.mark.slow

ray = import_or_skip("ray", "pip install 'grounded[scale]' (make venv installs it)", module_level=True)

QUERIES = ("context manager __enter__", "leave the innermost loop", "anonymous functions", "assert statement")


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _chunks(kb: KnowledgeBase) -> list[tuple[int, str, str]]:
    rows = kb.snapshot().store.cursor().execute("SELECT chunk_id, doc_id, text FROM chunks ORDER BY chunk_id")
    return [(int(c), str(d), str(t)) for c, d, t in rows.fetchall()]


def _vectors(kb: KnowledgeBase) -> np.ndarray:
    return kb.snapshot().store.vectors()[1]


def _assert_same_version(got: KnowledgeBase, expected: KnowledgeBase) -> None:
    assert _chunks(got) == _chunks(expected)
    np.testing.assert_allclose(_vectors(got), _vectors(expected), atol=1e-5)
    for query in QUERIES:
        assert [h.chunk_id for h in got.search(query, k=10)] == [h.chunk_id for h in expected.search(query, k=10)]


def test_ray_ingest_builds_the_version_a_local_ingest_builds(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus")
    on_ray = grounded.open(tmp_path / "ray")
    local = grounded.open(tmp_path / "local")
    on_ray.ingest(corpus, source="ref", engine="ray", workers=1)
    local.ingest(corpus, source="ref")
    _assert_same_version(on_ray, local)
    # A refresh embeds on Ray only the text the current version lacks.
    (corpus / "pass.txt").write_text("The pass statement does nothing, on purpose.\n")
    vectors, job = embed_on_ray(on_ray.store, "ref", _files(corpus), workers=1)
    assert job.embedded == len(vectors) == 1


def _files(corpus: Path) -> object:
    from connectors.files import FilesConfig, FilesConnector

    return FilesConnector(FilesConfig(path=corpus))


def test_a_killed_worker_leaves_the_last_version_serving_and_a_rerun_finishes(tmp_path: Path) -> None:
    corpus = write_topics(tmp_path / "corpus", DEMO_TOPICS[:2])
    kb = grounded.open(tmp_path / "kb")
    kb.ingest(corpus, source="ref")
    first = kb.version
    write_topics(corpus, ("try", "class", "function", "import", "global", "nonlocal", "raise", "yield", "async"))
    errors: list[BaseException] = []

    def refresh() -> None:
        try:
            kb.ingest(corpus, source="ref", engine="ray", workers=1)
        except BaseException as exc:  # the test looks at what happened
            errors.append(exc)

    job = threading.Thread(target=refresh)
    job.start()
    killed = _kill_embed_actor(deadline=time.monotonic() + 120)
    while job.is_alive():
        assert kb.search("loop", k=1)  # the last good version serves throughout
        time.sleep(0.2)
    job.join()
    assert killed
    assert kb.version == first or not errors
    kb.ingest(corpus, source="ref", engine="ray", workers=1)  # a rerun finishes
    local = grounded.open(tmp_path / "local")
    local.ingest(corpus, source="ref")
    _assert_same_version(kb, local)


def _kill_embed_actor(deadline: float) -> bool:
    """SIGKILL the process of a live embedding actor (found in Ray's actor table)."""
    from ray._private.state import actors

    while time.monotonic() < deadline:
        for actor in actors().values():
            if "_EmbedActor" in str(actor["ActorClassName"]) and actor["State"] == "ALIVE" and actor["Pid"]:
                os.kill(int(actor["Pid"]), signal.SIGKILL)
                return True
        time.sleep(0.1)
    return False
