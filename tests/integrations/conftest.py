"""One served knowledge base with two groups, for every channel grounded is reached through.

The Python client, MCP (stdio and streamable HTTP), LangChain and LlamaIndex tests all ask the
same real server (uvicorn on loopback, ``create_app``) over the same knowledge base:

- source ``public`` (no ACL): the Python reference topics ``with`` and ``lambda``;
- source ``secret`` (group ``staff``): one document about Project Nightingale;
- source ``payroll`` (group ``staff``): a mirrored SQLite table ``payroll.salaries``.

Keys: ``staff`` (group staff), ``eng`` (group eng: must never see the secret or the payroll
table), ``admin``. The answer expert is the fake one, registered through the real plugin path:
these tests are about plumbing and access control, not answer quality.

A framework extra that is not installed skips its tests with the install command, except in CI
(``tests/ci.py``), where it fails: CI installs every extra (``make venv``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import grounded
from connectors.files import FilesConfig, FilesConnector
from connectors.registry import build_connector
from grounded.api.app import create_app
from grounded.kb import KnowledgeBase
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.api.serving import serving
from tests.ci import import_or_skip
from tests.conftest import write_topics
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

SECRET_TEXT = (
    "Project Nightingale is the codename of the payroll replacement. "
    "Project Nightingale launches in March 2027 with a budget of four million euros."
)
SECRET_WORDS = ("payroll replacement", "March 2027", "four million", "plan.txt", "91000", "87000")
"""What only group staff may read (the questions themselves name Nightingale and the table)."""
SECRET_QUESTION = "When does Project Nightingale launch?"
# Answered by the fake expert with a whole sentence of the "with" topic; the lambda topic opens with a
# heading and a grammar line, which the fake would copy as a fragment that the verifier rightly drops.
PUBLIC_QUESTION = "What is the with statement used for?"


def need(module: str, extra: str) -> ModuleType:
    """Import ``module`` of an optional extra; skip without it (fail in CI: tests/ci.py)."""
    return import_or_skip(
        module, f"needs grounded[{extra}]: pip install -e '.[{extra}]' (make venv installs it)", module_level=True
    )


def assert_no_secret(text: str) -> None:
    for word in SECRET_WORDS:
        assert word not in text, f"secret text {word!r} leaked: {text[:500]}"


def _config(root: Path, fake: str) -> dict[str, Any]:
    return {
        "experts": {"answer": {"backend": fake, "model": "echo"}},
        "sources": {
            "public": {"type": "files", "params": {"path": str(root / "public")}},
            "secret": {"type": "files", "acl": ["staff"], "params": {"path": str(root / "secret")}},
            "payroll": {
                "type": "sqlite",
                "acl": ["staff"],
                "params": {"path": str(root / "payroll.sqlite"), "tables": [{"name": "salaries"}]},
            },
        },
    }


def _toml(config: dict[str, Any]) -> str:
    """The same settings as grounded.toml, for a ``grounded mcp`` subprocess (flat enough to write by hand)."""
    expert = config["experts"]["answer"]
    lines = ["[experts.answer]", f'backend = "{expert["backend"]}"', f'model = "{expert["model"]}"', ""]
    for name, source in config["sources"].items():
        lines += [
            f"[sources.{name}]",
            f'type = "{source["type"]}"',
            f"acl = {source.get('acl', [])!r}".replace("'", '"'),
        ]
        lines += [f"[sources.{name}.params]", f'path = "{source["params"]["path"]}"']
        for table in source["params"].get("tables", []):
            lines += [f"[[sources.{name}.params.tables]]", f'name = "{table["name"]}"']
        lines.append("")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def acl_kb(tmp_path_factory: pytest.TempPathFactory, fake_backend: str) -> KnowledgeBase:  # noqa: F811
    root = tmp_path_factory.mktemp("channels")
    write_topics(root / "public", ("with", "lambda"))
    (root / "secret").mkdir()
    (root / "secret" / "plan.txt").write_text(SECRET_TEXT, encoding="utf-8")
    con = sqlite3.connect(root / "payroll.sqlite")
    con.executescript(
        "CREATE TABLE salaries (id INTEGER PRIMARY KEY, name TEXT, salary INTEGER);"
        "INSERT INTO salaries VALUES (1, 'Ada', 91000), (2, 'Grace', 87000);"
    )
    con.commit()
    con.close()
    config = _config(root, fake_backend)
    (root / "grounded.toml").write_text(_toml(config), encoding="utf-8")
    kb = grounded.open(root / "kb", **config)
    kb.sync("public", FilesConnector(FilesConfig(path=root / "public")))
    kb.sync("secret", FilesConnector(FilesConfig(path=root / "secret")), acl=["staff"])
    kb.sync("payroll", build_connector("sqlite", config["sources"]["payroll"]["params"]), acl=["staff"])
    return kb


@pytest.fixture(scope="session")
def tokens(acl_kb: KnowledgeBase) -> dict[str, str]:
    keys = KeyStore(acl_kb.path / KEYS_FILE)
    return {
        "staff": keys.create("alice", groups=["staff"])[0],
        "eng": keys.create("bob", groups=["eng"])[0],
        "admin": keys.create("ops", admin=True)[0],
    }


@pytest.fixture(scope="session")
def url(acl_kb: KnowledgeBase, tokens: dict[str, str]) -> Iterator[str]:
    """A real uvicorn server on loopback serving :func:`acl_kb` (REST, OpenAI route and /mcp)."""
    with serving(create_app(acl_kb)) as base:
        yield base
