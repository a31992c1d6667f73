"""Tools the grounding layer calls before the answer expert writes: search, sql, lookup, api,
calculate, and any tool a plugin or a ``@tool`` function adds.

Example::

    from grounded.tools import ToolContext, get_tool, tool

    @tool
    def days_between(a: str, b: str) -> str:
        "Days between two ISO dates."
        ...

    result = get_tool("sql").call({"query": "SELECT count(*) FROM geo.state"}, ToolContext(view=kb.store.view()))
"""

from grounded.tools.base import AnyTool, Params, Tool, ToolContext, ToolResult, ToolSpec
from grounded.tools.registry import FunctionTool, get_tool, load_tools, register, tool, unregister

__all__ = [
    "AnyTool",
    "FunctionTool",
    "Params",
    "Tool",
    "ToolContext",
    "ToolResult",
    "ToolSpec",
    "get_tool",
    "load_tools",
    "register",
    "tool",
    "unregister",
]
