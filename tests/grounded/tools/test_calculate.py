"""The calculator: exact arithmetic without eval."""

from __future__ import annotations

import pytest

from grounded.tools import ToolContext, get_tool
from grounded.tools.calculate import evaluate, format_number


@pytest.mark.parametrize(
    ("expression", "value"),
    [("1 + 2 * 3", 7), ("(709037 - 291940) / 291940 * 100", 142.8708638761389), ("2^10", 1024), ("avg(1, 2, 6)", 3)],
)
def test_arithmetic(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('id')", "open('/etc/passwd')", "x + 1", "(1).real", "9 ** 999999", "1 / 0", "'a' * 3",
     "[1] * 10", "lambda: 1", "10 ** 99 * 10 ** 99"],
)  # fmt: skip
def test_everything_else_is_refused(expression: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        evaluate(expression)
    result = get_tool("calculate").call({"expression": expression}, ToolContext())
    assert result.refused


def test_numbers_are_written_exactly() -> None:
    assert format_number(3.0) == "3"
    assert format_number(0.1 + 0.2) == "0.3"
    assert get_tool("calculate").call({"expression": "12 * 12"}, ToolContext()).text == "12 * 12 = 144."
