"""The notebooks run top to bottom without an error, within a time limit, on small data.

Each notebook is executed by ``nbclient`` in a fresh kernel of this virtual environment, from
the ``notebooks/`` folder (as ``make notebook`` opens it); any cell that raises fails the test,
and so does a cell running past ``CELL_TIMEOUT_S`` or a notebook past its pytest timeout.
``01_explore`` is pointed at the session's small knowledge base (``GROUNDED_KB``) instead of
building the demo one, with the answer cache off so that knowledge base is left as it was;
``02_evaluate`` runs on an even smaller slice than its defaults (same code path).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_S = 300
"""Longest any one cell may run (the first ``kb.ask`` loads the answer model)."""
EVAL_SLICE = {
    "GROUNDED_EVAL_QUERIES": "10",
    "GROUNDED_EVAL_DISTRACTORS": "30",
    "GROUNDED_EVAL_QUESTIONS": "4",
    "GROUNDED_EVAL_ASK": "1",
    "GROUNDED_EVAL_OPTIMIZE": "2",  # two of each kind: the fewest a search splits (it holds one of each back)
}


def _execute(name: str, env: dict[str, str]) -> tuple[Any, float]:
    """Run notebook ``name`` with ``env`` added to the kernel's environment; (notebook, seconds)."""
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core warns about its old paths otherwise
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:
        assert not cell.get("outputs"), f"{name} is committed with outputs; clear them"
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment at launch
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return notebook, time.perf_counter() - started


def _outputs(notebook: Any, mime: str) -> list[str]:
    return [
        str(out["data"][mime])
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if mime in out.get("data", {})
    ]


@pytest.mark.timeout(600)
def test_explore_notebook(built_kb_path: Path) -> None:
    notebook, took = _execute(
        "01_explore.ipynb", {"GROUNDED_KB": str(built_kb_path), "GROUNDED_ANSWER__CACHE": "false"}
    )
    html = "\n".join(_outputs(notebook, "text/html"))
    assert "class='gr'" in html  # rich display, not the plain repr
    assert "<mark" in html  # query words or cited spans highlighted
    assert "Abstained:" in html  # the off-topic question
    text = "\n".join(_outputs(notebook, "text/plain")) + "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    assert "refused: DELETE FROM documents" in text
    print(f"01_explore ran in {took:.1f} s")


@pytest.mark.timeout(600)
def test_evaluate_notebook() -> None:
    notebook, took = _execute("02_evaluate.ipynb", EVAL_SLICE)
    data, benchmarks = NOTEBOOKS.parent.parent / "shared" / "data", NOTEBOOKS.parent / "benchmarks"
    # Each part needs its data set and the benchmark module it runs.
    scifact = (data / "scifact" / "corpus.jsonl").exists() and (benchmarks / "beir_eval.py").exists()
    clapnq = (data / "clapnq" / "derived_dev_passages.jsonl").exists() and (benchmarks / "answers.py").exists()
    # nDCG by method, the answer/abstention sweep, the latency histograms (when anything ran),
    # and the optimize section's quality-vs-p50 scatter (ClapNQ questions are its workload)
    assert len(_outputs(notebook, "image/png")) == scifact + 2 * clapnq + (scifact or clapnq)
    if not (scifact or clapnq):
        printed = "".join(out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", []))
        assert "nothing to evaluate" in printed
    print(f"02_evaluate ran in {took:.1f} s")
