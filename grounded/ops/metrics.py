"""Prometheus metrics of the server and the scheduler.

With ``grounded serve --workers N`` each worker is its own process: ``grounded serve`` then sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, and ``/metrics`` merges every worker's
values (prometheus_client's multiprocess mode). Index gauges are read from the published
version at scrape time, so they are the same whichever worker answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

if TYPE_CHECKING:
    from grounded.answering.types import Answer
    from grounded.kb import KnowledgeBase

__all__ = [
    "ABSTENTIONS",
    "ANSWERS",
    "EXPERT_LATENCY",
    "REFRESHES",
    "REFRESH_DURATION",
    "REQUEST_LATENCY",
    "RETRIEVAL_HITS",
    "STAGE_LATENCY",
    "observe_answer",
    "render",
]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUEST_LATENCY = Histogram(
    "grounded_request_duration_seconds",
    "HTTP request latency by route template, method and status.",
    ["route", "method", "status"],
    buckets=_LATENCY_BUCKETS,
)
EXPERT_LATENCY = Histogram(
    "grounded_expert_duration_seconds",
    "Time an expert (model) took per call, by task.",
    ["task"],
    buckets=_LATENCY_BUCKETS,
)
RETRIEVAL_HITS = Histogram(
    "grounded_retrieval_hits",
    "Chunks returned per retrieval, by route.",
    ["route"],
    buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100),
)
STAGE_LATENCY = Histogram(
    "grounded_answer_stage_duration_seconds",
    "Time each stage of answering took (the trace's timings: ground, retrieve, evidence, generate, "
    "verify, total, ...), so a latency budget can be read per stage.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
ANSWERS = Counter("grounded_answers_total", "Answers given, by whether they came from the cache.", ["cached"])
ABSTENTIONS = Counter("grounded_abstentions_total", "Answers that abstained (not in the sources).")
REFRESH_DURATION = Histogram(
    "grounded_refresh_duration_seconds",
    "Source refresh duration (all attempts), by source and outcome.",
    ["source", "status"],
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
REFRESHES = Counter(
    "grounded_refreshes_total",
    "Finished source refreshes by source and outcome (succeeded/failed).",
    ["source", "status"],
)


def observe_answer(answer: Answer, route: str) -> None:
    """Record an answer's retrieval hits, expert latency and abstention."""
    ANSWERS.labels(cached=str(answer.cached).lower()).inc()
    if answer.abstained:
        ABSTENTIONS.inc()
    if not answer.cached:
        RETRIEVAL_HITS.labels(route=route).observe(len(answer.citations))
        generate_ms = answer.timings.get("generate_ms")
        if generate_ms is not None:
            EXPERT_LATENCY.labels(task="answer").observe(generate_ms / 1000)
        # Every stage the engine timed, whatever stages it has: new stages need no change here.
        for key, ms in answer.timings.items():
            if key.endswith("_ms"):
                STAGE_LATENCY.labels(stage=key.removesuffix("_ms")).observe(ms / 1000)


class IndexCollector(Collector):
    """Gauges of the published version: documents, chunks, bytes on disk, version number."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb

    def collect(self) -> Iterator[Metric]:
        version = self.kb.versions.current()
        if version is None:
            return
        counts = self.kb.snapshot().store.counts()
        for name in ("documents", "chunks"):
            if isinstance(counts.get(name), int):
                yield GaugeMetricFamily(
                    f"grounded_index_{name}", f"{name.title()} in the published version.", counts[name]
                )
        size = sum(f.stat().st_size for f in Path(version.path).iterdir() if f.is_file())
        yield GaugeMetricFamily("grounded_index_bytes", "Bytes on disk of the published version.", size)
        if version.id.isdigit():
            yield GaugeMetricFamily("grounded_index_version", "Number of the published version.", int(version.id))


def render(kb: KnowledgeBase) -> bytes:
    """The Prometheus text exposition of this process (or all workers) plus the index gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        process = generate_latest(registry)
    else:
        process = generate_latest(REGISTRY)
    index = CollectorRegistry()
    index.register(IndexCollector(kb))
    return process + generate_latest(index)
