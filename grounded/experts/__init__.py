"""Small expert models behind one registry (see :mod:`grounded.experts.registry`)."""

from __future__ import annotations

from grounded.experts.base import BackendFactory, Generation, Message, TextGenerator
from grounded.experts.registry import available_backends, backend_factory, get_expert

__all__ = [
    "BackendFactory",
    "Generation",
    "Message",
    "TextGenerator",
    "available_backends",
    "backend_factory",
    "get_expert",
]
