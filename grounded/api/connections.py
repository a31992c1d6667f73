"""How ``grounded serve`` treats connections: exposure check, header deadline, connection cap.

uvicorn (0.54, read from its source) closes an idle keep-alive connection after
``timeout_keep_alive``, but

- a connection that never completes a request's headers has no deadline at all (a "slowloris"
  client holds it for ever: the arrival of any byte cancels the keep-alive timer), and
- ``limit_concurrency`` answers 503 only once a request's headers are complete, so it does not
  bound the connections slow clients hold.

So ``grounded serve`` runs uvicorn's HTTP protocols subclassed here:

- ``server.header_timeout_s``: a connection must complete a request's headers within this time
  after it opened, and after each response on a kept-alive connection; otherwise it is closed.
  A request being served (headers complete: a long answer, a stream) is never cut by it.
- ``server.max_connections``: a connection accepted while this many are open is closed at once
  (per worker process).

The request *body* deadline (``server.body_timeout_s``) is kept by
:class:`grounded.api.middleware.ServingMiddleware`, which reads a body before the route runs.
:func:`uvicorn_options` is every option ``grounded serve`` gives uvicorn, so tests run the same.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol

from grounded.config import ServerSettings, load_settings

__all__ = [
    "ConnectionLimits",
    "GuardedH11Protocol",
    "guarded_protocol",
    "is_loopback",
    "uvicorn_options",
]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The two limits the protocols enforce (see the module docstring)."""

    header_timeout_s: float
    max_connections: int

    @classmethod
    def of(cls, server: ServerSettings) -> ConnectionLimits:
        return cls(server.header_timeout_s, server.max_connections)


@functools.cache
def configured_limits() -> ConnectionLimits:
    """The limits of this process's settings (a worker process reads them from its environment)."""
    return ConnectionLimits.of(load_settings().server)


def _limits(proto: Any) -> ConnectionLimits:
    found: ConnectionLimits | None = type(proto).limits
    return found if found is not None else configured_limits()


def _opened(proto: Any, transport: asyncio.BaseTransport) -> None:
    if len(proto.connections) > _limits(proto).max_connections:
        transport.close()  # connection_lost follows and forgets it
        return
    _arm(proto)


def _arm(proto: Any) -> None:
    _disarm(proto)
    if not proto.transport.is_closing():
        proto._header_deadline = proto.loop.call_later(_limits(proto).header_timeout_s, _deadline_passed, proto)


def _disarm(proto: Any) -> None:
    handle: asyncio.TimerHandle | None = getattr(proto, "_header_deadline", None)
    if handle is not None:
        handle.cancel()
        proto._header_deadline = None


def _deadline_passed(proto: Any) -> None:
    proto._header_deadline = None
    cycle = proto.cycle
    if cycle is not None and not cycle.response_complete:
        return  # its headers came in time and it is being served; the next response re-arms
    if not proto.transport.is_closing():
        proto.transport.close()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap."""

    limits: ClassVar[ConnectionLimits | None] = None
    """``None``: :func:`configured_limits`; tests set a subclass's own."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _opened(self, transport)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        _arm(self)

    def connection_lost(self, exc: Exception | None) -> None:
        _disarm(self)
        super().connection_lost(exc)


def _httptools_protocol() -> type[asyncio.Protocol] | None:
    if importlib.util.find_spec("httptools") is None:
        return None
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with a header deadline and a connection cap."""

        limits: ClassVar[ConnectionLimits | None] = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            _opened(self, transport)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            _arm(self)

        def connection_lost(self, exc: Exception | None) -> None:
            _disarm(self)
            super().connection_lost(exc)

    return GuardedHttpToolsProtocol


GuardedHttpToolsProtocol = _httptools_protocol()
"""The httptools variant, or ``None`` when httptools is not installed."""


def guarded_protocol(http: str) -> str:
    """The import string of the protocol for ``server.http`` (``auto``: httptools when installed),
    an import string so that every worker process imports it (and reads its own settings)."""
    if http == "httptools" or (http == "auto" and GuardedHttpToolsProtocol is not None):
        if GuardedHttpToolsProtocol is None:
            raise ImportError("server.http = 'httptools' needs httptools: pip install httptools")
        return f"{__name__}:GuardedHttpToolsProtocol"
    return f"{__name__}:GuardedH11Protocol"


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """The uvicorn options ``grounded serve`` uses for ``server`` (besides app, host, port, workers)."""
    return {
        "loop": server.loop,
        "http": guarded_protocol(server.http),
        "timeout_keep_alive": max(1, round(server.keep_alive_s)),
        "timeout_graceful_shutdown": round(server.graceful_timeout_s),
        "log_config": None,
        "access_log": False,
    }


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    name = host.strip("[]")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)
