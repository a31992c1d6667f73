"""The pieces of ``grounded optimize`` that need no model: the space, the split, the choice, the journal, --apply."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from grounded.config import Settings
from grounded.errors import ConfigError, InvalidRequest
from grounded.optimize.measure import Measured, Outcome
from grounded.optimize.report import apply_config
from grounded.optimize.search import Constraints, Journal, Trial, rank
from grounded.optimize.space import Dimension, SearchSpace, parse_values
from grounded.optimize.workload import Question, read_questions, split_workload


def _settings() -> Settings:
    return Settings.model_validate({})


def _m(p50: float, *, answer_rate: float = 0.8, abstention: float = 0.8) -> Measured:
    return Measured(10, answer_rate, abstention, None, None, None, p50, p50 * 2, 100.0)


def test_candidates_start_with_the_baseline_then_single_changes_and_repeat() -> None:
    space = SearchSpace([Dimension("answer.k", (1, 2)), Dimension("search.rrf_k", (20,))]).with_baseline(_settings())
    first = space.candidates(_settings(), 10, seed=3)
    assert first[0] == {"answer.k": 3, "search.rrf_k": 60}
    assert first[1:4] == [{"answer.k": 1, "search.rrf_k": 60}, {"answer.k": 2, "search.rrf_k": 60},
                          {"answer.k": 3, "search.rrf_k": 20}]  # fmt: skip
    assert len(first) == space.size == 6
    assert space.candidates(_settings(), 10, seed=3) == first


def test_a_configuration_becomes_validated_settings() -> None:
    space = SearchSpace([Dimension("retrieval", ("bm25",)), Dimension("experts.answer.max_retries", (5,))])
    settings = space.settings(_settings(), {"retrieval": "bm25", "experts.answer.max_retries": 5})
    assert (settings.search.bm25_weight, settings.search.dense_weight) == (1.0, 0.0)
    assert settings.experts.answer.max_retries == 5
    assert _settings().search.dense_weight == 1.0  # the original is untouched


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ([Dimension("answer.k", (0, 3))], "answer.k: Input should be greater than or equal to 1"),
        ([Dimension("answer.nope", (1,))], "unknown setting 'answer.nope'"),
        ([Dimension("server.port", (1,))], "unknown setting 'server.port'"),
        ([Dimension("retrieval", ("sparse",))], "retrieval must be one of hybrid, bm25, dense"),
        ([Dimension("experts.answer.threads", (1, 2))], "cannot be searched with the transformers backend"),
    ],
)
def test_an_invalid_space_is_refused_with_the_reason(dims: list[Dimension], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        SearchSpace(dims).with_baseline(_settings()).validate(_settings())


def test_a_value_listed_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="lists a value twice"):
        Dimension("answer.k", (1, 1))


def test_space_values_parse_as_json_or_strings() -> None:
    assert parse_values("answer.k=1, 2,3") == ("answer.k", [1, 2, 3])
    assert parse_values("retrieval=bm25,hybrid") == ("retrieval", ["bm25", "hybrid"])
    with pytest.raises(ConfigError, match="expected SETTING=V1,V2"):
        parse_values("answer.k")


def test_the_split_holds_back_about_30_percent_of_each_kind_the_same_way_every_time() -> None:
    questions = [Question(f"question number {i}?", answerable=i % 3 != 0) for i in range(30)]
    tune, held = split_workload(questions)
    assert len(held) == 9
    assert sum(not q.answerable for q in held) == 3
    assert not {q.qid for q in tune} & {q.qid for q in held}
    assert split_workload(list(reversed(questions))) == (tune, held)


def test_too_few_questions_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="too few"):
        split_workload([Question("one question here?"), Question("two questions here?")])


def test_a_bad_questions_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "fine?"}\n{"question": "x?", "answerable": "yes"}\n', encoding="utf-8")
    with pytest.raises(InvalidRequest, match=r"q.jsonl:2: 'answerable' must be true or false"):
        read_questions(path)


def test_balanced_takes_the_fastest_not_worse_configuration() -> None:
    base = Trial(0, {"k": 3}, measured=_m(2.0))
    faster_worse = Trial(1, {"k": 1}, measured=_m(0.5, answer_rate=0.7))
    faster = Trial(2, {"k": 2}, measured=_m(1.2))
    assert base.measured is not None
    order = rank([base, faster_worse, faster], base.measured, "balanced", Constraints())
    assert [t.index for t, _ in order] == [2, 0, 1]
    assert order[-1][1] == ["a quality metric below the baseline's"]
    latency = rank([base, faster_worse, faster], base.measured, "latency", Constraints())
    assert latency[0][0].index == 1


def test_latency_within_the_tolerance_is_decided_by_quality() -> None:
    base = Trial(0, {"k": 3}, measured=_m(1.0))
    better_slightly_slower = Trial(1, {"k": 5}, measured=_m(1.15, abstention=0.9))
    assert base.measured is not None
    assert rank([base, better_slightly_slower], base.measured, "balanced", Constraints())[0][0].index == 1
    much_slower = Trial(1, {"k": 5}, measured=_m(1.5, abstention=0.9))
    assert rank([base, much_slower], base.measured, "balanced", Constraints())[0][0].index == 0


def test_constraints_put_breaking_configurations_last() -> None:
    base = Trial(0, {"k": 3}, measured=_m(2.0))
    fast = Trial(1, {"k": 1}, measured=_m(0.5, answer_rate=0.5))
    assert base.measured is not None
    order = rank([base, fast], base.measured, "latency", Constraints(min_answer_rate=0.6))
    assert order[0][0].index == 0
    assert order[1][1] == ["answer rate 0.5 < 0.6"]
    with pytest.raises(InvalidRequest, match="--min-answer-rate must be from 0 to 1"):
        Constraints(min_answer_rate=1.5)


def test_the_journal_replays_its_answers_and_forgets_another_workload(tmp_path: Path) -> None:
    outcome = Outcome("q1", False, ("d1",), "An answer [1].", 0.5, 120)
    journal = Journal(tmp_path / "j.jsonl", {"workload": "a"})
    journal.add('{"answer.k":1}', outcome)
    with (tmp_path / "j.jsonl").open("a") as fh:
        fh.write('{"config": "cut off while writi')  # a run killed mid-line
    again = Journal(tmp_path / "j.jsonl", {"workload": "a"})
    assert again.outcomes == {('{"answer.k":1}', "q1"): outcome}
    assert again.replayed == 1
    assert Journal(tmp_path / "j.jsonl", {"workload": "b"}).outcomes == {}


def test_apply_changes_only_the_chosen_settings_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "grounded.toml"
    old = '# my settings\nkb_path = "kb"\n\n[answer]\nk = 3  # three passages\nmax_sentences = 2\n'
    path.write_text(old, encoding="utf-8")
    backup = apply_config(path, {"answer.k": 2, "retrieval": "bm25"})
    assert backup == tmp_path / "grounded.toml.bak"
    assert backup.read_text(encoding="utf-8") == old
    text = path.read_text(encoding="utf-8")
    assert "# my settings" in text
    data = tomllib.loads(text)
    assert data["answer"] == {"k": 2, "max_sentences": 2}
    assert data["search"] == {"bm25_weight": 1.0, "dense_weight": 0.0}
    Settings.model_validate(data)  # still a valid configuration
    assert apply_config(path, {"answer.k": 1}) == tmp_path / "grounded.toml.bak.1"


def test_report_json_round_trips(tmp_path: Path) -> None:
    m = _m(1.0)
    assert json.loads(json.dumps(m.to_dict()))["score"] == m.score == 0.8
