"""A fake tool-call expert, registered through the real plugin path (like ``tests/fake_expert.py``).

``FakeToolCaller`` calls the *first* tool it is offered (so it tests that retrieval put the
right tool first) and fills each required argument from the question by a fixed rule: a number
for integer/number parameters, an enum value the question names (else the first), and the
question's last capitalised word for strings. The real models are measured by
``benchmarks/tools_at_scale.py``; this one makes the plumbing tests deterministic and instant.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from grounded.config import ExpertSpec
from grounded.experts import registry
from grounded.experts.base import FunctionSchema, Generation, JsonGeneration, Message, ToolCallRequest, ToolCalls
from tests.fake_expert import FakeGenerator

OFFERED: list[list[str]] = []


def fill(question: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments for ``schema``'s required properties, read from ``question`` (see the docstring)."""
    out: dict[str, Any] = {}
    numbers = re.findall(r"\b\d+(?:\.\d+)?\b", question)
    words = re.findall(r"\b[A-Z][A-Za-z]+\b", question)
    for name in schema.get("required", []):
        prop = schema["properties"][name]
        if "enum" in prop:
            out[name] = next((v for v in prop["enum"] if str(v).lower() in question.lower()), prop["enum"][0])
        elif prop.get("type") in ("integer", "number"):
            value = numbers[0] if numbers else "1"
            out[name] = int(float(value)) if prop["type"] == "integer" else float(value)
        else:
            out[name] = words[-1] if words else question
    return out


class FakeToolCaller(FakeGenerator):
    """Calls the first offered tool with arguments read from the last user message; writes
    answers like the fake answer expert."""

    def __init__(self, spec: ExpertSpec) -> None:
        super().__init__(spec)
        self.fingerprint = f"fake-tools:{spec.model}"

    def generate_json(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any],
        *,
        max_tokens: int,
        name: str = "output",
        timeout_s: float | None = None,
    ) -> JsonGeneration:
        raise NotImplementedError("the fake tool caller only makes tool calls")

    def generate_tool_calls(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionSchema],
        *,
        max_calls: int,
        max_tokens: int,
        timeout_s: float | None = None,
    ) -> ToolCalls:
        OFFERED.append([t.name for t in tools])
        question = messages[-1].content
        first = tools[0]
        call = ToolCallRequest(first.name, fill(question, first.parameters))
        return ToolCalls((call,), Generation("", 20, 10, 0.0, 0.0))


@pytest.fixture(scope="session")
def fake_tools_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Install the ``fake-tools`` backend as a plugin distribution on sys.path; yields its name."""
    site = tmp_path_factory.mktemp("tools-plugin-site")
    dist = site / "grounded_fake_tool_expert-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: grounded-fake-tool-expert\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[grounded.experts]\nfake-tools = tests.fake_tool_expert:FakeToolCaller\n")
    sys.path.insert(0, str(site))
    registry.clear()
    try:
        yield "fake-tools"
    finally:
        sys.path.remove(str(site))
        registry.clear()
