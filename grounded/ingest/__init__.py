"""Ingestion: connectors' pages into a new index version, published atomically.

connector.read() ─► sync_connector (ACL stamped, cursors) ─► VersionBuilder (chunk, embed,
mirror tables, BM25, FAISS) ─► publish; sources.py runs the sources configured in grounded.toml.
"""
