"""Every Python example of docs/integrations.md runs against a real server and prints something."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integrations.conftest import need

PAGE = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"
EXAMPLES = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.S | re.M)
EXTRAS = {"langchain": ("langchain_core", "langchain"), "llama_index": ("llama_index.core", "llamaindex")}


def test_the_page_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("number", range(len(EXAMPLES)))
def test_example_runs(
    number: int, url: str, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = EXAMPLES[number]
    for marker, (module, extra) in EXTRAS.items():
        if f"from {marker}" in code or f"import {marker}" in code:
            need(module, extra)
    monkeypatch.setenv("GROUNDED_API_KEY", tokens["staff"])
    exec(compile(code.replace("http://127.0.0.1:8000", url), f"{PAGE.name} example {number + 1}", "exec"), {})
    printed = capsys.readouterr().out
    print(printed)  # shown by `pytest -rP`
    assert printed.strip(), "the example printed nothing"
    assert "Traceback" not in printed
