"""``/mcp`` on the REST API: MCP over streamable HTTP, behind the API's own keys and rate limit.

The endpoint is an ordinary FastAPI route whose only dependency is the one every REST route
uses (:func:`grounded.api.deps.get_principal`): a missing, unknown or revoked key is the same
401 problem+json, a caller over its rate is the same 429, and the principal it yields is what
the MCP tools answer for. The route then hands the untouched ASGI request to the SDK's
streamable HTTP transport.

The transport runs *stateless* with JSON responses: every POST carries a whole exchange, so
``grounded serve --workers N`` needs no session affinity (a stateful session lives in one
worker's memory). DNS-rebinding protection (a Host/Origin allow-list) is off because every
call carries a bearer key a rebinding web page does not have; in local development mode (no
key created yet) the REST API is just as open, and the server says so in its log.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from grounded.api.deps import PrincipalDep
from grounded.api.mcp.server import PRINCIPAL_STATE, build_server
from grounded.kb import KnowledgeBase

__all__ = ["MCP_PATH", "mount"]

MCP_PATH = "/mcp"


class _Handover(Response):
    """A response that lets an ASGI app answer the request itself (the MCP transport)."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__()
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def mount(app: FastAPI, kb: KnowledgeBase) -> MCPServer:
    """Serve ``kb``'s MCP server at ``/mcp`` on ``app``; the app's lifespan must run
    ``server.session_manager.run()`` (``create_app`` does)."""
    server = build_server(kb, refresher=app.state.refresher)
    server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    transport = StreamableHTTPASGIApp(server.session_manager)

    async def mcp_endpoint(request: Request, principal: PrincipalDep) -> Response:
        setattr(request.state, PRINCIPAL_STATE, principal)
        return _Handover(transport)

    app.add_api_route(
        MCP_PATH,
        mcp_endpoint,
        methods=["GET", "POST", "DELETE"],
        include_in_schema=False,
        summary="MCP (streamable HTTP): tools search, ask, sql, sources; resources grounded://doc/{id}",
    )
    app.state.mcp = server
    return server
