"""``grounded tools list | show | call``: the tools the grounding layer may call, and a way to try one."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from grounded.cli.app import KBOption, app, console, fail, handle_errors

tools_app = typer.Typer(
    help="Tools: built-ins, plugins and the operations of configured OpenAPI documents and MCP servers.",
    no_args_is_help=True,
)
app.add_typer(tools_app, name="tools")

GroupsOption = Annotated[
    str | None,
    typer.Option(
        "--groups", help="Act as a caller of these comma-separated ACL groups (default: the operator, all tools)."
    ),
]


def _groups(groups: str | None) -> tuple[str, ...] | None:
    return None if groups is None else tuple(g.strip() for g in groups.split(",") if g.strip())


def _catalog() -> object:
    from grounded.config import load_settings
    from grounded.tools.catalog import ToolCatalog

    return ToolCatalog(load_settings())


@tools_app.command("list")
@handle_errors
def list_tools(
    groups: GroupsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the tools (name, source, groups, description) and any tool source that failed to load."""
    from grounded.tools.catalog import ToolCatalog

    catalog = _catalog()
    assert isinstance(catalog, ToolCatalog)
    try:
        tools = catalog.allowed(_groups(groups))
        rows = [
            {
                "name": name,
                "source": tool.source or "built-in",
                "groups": list(catalog.groups.get(name, ())),
                "description": tool.description.splitlines()[0] if tool.description else "",
            }
            for name, tool in tools.items()
        ]
        if as_json:
            typer.echo(json.dumps({"tools": rows, "errors": catalog.errors}, indent=2))
            return
        for row in rows:
            groups_text = ",".join(row["groups"]) or "everyone"
            console.print(
                f"[bold]{row['name']}[/bold]  ({row['source']}; {groups_text})  {row['description'][:100]}",
                highlight=False,
            )
        for source, error in catalog.errors.items():
            typer.echo(f"not loaded: {source}: {error}", err=True)
    finally:
        catalog.close()


@tools_app.command("show")
@handle_errors
def show(name: Annotated[str, typer.Argument(help="The tool's name.")], groups: GroupsOption = None) -> None:
    """Print one tool as a model sees it (OpenAI ``tools`` format) with its source and groups."""
    from grounded.tools.catalog import ToolCatalog

    catalog = _catalog()
    assert isinstance(catalog, ToolCatalog)
    try:
        tool = catalog.get(name, _groups(groups))
        out = {**tool.spec.openai(), "source": tool.source or "built-in", "groups": list(catalog.groups.get(name, ()))}
        typer.echo(json.dumps(out, indent=2))
    finally:
        catalog.close()


@tools_app.command("call")
@handle_errors
def call(
    name: Annotated[str, typer.Argument(help="The tool's name.")],
    arguments: Annotated[str, typer.Argument(help="Arguments as a JSON object, e.g. '{\"petId\": 1}'.")] = "{}",
    groups: GroupsOption = None,
    kb: KBOption = None,
) -> None:
    """Call one tool with JSON arguments (validated against its schema first) and print the result."""
    from grounded.cli.app import knowledge_base
    from grounded.errors import NoPublishedVersion
    from grounded.tools import ToolContext
    from grounded.tools.catalog import ToolCatalog

    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise fail(f"arguments are not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise fail(f"arguments must be a JSON object; got {arguments!r}")
    catalog = _catalog()
    assert isinstance(catalog, ToolCatalog)
    try:
        tool = catalog.get(name, _groups(groups))
        view = None
        if tool.source == "" and name in ("search", "lookup", "sql", "api"):
            try:
                view = knowledge_base(kb).store.view(acl_groups=_groups(groups))
            except NoPublishedVersion:
                view = None
        result = tool.call(parsed, ToolContext(view=view))
        payload = {
            "ok": result.ok,
            "refused": result.refused,
            "error": result.error,
            "text": result.text,
            "provenance": dict(result.provenance),
        }
        typer.echo(json.dumps(payload, indent=2, default=str))
        if not result.ok:
            raise typer.Exit(1)
    finally:
        catalog.close()
