"""The ONNX Runtime encoder: batch-invariant embeddings, equal to sentence-transformers' within float error."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from grounded.experts.embedding import SentenceEmbedder
from grounded.experts.onnx_encoder import bucket

WORDS = [
    "protein",
    "cell",
    "cancer",
    "gene",
    "expression",
    "mouse",
    "the",
    "of",
    "in",
    "a",
    "binds",
    "receptor",
    "signalling",
    "pathway",
]
TARGETS = (
    "What protein causes the immune response in mice?",
    "break",
    "The else clause of a for loop runs when the loop finishes without a break. " * 6,
)


def _texts(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return [" ".join(rnd.choices(WORDS, k=rnd.randint(1, 120))) for _ in range(n)]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder(runtime="onnx", batch_size=16)


def test_buckets_depend_only_on_a_texts_own_length() -> None:
    assert [bucket(n, 256) for n in (1, 8, 9, 64, 65, 96, 97, 250, 256)] == [8, 8, 16, 64, 96, 96, 128, 256, 256]


def test_an_embedding_is_the_same_bytes_alone_and_in_any_batch(embedder: SentenceEmbedder) -> None:
    alone = {t: embedder.embed([t])[0].tobytes() for t in TARGETS}
    for trial, size in enumerate((1, 2, 3, 7, 15, 16, 17, 40)):
        batch = _texts(size, seed=trial)
        rnd = random.Random(100 + trial)
        for t in TARGETS:
            batch.insert(rnd.randint(0, len(batch)), t)
        vectors = embedder.embed(batch, all_cores=bool(trial % 2))
        for t in TARGETS:
            assert vectors[batch.index(t)].tobytes() == alone[t], (trial, size, t[:20])


def test_onnx_runtime_equals_sentence_transformers_within_float_error(embedder: SentenceEmbedder) -> None:
    texts = [*TARGETS, *_texts(6, seed=7)]
    reference = SentenceEmbedder(runtime="torch").embed(texts)
    assert np.abs(embedder.embed(texts) - reference).max() < 1e-5


def test_concurrent_queries_share_batches_and_get_their_own_bytes(embedder: SentenceEmbedder) -> None:
    queries = [f"how does the {w} statement behave in a loop number {i}" for i, w in enumerate(WORDS * 3)]
    alone = {q: embedder.embed([q])[0].tobytes() for q in queries}
    start = threading.Barrier(len(queries))

    def ask(q: str) -> bytes:
        start.wait()
        assert embedder.batcher is not None
        return embedder.batcher.embed(q).tobytes()

    with ThreadPoolExecutor(len(queries)) as pool:
        got = dict(zip(queries, pool.map(ask, queries), strict=True))
    assert got == alone
    assert embedder.batcher is not None
    assert embedder.batcher.largest_batch > 1


def test_a_fresh_export_gives_the_same_bytes_as_the_cached_model(
    embedder: SentenceEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROUNDED_MODEL_CACHE", str(tmp_path))
    fresh = SentenceEmbedder(runtime="onnx")
    vectors = fresh.embed(list(TARGETS))
    assert list(tmp_path.glob("encoders/*/model.onnx"))  # exported from the package's weights, here
    assert vectors.tobytes() == embedder.embed(list(TARGETS)).tobytes()
