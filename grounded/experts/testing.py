"""A contract test suite every expert backend's tests reuse, built-in or third-party.

Subclass :class:`ExpertContract` in a pytest module and provide an ``expert`` fixture (a
generator with a real model behind it); set ``entry_point`` to the backend's name in the
``grounded.experts`` group. The cases: text generation, greedy determinism, the ``max_tokens``
cut-off reported as ``finish_reason="length"``, a deadline that has passed, and, where the
backend offers them, JSON-schema output and tool calls (:class:`StructuredGenerator`) and
decoding under a grammar (:class:`GrammarGenerator`); a backend without them skips those cases::

    from grounded.experts.testing import ExpertContract

    class TestMyBackend(ExpertContract):
        entry_point = "my-backend"

        @pytest.fixture
        def expert(self, my_generator):  # a module- or session-scoped fixture loads the model once
            return my_generator

The prompts are chosen so that a 135M-parameter model passes: what is checked is the backend
(its token accounting, constraints and determinism), not the model's knowledge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jsonschema
import pytest

from grounded.errors import ExpertError, ExpertTimeout
from grounded.experts.base import GrammarGenerator, Message, StructuredGenerator, TextGenerator

__all__ = ["ExpertContract"]


@dataclass(frozen=True, slots=True)
class _Function:
    """A function shown to the model (:class:`~grounded.experts.base.FunctionSchema`)."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)


SEARCH = _Function(
    "search",
    "Search the knowledge base for passages about a topic.",
    {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 200},
            "k": {"type": "integer", "minimum": 1, "maximum": 20},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
)
CALCULATE = _Function(
    "calculate",
    "Evaluate an arithmetic expression.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 200}},
        "required": ["expression"],
        "additionalProperties": False,
    },
)
# A small SQL grammar over one table (GBNF, as text-to-SQL's grammar of the linked tables is) and
# the same language as a regular expression, to check what was decoded under it.
SQL_GRAMMAR = r"""
root ::= "SELECT " select " FROM geo.state" where? order? limit?
select ::= column | "MAX(" column ")" | "MIN(" column ")" | "COUNT(*)"
column ::= "state_name" | "population" | "area"
where ::= " WHERE " column " " ("=" | ">" | "<") " " value
value ::= [0-9]{1,9} | "'" [a-z ]{1,20} "'"
order ::= " ORDER BY " column (" DESC" | " ASC")?
limit ::= " LIMIT " [1-9]
"""
_COLUMN = "(?:state_name|population|area)"
SQL_LANGUAGE = re.compile(
    rf"SELECT (?:{_COLUMN}|MAX\({_COLUMN}\)|MIN\({_COLUMN}\)|COUNT\(\*\)) FROM geo\.state"
    rf"(?: WHERE {_COLUMN} [=<>] (?:[0-9]{{1,9}}|'[a-z ]{{1,20}}'))?(?: ORDER BY {_COLUMN}(?: DESC| ASC)?)?(?: LIMIT [1-9])?"
)

GREETING = [Message("system", "You are a helpful assistant."), Message("user", "Say hello in one short sentence.")]
COUNTING = [Message("user", "Count from 1 to 100, separated by commas.")]
VERDICT = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["yes", "no"]},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 9},
        "reason": {"type": "string", "minLength": 1, "maxLength": 40},
    },
    "required": ["verdict", "confidence", "reason"],
    "additionalProperties": False,
}


class ExpertContract:
    """What every expert backend must do; see the module docstring."""

    entry_point: ClassVar[str | None] = None
    """The backend's name in the ``grounded.experts`` entry-point group, if registered."""

    def test_is_a_text_generator_with_a_fingerprint(self, expert: TextGenerator) -> None:
        assert isinstance(expert, TextGenerator)
        assert isinstance(expert.fingerprint, str)
        assert expert.fingerprint, "the fingerprint names the model; the answer cache keys on it"

    def test_is_registered(self, expert: TextGenerator) -> None:
        if self.entry_point is None:
            pytest.skip("no entry point declared for this backend")
        from grounded.experts.registry import backend_factory

        assert backend_factory(self.entry_point) is type(expert)

    def test_generates_text_and_counts_its_tokens(self, expert: TextGenerator) -> None:
        out = expert.generate(GREETING, max_tokens=24)
        assert out.text.strip(), "a greeting was asked for; nothing came back"
        assert out.text == out.text.strip()
        assert out.prompt_tokens > len(GREETING), "the prompt has more tokens than messages"
        assert 1 <= out.completion_tokens <= 24
        assert out.finish_reason in ("stop", "length")
        assert out.prefill_s >= 0
        assert out.decode_s >= 0

    def test_greedy_decoding_is_deterministic(self, expert: TextGenerator) -> None:
        first = expert.generate(GREETING, max_tokens=24)
        second = expert.generate(GREETING, max_tokens=24)
        assert (first.text, first.completion_tokens, first.finish_reason) == (
            second.text,
            second.completion_tokens,
            second.finish_reason,
        )

    def test_a_max_tokens_cut_off_is_reported(self, expert: TextGenerator) -> None:
        out = expert.generate(COUNTING, max_tokens=6)
        assert out.finish_reason == "length", f"100 numbers do not fit in 6 tokens: {out.text!r}"
        assert out.completion_tokens == 6
        whole = expert.generate(GREETING, max_tokens=64)
        assert whole.finish_reason == "stop", f"a greeting fits in 64 tokens: {whole.text!r}"
        assert whole.completion_tokens < 64

    def test_stop_strings_end_the_text(self, expert: TextGenerator) -> None:
        out = expert.generate(COUNTING, max_tokens=48, stop=["5"])
        assert "5" not in out.text, out.text
        assert out.text, "the numbers before 5 are kept"

    def test_a_passed_deadline_is_an_expert_timeout(self, expert: TextGenerator) -> None:
        with pytest.raises(ExpertTimeout):
            expert.generate(COUNTING, max_tokens=64, timeout_s=1e-6)

    # -- structured output ----------------------------------------------------------------------------

    def _structured(self, expert: TextGenerator) -> StructuredGenerator:
        if not isinstance(expert, StructuredGenerator):
            pytest.skip(f"{type(expert).__name__} offers no JSON-schema output")
        return expert

    def test_json_output_matches_its_schema(self, expert: TextGenerator) -> None:
        structured = self._structured(expert)
        messages = [Message("user", "Is Paris in France? Answer as JSON with a verdict, a confidence and a reason.")]
        out = structured.generate_json(messages, VERDICT, max_tokens=48, name="verdict")
        jsonschema.validate(out.value, VERDICT)
        assert out.generation.finish_reason == "stop"
        again = structured.generate_json(messages, VERDICT, max_tokens=48, name="verdict")
        assert again.value == out.value

    def test_json_cut_off_by_max_tokens_is_an_expert_error(self, expert: TextGenerator) -> None:
        structured = self._structured(expert)
        messages = [Message("user", "Is Paris in France? Answer as JSON.")]
        with pytest.raises(ExpertError, match="cut off by max_tokens"):
            structured.generate_json(messages, VERDICT, max_tokens=3, name="verdict")

    def test_tool_calls_match_their_tools_schemas(self, expert: TextGenerator) -> None:
        structured = self._structured(expert)
        messages = [
            Message("system", "Choose the tool calls that answer the question."),
            Message("user", "What is the population of Ohio?"),
        ]
        offered = {f.name: f for f in (SEARCH, CALCULATE)}
        out = structured.generate_tool_calls(messages, list(offered.values()), max_calls=2, max_tokens=128)
        assert 1 <= len(out.calls) <= 2
        for call in out.calls:
            jsonschema.validate(dict(call.arguments), offered[call.name].parameters)

    # -- grammar --------------------------------------------------------------------------------------

    def test_sql_under_a_grammar_is_a_string_of_the_grammar(self, expert: TextGenerator) -> None:
        if not isinstance(expert, GrammarGenerator):
            pytest.skip(f"{type(expert).__name__} cannot decode under a grammar")
        messages = [
            Message("system", "Write one SQL SELECT over geo.state(state_name, population, area)."),
            Message("user", "Which state has the largest area?"),
        ]
        outs: list[Any] = [expert.generate_grammar(messages, SQL_GRAMMAR, max_tokens=48) for _ in range(2)]
        for out in outs:
            assert out.finish_reason == "stop", f"a query of this grammar fits in 48 tokens: {out.text!r}"
            assert SQL_LANGUAGE.fullmatch(out.text), out.text
        assert outs[0].text == outs[1].text
