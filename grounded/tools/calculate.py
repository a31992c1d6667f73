"""Safe arithmetic: an expression parsed with :mod:`ast` and evaluated node by node, never ``eval``.

Numbers, ``+ - * / // % **`` (small exponents), parentheses, unary minus and a few functions
(``abs``, ``round``, ``min``, ``max``, ``sqrt``, ``log``, ``exp``, ``sum``, ``avg``). Names,
attributes, calls of anything else, strings and huge intermediate values are refused.

    >>> evaluate("(3 + 4) * 2 / 7")
    2.0
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from pydantic import Field

from grounded.tools.base import Params, Tool, ToolContext, ToolResult

__all__ = ["CalculateTool", "evaluate", "format_number"]

MAX_EXPRESSION_CHARS = 500
MAX_MAGNITUDE = 1e100

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _avg(*values: float) -> float:
    return sum(values) / len(values)


_FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "exp": math.exp,
    "sum": lambda *v: sum(v),
    "avg": _avg,
}


def _check(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")  # noqa: TRY004 (a bad expression, not a bad call)
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError("the result is too large")
    return value


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        return _check(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponents above 100 are not allowed")
        return _check(_BINARY[type(node.op)](left, right))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and len(node.args) <= 1000
    ):
        return _check(_FUNCTIONS[node.func.id](*(_eval(a) for a in node.args)))
    raise ValueError(f"{type(node).__name__} is not allowed; use numbers, + - * / // % ** and {sorted(_FUNCTIONS)}")


def evaluate(expression: str) -> float:
    """The value of an arithmetic ``expression``; ``ValueError`` for anything else."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("^", "**").replace(",", ", "), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {expression!r} as arithmetic ({exc.msg})") from exc
    try:
        return _eval(tree)
    except ZeroDivisionError as exc:
        raise ValueError("division by zero") from exc
    except OverflowError as exc:
        raise ValueError("the result is too large") from exc


def format_number(value: float) -> str:
    """A number as evidence writes it: integers without ``.0``, others to 10 significant digits."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.10g}"


class CalculateArguments(Params):
    expression: str = Field(min_length=1, max_length=MAX_EXPRESSION_CHARS, description="e.g. (1200 - 950) / 950 * 100")


class CalculateTool(Tool[CalculateArguments]):
    """Exact arithmetic, so a model never does sums in its head."""

    name = "calculate"
    description = "Evaluate an arithmetic expression (numbers, + - * / // % **, abs, round, min, max, sqrt, avg)."
    Arguments = CalculateArguments

    def run(self, args: CalculateArguments, ctx: ToolContext) -> ToolResult:
        try:
            value = evaluate(args.expression)
        except ValueError as exc:
            return ToolResult.failure(self.name, str(exc), refused=True)
        text = f"{args.expression} = {format_number(value)}."
        return ToolResult(
            self.name, True, text, {"value": value}, {"tool": "calculate", "expression": args.expression}, size=1
        )
