"""``GET /``: the web page (static HTML + JS from ``grounded/api/static``, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """Ask a question, read the cited answer, see the passages and the trace."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
