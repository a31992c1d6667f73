"""``grounded keys create | list | revoke``: API keys of the REST API (hashed at rest)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from grounded.cli.app import KBOption, app, console, handle_errors, knowledge_base

keys_app = typer.Typer(
    help="API keys: each maps a caller to ACL groups (and maybe admin rights).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")


def _store(kb: object) -> object:
    from grounded.ops.keys import KEYS_FILE, KeyStore

    knowledge = knowledge_base(kb, create=True)  # type: ignore[arg-type]
    return KeyStore(knowledge.path / KEYS_FILE)


@keys_app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Option(help="Who or what uses the key (shown in `keys list` and logs).")],
    groups: Annotated[str, typer.Option(help="Comma-separated ACL groups the key may read, e.g. staff,eng.")] = "",
    admin: Annotated[bool, typer.Option(help="May read everything and use the admin routes.")] = False,
    kb: KBOption = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from grounded.ops.keys import KeyStore

    store = _store(kb)
    assert isinstance(store, KeyStore)
    token, record = store.create(name, groups=[g for g in groups.split(",") if g.strip()], admin=admin)
    console.print(token, highlight=False, soft_wrap=True)
    role = "admin" if record.admin else f"groups: {', '.join(record.groups) or '(none: only unrestricted sources)'}"
    typer.echo(f"key id {record.id} for {record.name!r} ({role}); store the key now, it is not shown again", err=True)


@keys_app.command("list")
@handle_errors
def list_keys(
    kb: KBOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List keys (ids, names, groups, admin, created, revoked); secrets are never shown."""
    from dataclasses import asdict

    from grounded.ops.keys import KeyStore

    store = _store(kb)
    assert isinstance(store, KeyStore)
    found = store.list()
    if as_json:
        typer.echo(json.dumps([asdict(k) for k in found], indent=2))
        return
    for k in found:
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        console.print(
            f"{k.id}  {k.name}  {'admin' if k.admin else ','.join(k.groups) or '-'}  created {k.created_at}  {state}",
            highlight=False,
        )


@keys_app.command("revoke")
@handle_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `grounded keys list`).")], kb: KBOption = None
) -> None:
    """Revoke a key; it stops working at once in every server process."""
    from grounded.ops.keys import KeyStore

    store = _store(kb)
    assert isinstance(store, KeyStore)
    record = store.revoke(key_id)
    console.print(f"revoked {record.id} ({record.name})", highlight=False)
