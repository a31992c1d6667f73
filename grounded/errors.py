"""Every error grounded raises, as one tree.

    GroundedError                      500  base of everything below
    ├── ConfigError (ValueError)       500  bad or missing configuration
    ├── InvalidRequest (ValueError)    422  bad input from a caller (query, k, filter, path)
    ├── NotFound (LookupError)         404  an id or name that does not exist
    ├── Unauthorized                   401  no API key, or an unknown or revoked one
    ├── Forbidden                      403  a valid key that may not use this route
    ├── RateLimited                    429  too many requests from one caller
    ├── RequestTooLarge                413  a request body over the configured limit
    ├── KnowledgeBaseError             500  the knowledge base on disk
    │   ├── CorruptKnowledgeBase       500  unreadable, wrong format, or half-written files
    │   ├── KnowledgeBaseLocked        409  another process holds the write lock
    │   └── NoPublishedVersion         503  nothing has been ingested yet
    ├── IngestError                    422  a document that cannot be read or parsed
    ├── ConnectorError                 502  a source failed; subclasses tell the runner what to do
    │   ├── FatalConnectorError        502  stop this source: bad credentials, missing table
    │   ├── RetriableConnectorError    503  try again later: timeout, 429, 5xx
    │   └── SkippableRecordError       422  skip one record, go on with the rest
    ├── ExpertError                    502  a model backend failed
    │   └── ExpertTimeout              504  a model backend did not answer in time
    └── ServerUnreachable (ConnectionError)  503  grounded.Client could not reach the server

Each class carries the HTTP status the API renders it with (as ``application/problem+json``)
and a short ``title``. The Python client (``grounded.Client``) turns a problem+json response back
into the class named by its ``title`` (``type`` ends in the same slug), so remote and local calls
raise alike. Foreign exceptions (driver, HTTP, file system) are wrapped where they
cross into our code, with ``raise ... from exc`` so the cause is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "ConnectorError",
    "CorruptKnowledgeBase",
    "ExpertError",
    "ExpertTimeout",
    "FatalConnectorError",
    "Forbidden",
    "GroundedError",
    "IngestError",
    "InvalidRequest",
    "KnowledgeBaseError",
    "KnowledgeBaseLocked",
    "NoPublishedVersion",
    "NotFound",
    "RateLimited",
    "RequestTooLarge",
    "RetriableConnectorError",
    "ServerUnreachable",
    "SkippableRecordError",
    "Unauthorized",
]


class GroundedError(Exception):
    """Base of every error grounded raises on purpose."""

    status: int = 500
    title: str = "Internal error"
    problem: Mapping[str, Any] | None = None
    """The server's problem+json body, when ``grounded.Client`` raised this from a response."""


class ConfigError(GroundedError, ValueError):
    """Configuration is missing, malformed or contradictory."""

    title = "Configuration error"


class InvalidRequest(GroundedError, ValueError):
    """A caller's input is out of range or malformed."""

    status = 422
    title = "Invalid request"


class NotFound(GroundedError, LookupError):
    """A document, source or version that does not exist."""

    status = 404
    title = "Not found"

    def __str__(self) -> str:
        # LookupError/KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else self.title


class Unauthorized(GroundedError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    title = "Unauthorized"


class Forbidden(GroundedError):
    """A valid API key that may not use this route."""

    status = 403
    title = "Forbidden"


class RateLimited(GroundedError):
    """Too many requests from one caller; ``retry_after`` says when to come back (seconds)."""

    status = 429
    title = "Too many requests"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTooLarge(GroundedError):
    """A request body larger than ``server.max_body_bytes``."""

    status = 413
    title = "Request too large"


class KnowledgeBaseError(GroundedError):
    """The knowledge base on disk cannot be used."""

    title = "Knowledge base error"


class CorruptKnowledgeBase(KnowledgeBaseError):
    """Files in the knowledge base directory are unreadable or inconsistent."""

    title = "Corrupt knowledge base"


class KnowledgeBaseLocked(KnowledgeBaseError):
    """Another writer holds the knowledge base's write lock."""

    status = 409
    title = "Knowledge base is busy"


class NoPublishedVersion(KnowledgeBaseError):
    """The knowledge base has no published index version yet."""

    status = 503
    title = "Knowledge base is empty"


class IngestError(GroundedError):
    """A document could not be read or parsed."""

    status = 422
    title = "Cannot ingest"


class ConnectorError(GroundedError):
    """A source failed while being read. The subclass says what the runner should do."""

    status = 502
    title = "Source error"


class FatalConnectorError(ConnectorError):
    """Retrying will not help: credentials, permissions, a missing table, bad config."""


class RetriableConnectorError(ConnectorError):
    """A transient failure: timeout, rate limit, server error. Retry with backoff."""

    status = 503
    title = "Source temporarily unavailable"


class SkippableRecordError(ConnectorError):
    """One record is bad; skip it and go on with the rest."""

    status = 422
    title = "Bad record"


class ExpertError(GroundedError):
    """A model backend failed or returned something unusable."""

    status = 502
    title = "Model backend error"


class ExpertTimeout(ExpertError):
    """A model backend did not answer in time."""

    status = 504
    title = "Model backend timeout"


class ServerUnreachable(GroundedError, ConnectionError):
    """``grounded.Client`` could not connect to the server, or the connection broke (never sent by a server)."""

    status = 503
    title = "Server unreachable"
