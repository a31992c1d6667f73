"""Sync speed, memory and incrementality for the PostgreSQL and MariaDB connectors.

    .venv/bin/python benchmarks/sync.py [--rows 200000] [--small 50000] [--doc-rows 20000] \\
        [--real-embedder] [--json out.json]

For each server: a table of ``--rows`` rows is created in a scratch database, then

1. first sync into an empty KB's DuckDB mirror (rows/s; no documents, so no embedding),
2. peak memory (max RSS of a fresh process doing only the sync) at ``--small`` and ``--rows``
   rows: flat means the larger table does not need more memory,
3. 100 rows updated and 100 deleted, then a re-sync: rows it wrote and deleted, and its time.

Then, on PostgreSQL, the same table with rows rendered into documents (``--doc-rows`` rows):
after updating 100 and deleting 100 rows, how many documents were re-embedded. A deterministic
hash embedder stands in for the model there, so the numbers measure the pipeline, not the model.
``--real-embedder`` keeps the configured embedding model for the table syncs (1-3): a sync that
embeds nothing must not load it (``model loaded`` says whether it did). Scratch databases are
dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MY = {"host": "127.0.0.1", "port": 3306, "user": "root"}


class HashEmbedder:
    """Deterministic vectors from a text hash: the pipeline without the model's cost."""

    fingerprint = "bench-hash-embedder"
    dim = 32

    def __init__(self) -> None:
        self.count = 0

    def embed(self, texts: list[str], *, progress: bool = False, all_cores: bool = False) -> np.ndarray:
        self.count += len(texts)
        rng = np.random.default_rng(len(texts))
        out = rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        for i, text in enumerate(texts):
            out[i, 0] = (hash(text) % 1000) / 1000
        return out / np.linalg.norm(out, axis=1, keepdims=True)


# -- scratch databases ------------------------------------------------------------------------


def create_pg(rows: int) -> dict[str, Any]:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dbname="test", autocommit=True, **PG) as admin:  # type: ignore[arg-type]
        admin.execute(f'CREATE DATABASE "{name}"')
    db = {**PG, "database": name}
    try:
        fill_pg(name, rows)
    except BaseException:
        drop_pg(db)
        raise
    return db


def fill_pg(name: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(dbname=name, **PG) as con:  # type: ignore[arg-type]
        con.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, category text, price numeric(10,2), "
            "qty integer, updated_at timestamptz NOT NULL, description text)"
        )
        con.execute(
            "INSERT INTO items SELECT i, 'item ' || i, 'cat ' || (i %% 50), (i %% 1000) / 10.0, i %% 97, "
            "TIMESTAMPTZ '2024-01-01' + i * interval '1 second', 'A sturdy thing, number ' || i || ', for everyday use.' "
            "FROM generate_series(1, %s) i",
            [rows],
        )
        con.execute("CREATE INDEX ON items (updated_at, id)")


def drop_pg(db: dict[str, Any]) -> None:
    import psycopg

    with psycopg.connect(dbname="test", autocommit=True, **PG) as admin:  # type: ignore[arg-type]
        admin.execute(f'DROP DATABASE IF EXISTS "{db["database"]}" WITH (FORCE)')


def changes(rows: int) -> tuple[list[int], list[int]]:
    """100 ids to update and 100 other ids to delete, spread over the table."""
    step = rows // 100
    return [1 + k * step for k in range(100)], [2 + k * step for k in range(100)]


def change_pg(db: dict[str, Any], rows: int) -> None:
    import psycopg

    updated, deleted = changes(rows)
    with psycopg.connect(dbname=db["database"], **PG) as con:  # type: ignore[arg-type]
        con.execute("UPDATE items SET price = price + 1, updated_at = now() WHERE id = ANY(%s)", [updated])
        con.execute("DELETE FROM items WHERE id = ANY(%s)", [deleted])


def create_my(rows: int) -> dict[str, Any]:
    import pymysql

    name = f"bench_{uuid.uuid4().hex[:8]}"
    con = pymysql.connect(**MY)  # type: ignore[arg-type]
    with con.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    try:
        fill_my(con, name, rows)
    except BaseException:
        drop_my({**MY, "database": name})
        raise
    con.close()
    return {**MY, "database": name}


def fill_my(con: Any, name: str, rows: int) -> None:
    with con.cursor() as cur:
        cur.execute(f"USE `{name}`")
        cur.execute(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, category VARCHAR(40), "
            "price DECIMAL(10,2), qty INT, updated_at DATETIME(6) NOT NULL, description TEXT, "
            "KEY (updated_at, id))"
        )
        # MariaDB's Sequence engine makes the rows on the server.
        cur.execute(
            f"INSERT INTO items SELECT seq, CONCAT('item ', seq), CONCAT('cat ', seq % 50), (seq % 1000) / 10, "
            f"seq % 97, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, "
            f"CONCAT('A sturdy thing, number ', seq, ', for everyday use.') FROM seq_1_to_{rows}"
        )
    con.commit()


def drop_my(db: dict[str, Any]) -> None:
    import pymysql

    con = pymysql.connect(**MY)  # type: ignore[arg-type]
    with con.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db['database']}`")
    con.close()


def change_my(db: dict[str, Any], rows: int) -> None:
    import pymysql

    updated, deleted = changes(rows)
    con = pymysql.connect(**MY, database=db["database"])  # type: ignore[arg-type]
    with con.cursor() as cur:
        cur.execute("UPDATE items SET price = price + 1, updated_at = NOW(6) WHERE id IN %s", [updated])
        cur.execute("DELETE FROM items WHERE id IN %s", [deleted])
    con.commit()
    con.close()


# -- one sync (run in a child process for clean memory numbers) ---------------------------------


def connector(kind: str, db: dict[str, Any], documents: bool) -> Any:
    table: dict[str, Any] = {"name": "items", "cursor_column": "updated_at"}
    if documents:
        table["document"] = {"title": "{name}", "text": "{name} ({category}) costs {price}. {description}"}
    if kind == "postgres":
        from connectors.postgres import PostgresConfig, PostgresConnector

        return PostgresConnector(PostgresConfig(**db, tables=[table], page_size=10_000))
    from connectors.mysql import MySQLConfig, MySQLConnector

    return MySQLConnector(MySQLConfig(**db, tables=[table], page_size=10_000))


def sync_once(kind: str, db: dict[str, Any], kb_path: Path, documents: bool, real: bool = False) -> dict[str, Any]:
    from grounded.config import load_settings
    from grounded.kb import KnowledgeBase

    kb = KnowledgeBase(kb_path, load_settings(kb_path=kb_path))
    embedder = HashEmbedder()
    if not real:
        kb.store.embedder = embedder  # type: ignore[assignment]
    start, cpu = time.perf_counter(), time.process_time()
    stats = kb.sync("bench", connector(kind, db, documents))
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "rows_upserted": stats.rows_upserted,
        "rows_deleted": stats.rows_deleted,
        "documents_updated": stats.documents_updated,
        "documents_deleted": stats.documents_deleted,
        "embedded": embedder.count,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "model_loaded": getattr(kb.store.embedder, "_model", None) is not None,
    }


def child(kind: str, db: dict[str, Any], kb_path: Path, documents: bool = False, real: bool = False) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps([kind, db, str(kb_path), documents, real])],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_server(kind: str, rows: int, small: int, work: Path, real: bool = False) -> list[tuple[str, str]]:
    create, drop, change = (create_pg, drop_pg, change_pg) if kind == "postgres" else (create_my, drop_my, change_my)
    results: list[tuple[str, str]] = []
    db_small = create(small)
    try:
        mem_small = child(kind, db_small, work / f"{kind}-small", real=real)["maxrss_mb"]
    finally:
        drop(db_small)
    db = create(rows)
    try:
        first = child(kind, db, work / f"{kind}-big", real=real)
        change(db, rows)
        again = child(kind, db, work / f"{kind}-big", real=real)
    finally:
        drop(db)
    results.append(
        (
            f"{kind}: first sync of {rows:,} rows",
            f"{first['seconds']:.1f} s wall = {rows / first['seconds']:,.0f} rows/s; "
            f"{first['cpu_seconds']:.1f} s CPU = {rows / first['cpu_seconds']:,.0f} rows/CPU-s; "
            f"model loaded: {'yes' if first['model_loaded'] else 'no'}",
        )
    )
    results.append(
        (f"{kind}: peak RSS, {small:,} vs {rows:,} rows", f"{mem_small:.0f} MB vs {first['maxrss_mb']:.0f} MB")
    )
    results.append(
        (
            f"{kind}: re-sync after 100 updates + 100 deletes",
            f"{again['rows_upserted']} rows written, {again['rows_deleted']} deleted, "
            f"{again['seconds']:.1f} s wall, {again['cpu_seconds']:.1f} s CPU",
        )
    )
    return results


def bench_documents(rows: int, work: Path) -> list[tuple[str, str]]:
    db = create_pg(rows)
    try:
        first = child("postgres", db, work / "docs", documents=True)
        change_pg(db, rows)
        again = child("postgres", db, work / "docs", documents=True)
    finally:
        drop_pg(db)
    return [
        (
            f"postgres + documents: first sync of {rows:,} rows",
            f"{first['seconds']:.1f} s, {first['embedded']:,} chunks embedded",
        ),
        (
            "postgres + documents: re-sync after 100 updates + 100 deletes",
            f"{again['documents_updated']} docs updated, {again['documents_deleted']} deleted, "
            f"{again['embedded']} chunks embedded, {again['seconds']:.1f} s",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--doc-rows", type=int, default=20_000)
    parser.add_argument("--servers", default="postgres,mysql")
    parser.add_argument("--real-embedder", action="store_true", help="keep the configured model for table syncs")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, db, kb_path, documents, real = json.loads(args.child)
        print(json.dumps(sync_once(kind, db, Path(kb_path), documents, real)))
        return
    load_before = os.getloadavg()
    results: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="grounded-bench-") as tmp:
        for kind in args.servers.split(","):
            results += bench_server(kind, args.rows, args.small, Path(tmp), args.real_embedder)
        if args.doc_rows:
            results += bench_documents(args.doc_rows, Path(tmp))
    width = max(len(name) for name, _ in results)
    load = os.getloadavg()[0]
    print(f"\n{os.cpu_count()} CPUs, load average {load:.1f} (wall times stretch under load; CPU times do not)")
    print(f"{'measure'.ljust(width)} | result")
    print(f"{'-' * width}-|-{'-' * 40}")
    for name, value in results:
        print(f"{name.ljust(width)} | {value}")
    if args.json is not None:
        body = {"results": dict(results), "load": [load_before, os.getloadavg()], "real_embedder": args.real_embedder}
        args.json.write_text(json.dumps(body, indent=1))


if __name__ == "__main__":
    main()
