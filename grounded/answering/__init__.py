"""Answering: evidence in, a cited and verified answer (or an honest abstention) out.

    engine (named stages) ─► evidence (sentences of the passages, embedded) ─► writer (the answer
    expert's prompt, parsing [n]) ─► verify (each sentence against its cited evidence) ─► cache

:mod:`~grounded.answering.types` holds the records (``Answer``, ``Citation``, ...);
:mod:`~grounded.answering.tool_evidence` turns tool results into citations;
:mod:`~grounded.answering.html` renders answers in Jupyter.
"""
