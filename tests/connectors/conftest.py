"""Fixtures for connector tests: real PostgreSQL and MariaDB databases, and a KB without a model.

Each database fixture creates a uniquely named database and drops it afterwards. When a server
cannot be reached the test is skipped with the reason, unless in CI (``tests/ci.py``: then it fails).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers in dbkit.py, for tests and subprocesses

from dbkit import MY, PG, make_kb, unavailable

from grounded.kb import KnowledgeBase
from tests.ci import import_or_skip


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    return make_kb(tmp_path / "kb")


@pytest.fixture
def pg_db() -> Iterator[dict[str, Any]]:
    """A fresh PostgreSQL database; yields connector params (host, port, user, database)."""
    psycopg = import_or_skip("psycopg", "pip install -e '.[dev]'")
    name = f"grounded_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(dbname="test", autocommit=True, connect_timeout=5, **PG)
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL on 127.0.0.1:5432", exc)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {**PG, "database": name}
    finally:
        with psycopg.connect(dbname="test", autocommit=True, **PG) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def my_db() -> Iterator[dict[str, Any]]:
    """A fresh MariaDB database; yields connector params."""
    pymysql = import_or_skip("pymysql", "pip install -e '.[dev]'")
    name = f"grounded_t_{uuid.uuid4().hex[:10]}"
    try:
        admin = pymysql.connect(connect_timeout=5, **MY)
    except pymysql.err.OperationalError as exc:
        unavailable("MariaDB on 127.0.0.1:3306", exc)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        yield {**MY, "database": name}
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture
def api() -> Iterator[Any]:
    """An HTTP server on 127.0.0.1 (a random port) serving scripted JSON."""
    from apiserver import APIServer

    server = APIServer()
    yield server
    server.close()
