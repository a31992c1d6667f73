"""Read passages and labelled examples from a data folder or a knowledge base, as pairs.

A data folder has the layout of ``../shared/data`` (any subset of it): ``clapnq/`` (ClapNQ dev
files), ``mtrag/mtragun_reference_dev.jsonl`` (MT-RAG reference tasks). Nothing is copied.

``mtrag/human_evaluations_dev.json`` (LLM answers judged by people) is the *test set* of
``benchmarks/faithfulness.py``: no pair is ever built from it, and its document ids are read to leave
out the reference tasks that share a passage with it (decontamination), so no test passage is seen in
training. Its conversations are split in two halves (:func:`human_halves`): the responses of half A
are dev responses (the whole-response verdict's aggregation and threshold are chosen on them), those
of half B test responses, never chosen on (:func:`human_responses`).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded.checks import perturb
from grounded.checks.data import GateCase, Pair, Passage, claim_pairs, gate_pairs, neighbours, rng_for, synthetic_pairs
from grounded.checks.text import content_words, detokenize, evidence_window, split_sentences
from grounded.errors import ConfigError

__all__ = [
    "Response",
    "clapnq_cases",
    "clapnq_pairs",
    "clapnq_passages",
    "clapnq_sentence_pairs",
    "faithfulness_test_document_ids",
    "human_halves",
    "human_responses",
    "kb_passages",
    "mtrag_cases",
    "mtrag_pairs",
    "mtrag_responses",
    "pydoc_passages",
    "synthetic_responses",
]

TEST_FILE = Path("mtrag") / "human_evaluations_dev.json"


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def pydoc_passages(*, max_chars: int = 800) -> list[Passage]:
    """The demo corpus (CPython's ``pydoc_data`` topics) chunked as ``grounded ingest`` would."""
    from connectors.pydoc_topics import PydocTopicsConnector
    from indexes.chunking import ChunkingConfig, chunk_document

    out: list[Passage] = []
    for page in PydocTopicsConnector().read("topics", None):
        for doc in page.records:
            text, title, key = getattr(doc, "text", ""), getattr(doc, "title", ""), getattr(doc, "key", "")
            for chunk in chunk_document(key, text, ChunkingConfig(max_chars=max_chars)):
                body = " ".join(chunk.text.split())
                if len(body.split()) >= 12:
                    out.append(Passage(f"pydoc:{key}:{chunk.start}", title, body))
    return out


def kb_passages(kb_dir: str | Path, *, limit: int = 5000) -> list[Passage]:
    """The chunks of a knowledge base's published version (first ``limit`` by chunk id)."""
    from indexes.duckdb_store import DuckDBStore
    from indexes.versions import VersionStore

    version = VersionStore.open(Path(kb_dir), create=False).current()
    if version is None:
        raise ConfigError(f"the knowledge base in {kb_dir} has no published version; ingest something first")
    store = DuckDBStore.open(version.store_path, read_only=True)
    try:
        rows = (
            store.cursor()
            .execute(
                "SELECT c.chunk_id, coalesce(d.title, ''), c.text FROM chunks c JOIN documents d USING (doc_id) "
                "ORDER BY c.chunk_id LIMIT ?",
                [limit],
            )
            .fetchall()
        )
    finally:
        store.close()
    return [Passage(f"kb:{cid}", str(title), " ".join(str(text).split())) for cid, title, text in rows]


def clapnq_passages(data: Path) -> list[Passage]:
    """ClapNQ's derived 593-passage corpus, detokenized."""
    path = data / "clapnq" / "derived_dev_passages.jsonl"
    return [Passage(f"clapnq:{d['_id']}", d["title"], detokenize(d["text"])) for d in _jsonl(path)]


def clapnq_pairs(data: Path, *, seed: int = 0) -> Iterator[Pair]:
    """Support pairs from ClapNQ answers and gate pairs from its questions (group: question id).

    Supported: each sentence of the human answer against the gold passage, and one selected
    sentence; unsupported: their rewrites, joined clauses and sentences from the next
    question's passage. Gate: answerable questions with their passage (1), unanswerable ones
    with their related passage (0), and answerable ones with the selected sentences removed (0).
    """
    folder = data / "clapnq"
    answerable = list(_jsonl(folder / "dev_answerable.jsonl"))
    gold = [Passage(r["id"], r["passages"][0]["title"], detokenize(r["passages"][0]["text"])) for r in answerable]
    near = neighbours(gold)
    for i, row in enumerate(answerable):
        rng = rng_for(seed, "clapnq", row["id"])
        texts = [detokenize(p["text"]) for p in row["passages"]]
        nxt = answerable[near[i] if near[i] >= 0 else (i + 1) % len(answerable)]
        foreign = [detokenize(s) for p in nxt["passages"] for s in p.get("sentences", [])]
        foreign = [s for s in foreign if len(s.split()) >= 6]
        names = perturb.entities(" ".join(texts))
        group = f"clapnq:{row['id']}"
        out = row["output"][0] if row.get("output") else {}
        claims = [s for s in split_sentences(detokenize(out.get("answer", ""))) if len(s.split()) >= 4]
        selected = [detokenize(s) for s in out.get("selected_sentences", [])]
        if selected:
            claims.append(rng.choice(selected))
        for claim in claims:
            yield from claim_pairs(
                claim, texts, rng=rng, group=group, source="clapnq", foreign=foreign, names=names, negatives=2
            )
        yield from gate_pairs(
            row["input"], texts, 1, group=group, source="clapnq", kind="clapnq_answerable", hint=selected
        )
    for row in _jsonl(folder / "dev_unanswerable.jsonl"):
        texts = [detokenize(p["text"]) for p in row["passages"]]
        group = f"clapnq:{row['id']}"
        rng = rng_for(seed, "clapnq", row["id"])
        yield from gate_pairs(row["input"], texts, 0, group=group, source="clapnq", kind="clapnq_unanswerable", rng=rng)


SENTENCE_NEGATIVES = 3
"""Sentences beside the question kept per ClapNQ question (the ones sharing most words with it)."""


def _sentences(passage: dict[str, Any]) -> list[str]:
    """A ClapNQ passage's sentences (its own ``sentences`` list, else split), detokenized, of 5+ words:
    what the answer path could quote (:func:`~grounded.answering.verify.is_quotable` asks as many)."""
    raw = passage.get("sentences") or split_sentences(passage["text"])
    return [s for s in (detokenize(x) for x in raw) if len(s.split()) >= 5]


def _closest(question: str, sentences: Sequence[str], count: int) -> list[str]:
    """The ``count`` sentences sharing most content words with ``question`` (ties: passage order)."""
    wanted = content_words(question)
    ranked = sorted(range(len(sentences)), key=lambda k: (-len(content_words(sentences[k]) & wanted), k))
    return [sentences[k] for k in ranked[:count]]


def clapnq_sentence_pairs(data: Path) -> Iterator[Pair]:
    """One-sentence relevance pairs: a question against *one* sentence, scored by the ``answerable`` head as
    the answer path scores a candidate quote (:meth:`~grounded.checks.AnswerabilityGate.relevance`).

    The gate pairs read windows of several sentences, so they never taught the model that a sentence on
    the question's topic may still not answer it; the demo's "What is the precedence of not compared to
    and?" got 0.556 for "Any ordered comparison of a number to a not-a-number value is false.", more than
    the right sentence of another question. Here, per answerable question (group: question id, so the
    split stays by question): each sentence the annotators selected as holding the answer (1,
    ``answering_sentence``); up to :data:`SENTENCE_NEGATIVES` of its passage's *other* sentences, on
    topic but not answering (0, ``beside_sentence``), and the sentence of the nearest other question's
    passage closest to it (0, ``other_passage_sentence``). Per unanswerable question: the
    :data:`SENTENCE_NEGATIVES` sentences of its related passage closest to it (0, ``unanswered_sentence``).
    Deterministic: no random draw (sentences are ranked by the words they share with the question).

    Not in the full recipe: trained with it (2026-12-01, ``0b08fec5``) the relevance head was no better on
    held-out questions and the answer decision abstained less on test (benchmarks/RESULTS.md). Kept for
    ``benchmarks/relevance_sentences.py``, which scores any model's relevance head on these pairs."""
    folder = data / "clapnq"
    answerable = list(_jsonl(folder / "dev_answerable.jsonl"))
    gold = [Passage(r["id"], r["passages"][0]["title"], detokenize(r["passages"][0]["text"])) for r in answerable]
    near = neighbours(gold)
    for i, row in enumerate(answerable):
        question, group = row["input"], f"clapnq:{row['id']}"
        out = row["output"][0] if row.get("output") else {}
        selected = {detokenize(s) for s in out.get("selected_sentences", [])}
        own = [s for p in row["passages"] for s in _sentences(p)]
        answering = [s for s in own if s in selected]
        if not answering:
            continue  # no sentence alone is marked as the answer: nothing to learn one sentence from
        for s in answering:
            yield Pair("answerable", question, s, 1, "answering_sentence", group, "clapnq")
        for s in _closest(question, [s for s in own if s not in selected], SENTENCE_NEGATIVES):
            yield Pair("answerable", question, s, 0, "beside_sentence", group, "clapnq")
        other = answerable[near[i] if near[i] >= 0 else (i + 1) % len(answerable)]
        foreign = [s for p in other["passages"] for s in _sentences(p) if s not in own]
        for s in _closest(question, foreign, 1):
            yield Pair("answerable", question, s, 0, "other_passage_sentence", group, "clapnq")
    for row in _jsonl(folder / "dev_unanswerable.jsonl"):
        sentences = [s for p in row["passages"] for s in _sentences(p)]
        for s in _closest(row["input"], sentences, SENTENCE_NEGATIVES):
            yield Pair("answerable", row["input"], s, 0, "unanswered_sentence", f"clapnq:{row['id']}", "clapnq")


def clapnq_cases(data: Path) -> Iterator[GateCase]:
    """ClapNQ dev questions with their passages: answerable (1) and unanswerable (0)."""
    for name, label in (("dev_answerable.jsonl", 1), ("dev_unanswerable.jsonl", 0)):
        for row in _jsonl(data / "clapnq" / name):
            texts = tuple(detokenize(p["text"]) for p in row["passages"])
            kind = "clapnq_answerable" if label else "clapnq_unanswerable"
            yield GateCase(row["input"], texts, label, kind, f"clapnq:{row['id']}")


def faithfulness_test_document_ids(data: Path) -> frozenset[str]:
    """Document ids of the faithfulness test file, if present (only to leave them out of training)."""
    path = data / TEST_FILE
    if not path.is_file():
        return frozenset()
    return frozenset(d["document_id"] for d in json.loads(path.read_text(encoding="utf-8"))["documents"])


def human_halves(task_ids: Sequence[str]) -> list[str]:
    """``"A"`` or ``"B"`` for each MT-RAG task id: its conversation's (the id before ``<::>``) place in the
    conversations ordered by their sha256, alternately A and B (about half the conversations each)."""
    conversations = [t.split("<::>")[0] for t in task_ids]
    order = sorted(set(conversations), key=lambda c: hashlib.sha256(c.encode()).hexdigest())
    side = {c: "AB"[k % 2] for k, c in enumerate(order)}
    return [side[c] for c in conversations]


def human_responses(data: Path) -> Iterator[tuple[str, Response]]:
    """``(half, response)`` for each judged response of the faithfulness file (:data:`TEST_FILE`), if
    present: faithful unless the annotators' median faithfulness is 2 or less (of 1-4), kind
    ``human:<answering model>``, grouped by conversation, with the passages of its task."""
    path = data / TEST_FILE
    if not path.is_file():
        return
    raw = json.loads(path.read_text(encoding="utf-8"))
    docs = {d["document_id"]: str(d["text"]) for d in raw["documents"]}
    tasks = {t["task_id"]: t for t in raw["tasks"]}
    evaluations = raw["evaluations"]
    for half, e in zip(human_halves([e["task_id"] for e in evaluations]), evaluations, strict=True):
        task = tasks[e["task_id"]]
        marks = [float(v["value"]) for v in e["annotations"]["faithfulness"].values()]
        passages = tuple(docs[c["document_id"]] for c in task["contexts"] if c["document_id"] in docs)
        faithful = int(statistics.median(marks) > 2)
        group = "human:" + e["task_id"].split("<::>")[0]
        yield half, Response(e["model_response"], passages, faithful, f"human:{e['model_id']}", group)


def _question(task: dict[str, Any]) -> str:
    turns = [t["text"] for t in task["input"] if t.get("speaker") == "user"]
    return turns[-1] if turns else ""


def _tasks(data: Path, exclude_docs: frozenset[str]) -> Iterator[dict[str, Any]]:
    path = data / "mtrag" / "mtragun_reference_dev.jsonl"
    for task in _jsonl(path):
        if not any(c["document_id"] in exclude_docs for c in task["contexts"]):
            yield task


def _label(task: dict[str, Any]) -> str:
    value = task.get("answerability") or task.get("Answerability") or ""
    return str(value[0] if isinstance(value, list) and value else value)


RELATED_PASSAGES = 3
"""Passages an unanswerable MT-RAG question is gated against (see :func:`_gate_passages`)."""


def _related_passages(question: str, task: dict[str, Any], tasks: list[dict[str, Any]]) -> list[str]:
    """The :data:`RELATED_PASSAGES` passages of the other tasks of ``task``'s collection that share most
    content words with ``question`` (ties: file order): what retrieval from the collection brings."""
    wanted = content_words(question)
    seen: set[str] = set()
    scored: list[tuple[int, int, str]] = []
    for other in tasks:
        if other is task or other.get("Collection") != task.get("Collection"):
            continue
        for c in other["contexts"]:
            if c["document_id"] not in seen:
                seen.add(c["document_id"])
                scored.append((-len(wanted & content_words(c["text"])), len(scored), c["text"]))
    return [text for _, _, text in sorted(scored)[:RELATED_PASSAGES]]


def _gate_passages(task: dict[str, Any], tasks: list[dict[str, Any]]) -> list[str]:
    """The passages a task's question is gated against: its reference passages; for an unanswerable
    one, which MT-RAG gives none, the collection's passages closest to it in words (a question the
    collection cannot answer still retrieves something, and that is what the gate must refuse)."""
    texts = [c["text"] for c in task["contexts"]]
    if not texts and _label(task) == "UNANSWERABLE":
        texts = _related_passages(_question(task), task, tasks)
    return texts


def mtrag_pairs(data: Path, *, seed: int = 0, exclude_docs: frozenset[str] = frozenset()) -> Iterator[Pair]:
    """Support pairs from MT-RAG reference answers, gate pairs from its answerability labels
    (ANSWERABLE and PARTIAL: 1, UNANSWERABLE: 0, UNDERSPECIFIED: left out); group: conversation."""
    tasks = list(_tasks(data, exclude_docs))
    for i, task in enumerate(tasks):
        rng = rng_for(seed, "mtrag", task["task_id"])
        group = f"mtrag:{task['conversation_id']}"
        texts = _gate_passages(task, tasks)
        question, label = _question(task), _label(task)
        if label in {"ANSWERABLE", "PARTIAL", "UNANSWERABLE"} and texts:
            answerable = int(label != "UNANSWERABLE")
            target = task["targets"][0]["text"] if answerable and task.get("targets") else ""
            # An answerable question's positive is the window its reference answer rests on.
            yield from gate_pairs(
                question,
                texts,
                answerable,
                group=group,
                source="mtrag",
                kind=f"mtrag_{label.lower()}",
                positive=evidence_window(target, texts) if target else None,
                rng=rng,
            )
        if label not in {"ANSWERABLE", "PARTIAL"} or not task.get("targets"):
            continue
        other = tasks[(i + 7) % len(tasks)]
        foreign = [s for t in other.get("targets", []) for s in split_sentences(t["text"]) if len(s.split()) >= 6]
        names = perturb.entities(" ".join(texts))
        sentences = [s for s in split_sentences(task["targets"][0]["text"]) if len(s.split()) >= 5]
        for claim in rng.sample(sentences, min(3, len(sentences))):
            yield from claim_pairs(
                claim, texts, rng=rng, group=group, source="mtrag", foreign=foreign, names=names, negatives=1
            )


def mtrag_cases(data: Path, *, exclude_docs: frozenset[str] = frozenset()) -> Iterator[GateCase]:
    """MT-RAG questions (last user turn) with their reference passages, labelled by answerability."""
    tasks = list(_tasks(data, exclude_docs))
    for task in tasks:
        label = _label(task)
        texts = tuple(_gate_passages(task, tasks))
        if label in {"ANSWERABLE", "PARTIAL", "UNANSWERABLE"} and texts:
            kind = f"mtrag_{label.lower()}"
            yield GateCase(
                _question(task), texts, int(label != "UNANSWERABLE"), kind, f"mtrag:{task['conversation_id']}"
            )


@dataclass(frozen=True, slots=True)
class Response:
    """A multi-sentence answer with its passages and a 0/1 faithfulness label (threshold tuning)."""

    text: str
    passages: tuple[str, ...]
    faithful: int
    kind: str
    group: str


def mtrag_responses(data: Path, *, seed: int = 0, exclude_docs: frozenset[str] = frozenset()) -> Iterator[Response]:
    """Reference answers (faithful) and the same answers made unfaithful: one sentence rewritten by
    :mod:`perturb`, a sentence of another conversation's answer added, or 2-3 sentences of related
    answers added (a paragraph of knowledge the passages do not hold, as LLM answers often add)."""
    tasks = [t for t in _tasks(data, exclude_docs) if _label(t) in {"ANSWERABLE", "PARTIAL"} and t.get("targets")]
    for i, task in enumerate(tasks):
        rng = rng_for(seed, "mtrag-response", task["task_id"])
        group = f"mtrag:{task['conversation_id']}"
        passages = tuple(c["text"] for c in task["contexts"])
        answer = task["targets"][0]["text"]
        yield Response(answer, passages, 1, "reference", group)
        sentences = split_sentences(answer)
        if not sentences:
            continue
        k = rng.randrange(len(sentences))
        rules = list(perturb.UNSUPPORTED_REWRITES.items())
        rng.shuffle(rules)
        for kind, rule in rules:
            if kind != "truncated" and (text := rule(sentences[k], rng)) and text != sentences[k]:
                yield Response(" ".join([*sentences[:k], text, *sentences[k + 1 :]]), passages, 0, kind, group)
                break
        other = split_sentences(tasks[(i + 7) % len(tasks)]["targets"][0]["text"])
        if other:
            added = rng.choice(other)
            yield Response(" ".join([*sentences, added]), passages, 0, "added_sentence", group)
        # Like many unfaithful LLM answers: the answer, then a paragraph of related knowledge that the
        # passages do not hold (sentences of the same conversation's other answers, else a neighbour's).
        if knowledge := _related_knowledge(task, tasks, i, passages, rng):
            yield Response(" ".join([*sentences, *knowledge]), passages, 0, "knowledge_added", group)


def _related_knowledge(
    task: dict[str, Any], tasks: list[dict[str, Any]], i: int, passages: tuple[str, ...], rng: Any
) -> list[str]:
    """2-3 sentences of other answers of ``task``'s conversation (or of the next tasks) that its own
    passages do not contain: on-topic knowledge the passages do not support."""
    joined = " ".join(passages)
    own = set(split_sentences(task["targets"][0]["text"]))
    same = [t for t in tasks if t["conversation_id"] == task["conversation_id"] and t is not task]
    nearby = same + [tasks[(i + k) % len(tasks)] for k in (1, 2)]
    pool: list[str] = []
    for t in nearby:
        for s in split_sentences(t["targets"][0]["text"]):
            if len(s.split()) >= 6 and s not in own and s not in joined and s not in pool:
                pool.append(s)
    return rng.sample(pool, min(len(pool), rng.choice((2, 3)))) if len(pool) >= 2 else []


def passages_pairs(passages: list[Passage], *, source: str, seed: int = 0, claims_per_passage: int = 1) -> list[Pair]:
    """:func:`synthetic_pairs` of ``passages`` as a list."""
    return list(synthetic_pairs(passages, source=source, seed=seed, claims_per_passage=claims_per_passage))


def synthetic_responses(passages: list[Passage], *, seed: int = 0) -> Iterator[Response]:
    """Responses made of 2-3 consecutive sentences of a passage (faithful), and the same with
    one sentence rewritten by a rule of :mod:`perturb`, one sentence of the next passage added, or 2-3
    sentences of the nearest other passage added (not)."""
    neighbour = [j if j >= 0 else (i + 1) % len(passages) for i, j in enumerate(neighbours(passages))]
    for i, p in enumerate(passages):
        rng = rng_for(seed, "synthetic-response", p.pid)
        sentences = [s for s in split_sentences(p.text) if 5 <= len(s.split()) <= 60]
        if len(sentences) < 2:
            continue
        start = rng.randrange(max(1, len(sentences) - 2))
        chosen = sentences[start : start + rng.choice((2, 3))]
        yield Response(" ".join(chosen), (p.text,), 1, "extract", p.pid)
        k = rng.randrange(len(chosen))
        rules = list(perturb.UNSUPPORTED_REWRITES.items())
        rng.shuffle(rules)
        for kind, rule in rules:
            if (text := rule(chosen[k], rng)) and text != chosen[k]:
                yield Response(" ".join([*chosen[:k], text, *chosen[k + 1 :]]), (p.text,), 0, kind, p.pid)
                break
        other = [s for s in split_sentences(passages[(i + 1) % len(passages)].text) if len(s.split()) >= 5]
        if other:
            yield Response(" ".join([*chosen, rng.choice(other)]), (p.text,), 0, "added_sentence", p.pid)
        # Several sentences of the nearest other passage added (related knowledge this passage lacks).
        near = [s for s in split_sentences(passages[neighbour[i]].text) if len(s.split()) >= 5 and s not in p.text]
        if len(near) >= 2:
            added = rng.sample(near, min(len(near), rng.choice((2, 3))))
            yield Response(" ".join([*chosen, *added]), (p.text,), 0, "knowledge_added", p.pid)
