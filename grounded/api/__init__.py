"""The REST API: ``create_app()`` builds a FastAPI application over one knowledge base."""

from grounded.api.app import create_app

__all__ = ["create_app"]
