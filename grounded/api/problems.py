"""Errors as RFC 9457 ``application/problem+json`` responses.

grounded's own errors carry their HTTP status; request validation errors become 422 with the
offending fields listed; anything unexpected becomes a 500 whose detail hides internals.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from grounded.errors import GroundedError, RateLimited, Unauthorized

__all__ = ["install_problem_handlers", "problem"]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("grounded.api")


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-")


def problem(request: Request, status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response for ``request``."""
    body = {
        "type": f"https://grounded.dev/problems/{_slug(title)}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""

    @app.exception_handler(GroundedError)
    async def grounded_error(request: Request, exc: GroundedError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
        response = problem(request, exc.status, exc.title, str(exc))
        if isinstance(exc, RateLimited):
            response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
        if isinstance(exc, Unauthorized):
            response.headers["www-authenticate"] = "Bearer"
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"),
                "message": err.get("msg", ""),
            }
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
        return problem(request, 422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem(request, exc.status_code, title, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(request, 500, "Internal error", "an unexpected error occurred; see the server log")
