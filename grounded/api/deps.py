"""Dependencies shared by the routes (override them in tests with ``app.dependency_overrides``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from grounded.access import Principal
from grounded.api.ratelimit import RateLimiter
from grounded.errors import Forbidden, RateLimited, Unauthorized
from grounded.kb import KnowledgeBase
from grounded.ops.keys import KeyStore

__all__ = ["AdminDep", "KBDep", "PrincipalDep", "get_admin", "get_kb", "get_principal"]

_bearer = HTTPBearer(auto_error=False, description="An API key from `grounded keys create`.")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same key, in a header of its own.")


def get_kb(request: Request) -> KnowledgeBase:
    """The knowledge base this app serves."""
    kb: KnowledgeBase = request.app.state.kb
    return kb


def get_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    api_key: Annotated[str | None, Security(_api_key)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` or ``X-API-Key`` (rate limited per caller).

    Failed authentications are counted per client address (``server.auth_failure_*``); an address
    over its limit gets 429 with ``Retry-After`` for every request, a valid key included, so
    guessing keys costs time instead of only 401s.
    """
    keys: KeyStore = request.app.state.keys
    token = bearer.credentials if bearer is not None else api_key
    failures: RateLimiter | None = request.app.state.auth_failures
    address = request.client.host if request.client else "local"
    if failures is not None:
        wait = failures.wait(address)
        if wait > 0:
            raise RateLimited(
                f"too many failed authentications from {address}; retry in {RateLimiter.retry_after_header(wait)} s",
                retry_after=wait,
            )
    try:
        principal = keys.authenticate(token)
    except Unauthorized:
        if failures is not None:
            failures.spend(address)
        raise
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        who = principal.key_id if keys.has_keys() else (request.client.host if request.client else "local")
        limiter.check(who)
    request.state.principal = principal
    return principal


def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """The caller, who must hold an admin key."""
    if not principal.admin:
        raise Forbidden("this route needs an admin key (`grounded keys create --admin`)")
    return principal


KBDep = Annotated[KnowledgeBase, Depends(get_kb)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
