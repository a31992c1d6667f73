"""SQL over the mirrored tables: one guard, one sandboxed read-only database, and text-to-SQL.

    question ─► schema_link (tables and columns a question names) ─► writer (the sql expert,
    under grammar's GBNF of the linked tables; guard + binder + one repair turn) ─► guard.check_sql
    ─► database.ReadOnlyDatabase.execute (read-only, no files/network, timeout, row limit)

``kb.sql`` (people) and the ``sql`` tool (models) share :mod:`grounded.sql.database` and
:mod:`grounded.sql.guard`; :mod:`grounded.sql.prompts` is the tuned SQL expert's prompt.
"""
