"""The Python client of a grounded server: ``Client``, ``AsyncClient`` and ``RemoteKnowledgeBase``.

    import grounded

    client = grounded.Client("http://127.0.0.1:8000", api_key="gk_...")   # typed REST results
    kb = grounded.open("http://127.0.0.1:8000", api_key="gk_...")         # a local KB's search/ask

See ``docs/integrations/client.md``.
"""

from grounded.client._wire import API_KEY_ENV, AnswerEvent, EvidenceEvent, SentenceEvent, StreamEvent
from grounded.client.client import AsyncClient, Client
from grounded.client.remote import RemoteKnowledgeBase

__all__ = [
    "API_KEY_ENV",
    "AnswerEvent",
    "AsyncClient",
    "Client",
    "EvidenceEvent",
    "RemoteKnowledgeBase",
    "SentenceEvent",
    "StreamEvent",
]
