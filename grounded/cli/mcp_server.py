"""``grounded mcp``: the knowledge base as an MCP server over stdio, for a local agent."""

from __future__ import annotations

from typing import Annotated

import typer

from grounded.cli.app import KBOption, app, fail, handle_errors, knowledge_base


@app.command("mcp")
@handle_errors
def mcp_command(
    kb: KBOption = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="GROUNDED_API_KEY",
            show_envvar=True,
            help="API key whose groups this server answers for (needed once keys exist; see `grounded keys`).",
        ),
    ] = None,
) -> None:
    """Serve the MCP tools search, ask, sql and sources over stdin/stdout.

    Start it from an MCP client's configuration, e.g. {"command": "grounded", "args": ["mcp",
    "--kb", "/srv/kb"], "env": {"GROUNDED_API_KEY": "gk_..."}}. Answers come from what the key
    may read, exactly as over the REST API; the key is checked again on every call, so revoking
    it stops the server's answers. Logs go to stderr; stdout carries only the protocol.
    """
    import anyio

    from grounded.access import Principal
    from grounded.api.mcp import build_server
    from grounded.errors import Unauthorized
    from grounded.ops.keys import KEYS_FILE, KeyStore
    from grounded.ops.logs import configure_logging

    knowledge = knowledge_base(kb, create=False)
    configure_logging(knowledge.settings.server.log_format)
    keys = KeyStore(knowledge.path / KEYS_FILE)
    try:
        keys.authenticate(key)  # fail at start, not on the agent's first call
    except Unauthorized as exc:
        hint = "pass --key gk_... or set GROUNDED_API_KEY" if not key else "create one with `grounded keys create`"
        raise fail(f"{exc} ({hint})", code=2) from None

    def caller() -> Principal:
        return keys.authenticate(key)

    if knowledge.version is not None:
        knowledge.snapshot()
        knowledge.embedder.embed_query("warm up")  # the first call should not wait for the model
    anyio.run(build_server(knowledge, principal=caller).run_stdio_async)
