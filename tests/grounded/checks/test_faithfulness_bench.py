"""benchmarks/faithfulness.py's reading and arithmetic on a tiny handmade file of the MT-RAG layout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import faithfulness


def _evaluation(task: str, model: str, response: str, marks: list[int]) -> dict[str, object]:
    return {
        "task_id": task,
        "model_id": model,
        "model_response": response,
        "annotations": {"faithfulness": {str(i): {"value": str(m)} for i, m in enumerate(marks)}},
    }


@pytest.fixture
def judged_file(tmp_path: Path) -> Path:
    data = {
        "documents": [
            {"document_id": "d1", "title": "Belgium", "text": "Belgium became independent in 1831."},
            {"document_id": "d2", "title": "", "text": "Leopold I was its first king."},
        ],
        "tasks": [{"task_id": "t1", "contexts": [{"document_id": "d1"}, {"document_id": "d2"}, {"document_id": "x"}]}],
        "evaluations": [
            _evaluation("t1", "a", "Belgium became independent in 1831.", [4, 4, 3]),
            _evaluation("t1", "b", "Belgium became independent in 1066.", [1, 2, 4]),  # median 2: unfaithful
            _evaluation("t1", "b", "Leopold I was its first king.", [2, 3, 3]),  # median 3: faithful
        ],
    }
    path = tmp_path / "judged.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_load_reads_medians_and_passages(judged_file: Path) -> None:
    items = faithfulness.load(judged_file)
    assert [i.unfaithful for i in items] == [0, 1, 0]
    assert [i.median_faithfulness for i in items] == [4.0, 2.0, 3.0]
    assert items[0].passages == (
        ("Belgium", "Belgium became independent in 1831."),
        ("", "Leopold I was its first king."),
    )


def test_figures_arithmetic() -> None:
    # 2 unfaithful, 4 faithful; the flag catches 1 of 2 and wrongly flags 1 of 4.
    labels, flagged = [1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0]
    risk = [0.9, 0.2, 0.8, 0.1, 0.3, 0.0]
    f = faithfulness.figures(labels, flagged, risk)
    assert f["recall_unfaithful"] == 0.5
    assert f["recall_faithful"] == 0.75
    assert f["balanced_accuracy"] == 0.625
    assert f["auc"] == 0.75  # 0.9 beats all four, 0.2 beats 0.1 and 0.0: 6 of 8 pairs


def test_lexical_baseline_flags_the_changed_number(judged_file: Path) -> None:
    items = faithfulness.load(judged_file)
    flagged, risk = faithfulness.lexical_scores(items)
    assert flagged[1] == 1
    assert flagged[0] == 0
    assert risk[1] > risk[0]


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert faithfulness.main(["--data", str(tmp_path / "none.json")]) == 2
    assert "not found" in capsys.readouterr().err
