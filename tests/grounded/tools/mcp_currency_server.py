"""A small MCP server written with the official SDK, for the tests: ``convert_currency``.

``python mcp_currency_server.py`` serves over stdio; ``... http PORT`` over streamable HTTP.
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

RATES = {"USD": 1.08, "NOK": 11.52, "GBP": 0.85}

server = MCPServer("currency")


@server.tool()
def convert_currency(amount: float, currency: str) -> str:
    """Convert an amount of euros into another currency (USD, NOK, GBP) at today's exchange rate."""
    rate = RATES.get(currency.upper())
    if rate is None:
        raise ToolError(f"unknown currency {currency!r}; known: {', '.join(RATES)}")
    return f"{amount:g} EUR is {amount * rate:.2f} {currency.upper()} at the exchange rate {rate}."


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
