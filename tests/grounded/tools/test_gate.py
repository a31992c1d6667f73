"""The tool gate: fitted on a small real tool registry (real embedder, real tool index), saved
into a private model cache, loaded by the grounder; and the threshold when none is trained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grounded.config import Settings
from grounded.errors import ConfigError
from grounded.experts.embedding import SentenceEmbedder
from grounded.grounding.grounder import Grounder
from grounded.tools.gate import GATE_FILE, RelevanceFeatures, ToolGate, active_gate_dir, fit_logistic
from grounded.tools.index import ToolIndex
from grounded.tools.schema import SchemaTool
from grounded.tune.toolgate import LabelledQuestion, gate_features

TOOLS = {
    "weather_current": "Current weather conditions (temperature, wind, rain) for a city.",
    "currency_convert": "Convert an amount of money from one currency to another at today's exchange rate.",
    "stock_quote": "The latest share price of a company listed on a stock exchange, by ticker symbol.",
    "translate_text": "Translate a text from one language into another language.",
    "flight_status": "Whether a flight is on time, delayed or cancelled, by flight number.",
    "recipe_search": "Find cooking recipes that use the given ingredients.",
}
FITS = [
    "What is the weather like in Oslo right now?",
    "Is it raining in Bergen today?",
    "How much is 250 euros in Norwegian kroner?",
    "Convert 100 dollars to yen.",
    "What is Apple's share price?",
    "Give me the current stock quote for MSFT.",
    "Translate 'good morning' into French.",
    "How do you say thank you in German?",
    "Is flight SK4035 delayed?",
    "Has flight BA117 been cancelled?",
    "What can I cook with eggs and spinach?",
    "Find me a recipe with chicken and rice.",
]
NO_TOOL = [
    "Who wrote the novel Pride and Prejudice?",
    "What is the boiling point of water at sea level?",
    "When did the Berlin Wall fall?",
    "How many moons does Mars have?",
    "Explain the rules of chess castling.",
    "What is the capital of Australia?",
    "Why is the sky blue?",
    "Who painted the Mona Lisa?",
    "What does photosynthesis produce?",
    "How tall is Mount Everest?",
    "Name the largest ocean on Earth.",
    "What year did the first person walk on the moon?",
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ToolIndex:
    settings = Settings()
    embedder = SentenceEmbedder.shared(settings.embed_model, batch_size=settings.embed_batch_size)
    index = ToolIndex(tmp_path_factory.mktemp("toolgate") / "tools", settings, embedder)
    index.update({name: SchemaTool(name, text, {}) for name, text in TOOLS.items()})
    return index


@pytest.fixture(scope="module")
def fitted(registry: ToolIndex) -> tuple[ToolGate, list[RelevanceFeatures]]:
    questions = [LabelledQuestion(q, True, None, "test") for q in FITS]
    questions += [LabelledQuestion(q, False, None, "test") for q in NO_TOOL]
    rows = gate_features(registry, questions)
    return ToolGate.fit(rows, [q.fits for q in questions]), rows


@pytest.fixture
def model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GROUNDED_MODEL_CACHE", str(tmp_path))
    return tmp_path


def test_logistic_fit_separates_and_repeats_exactly() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(-1, 1, (40, 2)), rng.normal(1, 1, (20, 2))])
    y = np.array([False] * 40 + [True] * 20)
    w, b = fit_logistic(x, y)
    assert w[0] > 0.5
    assert w[1] > 0.5
    p = 1 / (1 + np.exp(-(x @ w + b)))
    # balanced classes: about as many positives above 0.5 as negatives below it
    assert (p[y] >= 0.5).mean() > 0.8
    assert (p[~y] < 0.5).mean() > 0.8
    w2, b2 = fit_logistic(x, y)
    assert w.tobytes() == w2.tobytes()
    assert b == b2
    with pytest.raises(ConfigError, match="both relevant and irrelevant"):
        fit_logistic(x, np.ones(60, dtype=bool))


def test_the_gate_says_no_call_to_questions_no_tool_answers(
    registry: ToolIndex, fitted: tuple[ToolGate, list[RelevanceFeatures]], model_cache: Path
) -> None:
    gate, rows = fitted
    probabilities = gate.probabilities(rows)
    labels = np.array([True] * len(FITS) + [False] * len(NO_TOOL))
    assert ((probabilities >= gate.threshold) == labels).mean() >= 0.9  # on its own training questions
    # questions it never saw
    weather = registry.retrieve("What is the temperature in Paris right now?", 3, gate=gate)
    trivia = registry.retrieve("Who discovered penicillin?", 3, gate=gate)
    assert weather.names[0] == "weather_current"
    assert weather.relevant
    assert not trivia.relevant
    assert trivia.gate is not None
    assert trivia.gate.probability < gate.threshold <= weather.gate.probability  # type: ignore[union-attr]
    # the trace says who decided, with the score and the features it read
    trace = trivia.to_dict()
    assert trace["decided_by"] == "gate"
    assert trace["gate"]["model"] == gate.name
    assert trace["gate"]["probability"] == round(trivia.gate.probability, 4)
    assert trace["features"]["pool"] == len(TOOLS)
    assert -1 <= trace["features"]["similarity_1"] <= 1

    # saved into the model cache under its fingerprint, active, and read back to the same floats
    path = gate.save()
    assert path == model_cache / "toolgate" / gate.fingerprint
    assert active_gate_dir() == path
    loaded = ToolGate.load(path)
    assert loaded.fingerprint == gate.fingerprint
    assert loaded.probabilities(rows).tobytes() == probabilities.tobytes()
    # refitting on the same questions gives the same model (same fingerprint)
    questions = [LabelledQuestion(q, True, None, "test") for q in FITS]
    questions += [LabelledQuestion(q, False, None, "test") for q in NO_TOOL]
    again = ToolGate.fit(gate_features(registry, questions), [q.fits for q in questions])
    assert again.fingerprint == gate.fingerprint


def test_without_a_gate_the_threshold_decides(registry: ToolIndex) -> None:
    found = registry.retrieve("Who discovered penicillin?", 3, threshold=-1.0)
    assert found.gate is None
    assert found.relevant  # every cosine clears -1
    assert found.to_dict()["decided_by"] == "threshold"
    assert found.to_dict()["gate"] is None
    strict = registry.retrieve("Who discovered penicillin?", 3, threshold=0.99)
    assert not strict.relevant


def test_the_grounder_loads_the_active_gate_or_falls_back(
    fitted: tuple[ToolGate, list[RelevanceFeatures]], model_cache: Path, tmp_path: Path
) -> None:
    grounder = Grounder(tmp_path / "kb", SentenceEmbedder.shared(Settings().embed_model))
    assert grounder.tool_gate("auto") is None  # nothing trained in this cache: the threshold decides
    assert grounder.tool_gate("threshold") is None
    with pytest.raises(ConfigError, match=r"tools\.gate = 'model' requires"):
        grounder.tool_gate("model")
    gate, _ = fitted
    gate.save()
    assert grounder.tool_gate("auto") == gate
    assert grounder.tool_gate("model") == gate
    assert grounder.tool_gate("threshold") is None
    (model_cache / "toolgate" / gate.fingerprint / GATE_FILE).write_text("{}", encoding="utf-8")
    grounder2 = Grounder(tmp_path / "kb2", SentenceEmbedder.shared(Settings().embed_model))
    with pytest.raises(ConfigError, match="not a trained tool gate"):
        grounder2.tool_gate("auto")
