"""MySQL/MariaDB connector against the real MariaDB server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dbkit import mirror_rows, my_exec

from connectors.mysql import MySQLConfig, MySQLConnector
from connectors.testing import ConnectorContract
from grounded.errors import FatalConnectorError
from grounded.kb import KnowledgeBase

pytestmark = pytest.mark.integration

PEOPLE = """
CREATE TABLE people (
    id INT UNSIGNED PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    bio TEXT,
    score DECIMAL(8,3),
    active TINYINT(1),
    kind ENUM('a','b'),
    flags BIT(8),
    photo BLOB,
    born DATE,
    modified DATETIME(6) NOT NULL
)
"""
ROWS = [
    (i, f"person {i}", f"bio of {i}", i / 8, i % 2, "a", i, b"\x00\x01", f"2000-01-{i % 28 + 1:02d}",
     f"2024-05-01 10:{i // 60:02d}:{i % 60:02d}")
    for i in range(1, 41)
]  # fmt: skip


def setup_people(db: dict[str, Any]) -> None:
    my_exec(db, PEOPLE)
    my_exec(db, "INSERT INTO people VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows=ROWS)


def people(db: dict[str, Any], **table: Any) -> MySQLConnector:
    tables = [{"name": "people", "cursor_column": "modified", **table}]
    return MySQLConnector(MySQLConfig(**db, tables=tables, page_size=6))


class TestMySQLContract(ConnectorContract):
    entry_point = "mysql"

    @pytest.fixture
    def connector(self, my_db: dict[str, Any]) -> MySQLConnector:
        setup_people(my_db)
        return people(my_db, document={"title": "{name}", "columns": ["name", "bio"]})

    @pytest.fixture
    def failing_connector(self, my_db: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[MySQLConnector]:
        user = f"u_{my_db['database'][-8:]}"
        my_exec(my_db, f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-password'",
                f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right-password'")  # fmt: skip
        monkeypatch.setenv("GROUNDED_TEST_MY_PW", "wrong-password")
        yield MySQLConnector(
            MySQLConfig(**{**my_db, "user": user}, password_env="GROUNDED_TEST_MY_PW", tables=[{"name": "people"}])
        )
        my_exec(my_db, f"DROP USER '{user}'@'%'", f"DROP USER '{user}'@'localhost'")


def test_wrong_password_names_the_variable(my_db: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    user = f"u_{my_db['database'][-8:]}"
    my_exec(my_db, f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'right'",
            f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right'")  # fmt: skip
    try:
        monkeypatch.setenv("CRM_PW", "wrong")
        src = MySQLConnector(MySQLConfig(**{**my_db, "user": user}, password_env="CRM_PW", tables=[{"name": "t"}]))
        with pytest.raises(
            FatalConnectorError, match=r"login failed .*check user and the password in \$CRM_PW"
        ) as info:
            src.check()
        assert "wrong" not in str(info.value).replace("wrong-", "")  # the secret is never in the message
    finally:
        my_exec(my_db, f"DROP USER '{user}'@'localhost'", f"DROP USER '{user}'@'%'")


def test_mirror_types_incremental_and_deletions(my_db: dict[str, Any], kb: KnowledgeBase) -> None:
    setup_people(my_db)
    src = people(my_db, document={"title": "{name}", "text": "{name}: {bio}"})
    first = kb.sync("crm", src)
    assert (first.rows_upserted, first.documents_added) == (40, 40)
    types = dict(mirror_rows(kb, "SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_schema = 'crm' AND table_name = 'people'"))  # fmt: skip
    assert types == {
        "id": "UINTEGER", "name": "VARCHAR", "bio": "VARCHAR", "score": "DECIMAL(8,3)", "active": "BOOLEAN",
        "kind": "VARCHAR", "flags": "UBIGINT", "photo": "BLOB", "born": "DATE", "modified": "TIMESTAMP",
    }  # fmt: skip
    assert mirror_rows(kb, "SELECT score::VARCHAR, active, flags FROM crm.people WHERE id = 3") == [("0.375", True, 3)]

    my_exec(my_db, "UPDATE people SET bio = 'moved', modified = '2025-01-01 00:00:00' WHERE id = 4",
            "DELETE FROM people WHERE id IN (10, 11)")  # fmt: skip
    second = kb.sync("crm", src)
    assert (second.rows_upserted, second.rows_deleted, second.documents_updated, second.documents_deleted) == (
        1,
        2,
        1,
        2,
    )
    assert mirror_rows(kb, "SELECT count(*) FROM crm.people") == [(38,)]
    assert mirror_rows(kb, "SELECT bio FROM crm.people WHERE id = 4") == [("moved",)]


def test_unknown_host_missing_table_unmappable(my_db: dict[str, Any]) -> None:
    host = MySQLConnector(MySQLConfig(**{**my_db, "host": "no-such-host.invalid"}, tables=[{"name": "t"}]))
    with pytest.raises(FatalConnectorError, match=r"unknown host 'no-such-host\.invalid'"):
        host.check()
    missing = MySQLConnector(MySQLConfig(**my_db, tables=[{"name": "nope"}]))
    with pytest.raises(FatalConnectorError, match="table 'nope' does not exist in mysql://"):
        missing.check()
    my_exec(my_db, "CREATE TABLE shapes (id INT PRIMARY KEY, area POLYGON)")
    shapes = MySQLConnector(MySQLConfig(**my_db, tables=[{"name": "shapes"}]))
    with pytest.raises(FatalConnectorError, match=r"column 'area' .* type 'polygon'"):
        shapes.check()
