"""Exploring a knowledge base from Jupyter: sources, documents, tables, read-only SQL, explain, trace.

The methods come to :class:`~grounded.kb.KnowledgeBase` through
:class:`~grounded.notebook.explore.ExploreMixin`; each stage renders its own results as HTML
(:mod:`grounded.retrieval.results`, :mod:`grounded.answering.html`).
"""
