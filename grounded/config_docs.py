"""The configuration reference, rendered from the settings' own field descriptions.

``docs/configuration.md`` holds a reference part between two markers; this module writes it
from :class:`grounded.config.Settings` (every key, its type and limits, default, environment
variable and description), so the page cannot drift from the code. ``make docs`` rewrites it,
and a test fails when the page is not current.

    python -m grounded.config_docs            # rewrite the reference in docs/configuration.md
    python -m grounded.config_docs --check    # exit 1 (and say what to run) when it is stale

Example::

    from grounded.config_docs import render_reference
    print(render_reference())                 # Markdown: one table per [section]
"""

from __future__ import annotations

import argparse
import sys
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from grounded.config import Settings

__all__ = ["BEGIN", "DOCS_PATH", "END", "Row", "Section", "check", "main", "render_reference", "sections", "update"]

BEGIN = "<!-- BEGIN GENERATED: configuration reference (edit grounded/config.py, then run `make docs`) -->"
END = "<!-- END GENERATED: configuration reference -->"
DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
ENV_PREFIX = "GROUNDED_"

PLACEHOLDERS = {"experts": "task", "sources": "name"}
"""Name of the placeholder for a section whose key is chosen by the user (``[sources.<name>]``)
or shared by several fields of one model (``[experts.<task>]``)."""


@dataclass(frozen=True, slots=True)
class Row:
    """One setting: its dotted key, type, default, environment variable and description."""

    key: str
    type: str
    default: str
    env: str
    description: str


@dataclass(frozen=True, slots=True)
class Section:
    """One TOML table of settings (``[search]``), or the top level (``title == ""``)."""

    title: str
    intro: str
    rows: tuple[Row, ...]


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The settings model a field holds, and how: ``"model"``, ``"optional"``, ``"mapping"`` or ``""``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, "model"
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1 and type(None) in args:
            return models[0], "optional"
    if get_origin(annotation) is dict and len(args) == 2:
        value = args[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value, "mapping"
    return None, ""


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "unset"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or unset" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}s" if args else "list"
    if origin is dict:
        return "table"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    names = {str: "string", int: "int", float: "float", bool: "bool", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _limits(info: FieldInfo) -> str:
    """``≥ 1, ≤ 100`` from the field's constraints (empty when it has none)."""
    marks = (
        (annotated_types.Ge, "ge", "≥"),
        (annotated_types.Gt, "gt", ">"),
        (annotated_types.Le, "le", "≤"),
        (annotated_types.Lt, "lt", "<"),
    )
    return ", ".join(
        f"{sign} {getattr(meta, attr)}" for meta in info.metadata for cls, attr, sign in marks if isinstance(meta, cls)
    )


def _toml(value: Any) -> str:
    """A default as it would be written in ``grounded.toml``."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str | Path):
        return f'`"{value}"`'
    if isinstance(value, int | float):
        return f"`{value}`"
    if isinstance(value, list | tuple):
        return "`[" + ", ".join(_toml(v).strip("`") for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    if isinstance(value, BaseModel):
        return "the table below"
    return f"`{value!r}`"


def _default(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    return _toml(info.get_default(call_default_factory=True))


def _text(description: str | None) -> str:
    """One line for a table cell: ``|`` escaped, and ``<`` ``>`` outside code spans too (not HTML)."""
    parts = " ".join((description or "").split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):  # even parts are outside backticks
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _env(path: Sequence[str]) -> str:
    parts = [f"<{p[1:-1].upper()}>" if p.startswith("<") else p.upper() for p in path]
    return "`" + ENV_PREFIX + "__".join(parts) + "`"


def _key(path: Sequence[str]) -> str:
    return "`" + ".".join(path) + "`"


def sections(model: type[BaseModel] = Settings, path: tuple[str, ...] = (), intro: str = "") -> Iterator[Section]:
    """The reference of ``model`` as sections: its own keys first, then one per nested table."""
    rows: list[Row] = []
    nested: list[tuple[tuple[str, ...], type[BaseModel], str]] = []
    grouped: dict[type[BaseModel], list[str]] = {}
    for name, info in model.model_fields.items():
        inner, how = _model_of(info.annotation)
        if inner is not None:
            grouped.setdefault(inner, []).append(name)
    for name, info in model.model_fields.items():
        inner, how = _model_of(info.annotation)
        field_path = (*path, name)
        if inner is None:
            limits = _limits(info)
            kind = _type_name(info.annotation) + (f" ({limits})" if limits else "")
            # A free-form table (a connector's params) is overridden key by key: ...__PARAMS__HOST.
            env = _env((*field_path, "<key>")) if get_origin(info.annotation) is dict else _env(field_path)
            rows.append(Row(_key(field_path), kind, _default(info), env, _text(info.description)))
            continue
        if how == "mapping":
            nested.append(((*field_path, f"<{PLACEHOLDERS.get(name, 'name')}>"), inner, _text(info.description)))
            continue
        shared = grouped[inner]
        if path and (how == "optional" or len(shared) > 1):
            # A table that may be absent, or one of several of the same kind: listed in its parent.
            kind = "table" + (" or unset" if how == "optional" else "")
            rows.append(Row(_key(field_path), kind, _default(info), _env((*field_path, "…")), _text(info.description)))
        if len(shared) > 1:
            if name == shared[0]:
                placeholder = f"<{PLACEHOLDERS.get(path[-1] if path else name, 'name')}>"
                nested.append(((*path, placeholder), inner, f"One of {', '.join(f'`{s}`' for s in shared)}."))
            continue
        nested.append((field_path, inner, _text(info.description)))
    yield Section(".".join(path), intro, tuple(rows))
    for sub_path, sub_model, sub_intro in nested:
        yield from sections(sub_model, sub_path, sub_intro)


def render_reference(model: type[BaseModel] = Settings) -> str:
    """Markdown: a heading, an intro line and a table per section (the part between the markers)."""
    out: list[str] = []
    for section in sections(model):
        if not section.rows:
            continue
        title = f"`[{section.title}]`" if section.title else "Top level"
        out.append(f"### {title}\n")
        if section.intro:
            out.append(f"{section.intro}\n")
        out.append("| key | type | default | environment variable | description |")
        out.append("| --- | --- | --- | --- | --- |")
        out.extend(f"| {r.key} | {r.type} | {r.default} | {r.env} | {r.description} |" for r in section.rows)
        out.append("")
    return "\n".join(out)


def update(text: str, reference: str | None = None) -> str:
    """``text`` with the part between :data:`BEGIN` and :data:`END` replaced by the reference."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the page lacks the markers {BEGIN!r} ... {END!r}; put them where the reference goes")
    body = render_reference() if reference is None else reference
    return text[: start + len(BEGIN)] + "\n\n" + body + "\n" + text[end:]


def check(path: Path = DOCS_PATH) -> bool:
    """Whether ``path`` holds the current reference."""
    text = path.read_text(encoding="utf-8")
    return update(text) == text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m grounded.config_docs [--check] [--path FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m grounded.config_docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page is not current; write nothing")
    parser.add_argument("--path", type=Path, default=DOCS_PATH, help="the page (default: docs/configuration.md)")
    args = parser.parse_args(argv)
    if not args.path.is_file():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    text = args.path.read_text(encoding="utf-8")
    try:
        current = update(text)
    except ValueError as exc:
        print(f"error: {args.path}: {exc}", file=sys.stderr)
        return 2
    if current == text:
        print(f"{args.path}: the configuration reference is current")
        return 0
    if args.check:
        print(
            f"error: {args.path}: the configuration reference is out of date with grounded/config.py; "
            "run `make docs` and commit the result",
            file=sys.stderr,
        )
        return 1
    args.path.write_text(current, encoding="utf-8")
    print(f"{args.path}: configuration reference rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
