from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexes.faiss_index import IndexChoice, VectorIndex, faiss_device, gpu_count, recall_at_k


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, dim: int = 32, clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, size=n)
    return _unit(centres[labels] + 0.35 * rng.normal(size=(n, dim)))


def test_small_collections_get_exact_search() -> None:
    vectors = _clustered(500)
    ids = np.arange(1000, 1500, dtype=np.int64)
    index = VectorIndex.build(ids, vectors)
    assert index.choice.kind == "Flat"
    scores, found = index.search(vectors[:5], 1)
    assert found[:, 0].tolist() == ids[:5].tolist()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_large_collections_get_ivf_that_keeps_recall() -> None:
    everything = _clustered(20_100)
    vectors, queries = everything[:20_000], everything[20_000:]  # same clusters, queries not indexed
    ids = np.arange(20_000, dtype=np.int64) * 7
    index = VectorIndex.build(ids, vectors, exact_limit=5_000, target_recall=0.95)
    assert index.choice.kind == "IVF,SQ8"
    assert index.choice.recall_at_10 >= 0.95
    # Check recall independently of the factory's own sample.
    exact = VectorIndex.build(ids, vectors)
    _, truth = exact.search(queries, 10)
    _, found = index.search(queries, 10)
    assert recall_at_k(found, truth) >= 0.9
    assert index.memory_bytes() < exact.memory_bytes() / 2


def test_unreachable_recall_falls_back_to_exact_search() -> None:
    # Uniform random vectors have no cluster structure; demanding perfect recall forces Flat.
    rng = np.random.default_rng(3)
    vectors = _unit(rng.normal(size=(6_000, 64)))
    index = VectorIndex.build(np.arange(6_000, dtype=np.int64), vectors, exact_limit=1_000, target_recall=1.01)
    assert index.choice.kind == "Flat"


def test_remove_and_add_change_what_is_found() -> None:
    vectors = _clustered(100)
    ids = np.arange(100, dtype=np.int64)
    index = VectorIndex.build(ids, vectors)
    assert index.remove(np.array([0], dtype=np.int64)) == 1
    assert 0 not in index.search(vectors[:1], 5)[1][0].tolist()
    index.add(np.array([500], dtype=np.int64), vectors[:1])
    assert index.search(vectors[:1], 1)[1][0, 0] == 500


def test_allowed_ids_restrict_the_result() -> None:
    vectors = _clustered(200)
    index = VectorIndex.build(np.arange(200, dtype=np.int64), vectors)
    allowed = np.array([3, 150], dtype=np.int64)
    _, found = index.search(vectors[:1], 5, allowed=allowed)
    assert {int(i) for i in found[0] if i >= 0} == {3, 150}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    vectors = _clustered(50)
    index = VectorIndex.build(np.arange(50, dtype=np.int64), vectors)
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss", IndexChoice(kind="Flat"))
    assert loaded.ntotal == 50
    assert not (tmp_path / "v.faiss.tmp").exists()
    assert loaded.search(vectors[7:8], 1)[1][0, 0] == 7


@pytest.mark.parametrize(("found", "expected"), [([[1, 2, 3]], 1.0), ([[1, 9, 8]], 1 / 3)])
def test_recall_at_k(found: list[list[int]], expected: float) -> None:
    truth = np.array([[1, 2, 3]], dtype=np.int64)
    assert recall_at_k(np.array(found, dtype=np.int64), truth, k=3) == pytest.approx(expected)


def test_auto_device_is_the_gpu_only_when_faiss_sees_one() -> None:
    assert faiss_device("auto", gpus=0) == "cpu"
    assert faiss_device("auto", gpus=2) == "cuda"
    assert faiss_device("cpu", gpus=2) == "cpu"
    assert faiss_device("cuda", gpus=1) == "cuda"


def test_asking_for_a_gpu_without_one_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="sees no GPU"):
        faiss_device("cuda", gpus=0)
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        faiss_device("tpu", gpus=0)


def test_cpu_device_searches_as_before() -> None:
    vectors = _clustered(300)
    ids = np.arange(300, dtype=np.int64)
    index = VectorIndex.build(ids, vectors).to_device("cpu")
    assert index.device == "cpu"
    assert index.search(vectors[:3], 1)[1][:, 0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="cpu or cuda"):
        index.to_device("gpu")


needs_gpu = pytest.mark.skipif(gpu_count() == 0, reason="no GPU that FAISS sees (faiss-cpu, or no CUDA device)")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("exact_limit", [100_000, 5_000])  # Flat, then IVF,SQ8
def test_gpu_search_finds_what_the_cpu_finds(exact_limit: int) -> None:
    everything = _clustered(20_050)
    vectors, queries = everything[:20_000], everything[20_000:]
    ids = np.arange(20_000, dtype=np.int64) * 3
    cpu = VectorIndex.build(ids, vectors, exact_limit=exact_limit)
    gpu = VectorIndex.build(ids, vectors, exact_limit=exact_limit).to_device("cuda")
    assert gpu.device == "cuda"
    on_cpu, on_gpu = cpu.search(queries, 10)[1], gpu.search(queries, 10)[1]
    assert recall_at_k(on_gpu, on_cpu) >= (1.0 if exact_limit > 20_000 else 0.95)
    # A filtered search runs on the CPU copy and honours the filter.
    allowed = ids[:100]
    assert set(gpu.search(queries, 5, allowed=allowed)[1].ravel().tolist()) <= set(allowed.tolist()) | {-1}
    # Removing ids reaches the GPU copy.
    gone = on_gpu[:, 0]
    gpu.remove(gone)
    assert not set(gpu.search(queries, 10)[1].ravel().tolist()) & set(gone.tolist())
