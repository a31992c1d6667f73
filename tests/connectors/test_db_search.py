"""Database rows as users search them: synced from the real servers, embedded by the real encoder.

The other connector tests embed with a hash stand-in (``dbkit.HashEmbedder``) to stay fast; here
rows of PostgreSQL and MariaDB are rendered to documents, embedded with all-MiniLM-L6-v2 (the
default), and found by *meaning*: dense search with questions that share no word with the row
that answers them, then hybrid search through the same view a served question uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dbkit import my_exec, pg_exec

import grounded
from connectors.mysql import MySQLConfig, MySQLConnector
from connectors.postgres import PostgresConfig, PostgresConnector

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = [
    (1, "kettle", "Boils water quickly for tea and coffee."),
    (2, "umbrella", "Keeps you dry when it pours outside."),
    (3, "bicycle", "Two wheels and pedals for riding to work."),
    (4, "blanket", "Soft wool cover that keeps you warm at night."),
]
QUESTIONS = {  # no word in common with the row that answers it
    "something to make a hot drink": "kettle",
    "protection against rain": "umbrella",
    "a way to commute by cycling": "bicycle",
    "what stops me feeling cold in bed": "blanket",
}
DOCUMENT = {"title": "{name}", "text": "{name}: {blurb}"}


def _postgres(db: dict[str, Any]) -> PostgresConnector:
    pg_exec(db, "CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, blurb text NOT NULL)")
    pg_exec(db, "INSERT INTO products VALUES (%s, %s, %s)", rows=ROWS)
    return PostgresConnector(PostgresConfig(**db, tables=[{"name": "products", "document": DOCUMENT}]))


def _mysql(db: dict[str, Any]) -> MySQLConnector:
    my_exec(db, "CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, blurb TEXT NOT NULL)")
    my_exec(db, "INSERT INTO products VALUES (%s, %s, %s)", rows=ROWS)
    return MySQLConnector(MySQLConfig(**db, tables=[{"name": "products", "document": DOCUMENT}]))


@pytest.mark.parametrize("server", ["postgres", "mysql"])
def test_synced_rows_are_found_by_meaning(server: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if server == "postgres":
        connector: Any = _postgres(request.getfixturevalue("pg_db"))
    else:
        connector = _mysql(request.getfixturevalue("my_db"))
    kb = grounded.open(tmp_path / "kb")  # the real embedding model, as configured by default
    stats = kb.sync("shop", connector)
    assert stats.chunks_embedded == len(ROWS)
    for question, name in QUESTIONS.items():
        dense = kb.search(question, k=1, mode="dense")
        assert [h.title for h in dense] == [name], (question, [(h.title, h.score) for h in dense])
        hybrid = kb.search(question, k=2, filters={"source": "shop"})
        assert hybrid[0].title == name, question
        assert hybrid[0].text.startswith(f"{name}: ")
    assert kb.sql("SELECT count(*) AS n FROM shop.products").loc[0, "n"] == len(ROWS)
