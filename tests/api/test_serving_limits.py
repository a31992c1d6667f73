"""How ``grounded serve`` protects itself on the network (issue 23, items 8-10), on real servers on loopback.

- no API key and a non-loopback address: refused unless ``--insecure-no-auth``;
- failed authentications limited per client address, with ``Retry-After`` (client addresses
  127.0.0.2 and 127.0.0.3: all of 127.0.0.0/8 is loopback on Linux);
- slow clients: a header deadline, a body deadline and a connection cap, through the very
  uvicorn options ``grounded serve`` uses (:func:`grounded.api.connections.uvicorn_options`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

import grounded
from grounded.api.app import create_app
from grounded.api.connections import (
    ConnectionLimits,
    GuardedH11Protocol,
    GuardedHttpToolsProtocol,
    is_loopback,
    uvicorn_options,
)
from grounded.cli import app as cli
from grounded.cli.serve import check_exposure
from grounded.errors import ConfigError
from grounded.kb import KnowledgeBase
from grounded.ops.keys import KEYS_FILE, KeyStore
from tests.api.serving import free_port, serving

pytestmark = pytest.mark.integration


@contextmanager
def serve_like_grounded(kb: KnowledgeBase, protocol: type[Any] | None = None) -> Iterator[str]:
    """``kb`` on uvicorn with ``grounded serve``'s options (``protocol`` replaces its HTTP protocol)."""
    options = uvicorn_options(kb.settings.server)
    if protocol is not None:
        options["http"] = protocol
    with serving(create_app(kb), **options) as url:
        yield url


def _from(address: str, url: str, token: str | None = None) -> httpx.Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=url, transport=transport, headers=headers, timeout=10)


# -- item 8: no keys, non-loopback address -------------------------------------------------------------


def test_serving_beyond_loopback_without_keys_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--kb", str(tmp_path / "kb"), "--host", "0.0.0.0"])
    assert result.exit_code == 2, result.output
    assert "refusing to serve 0.0.0.0 without API keys" in result.stderr
    assert "--insecure-no-auth" in result.stderr


def test_exposure_check(tmp_path: Path) -> None:
    kb = grounded.open(tmp_path / "kb")
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        check_exposure(kb, host, insecure_no_auth=False)
    for host in ("0.0.0.0", "::", "192.0.2.10", "no-such-host.invalid"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="without API keys"):
            check_exposure(kb, host, insecure_no_auth=False)
        check_exposure(kb, host, insecure_no_auth=True)
    KeyStore(kb.path / KEYS_FILE).create("ops", admin=True)
    check_exposure(kb, "0.0.0.0", insecure_no_auth=False)


# -- item 9: failed authentications ---------------------------------------------------------------------


def test_failed_authentications_are_limited_per_client_address(tmp_path: Path) -> None:
    kb = grounded.open(tmp_path / "kb", server={"auth_failure_rate": 1.0, "auth_failure_burst": 3, "rate_limit": 0})
    token = KeyStore(kb.path / KEYS_FILE).create("ops", admin=True)[0]
    with serve_like_grounded(kb) as url:
        with _from("127.0.0.2", url, "gk_wrong_secret") as guesser:
            statuses = [guesser.get("/v1/sources").status_code for _ in range(6)]
            assert statuses[:3] == [401, 401, 401], statuses
            assert statuses[3:] == [429, 429, 429], statuses
            limited = guesser.get("/v1/sources")
            assert limited.headers["retry-after"] == "1"
            assert "too many failed authentications from 127.0.0.2" in limited.json()["detail"]
        with _from("127.0.0.2", url, token) as same_address:
            assert same_address.get("/v1/sources").status_code == 429  # a valid key waits too
        with _from("127.0.0.3", url, token) as other_address:
            assert other_address.get("/v1/sources").status_code == 200
        time.sleep(1.1)  # one failure's worth of time later, the address may try again
        with _from("127.0.0.2", url, token) as same_address:
            assert same_address.get("/v1/sources").status_code == 200


# -- item 10: slow clients ------------------------------------------------------------------------------

PROTOCOLS = [GuardedH11Protocol, *([GuardedHttpToolsProtocol] if GuardedHttpToolsProtocol else [])]


def _closed(sock: socket.socket) -> bool:
    """True when the server closed ``sock`` (waits at most a moment)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def _wait_closed(socks: list[socket.socket], within_s: float) -> int:
    deadline = time.monotonic() + within_s
    open_ = list(socks)
    while open_ and time.monotonic() < deadline:
        open_ = [s for s in open_ if not _closed(s)]
    return len(socks) - len(open_)


@pytest.mark.parametrize("base", PROTOCOLS, ids=lambda p: p.__name__)
def test_slow_clients_are_cut_off_and_capped(tmp_path: Path, base: type[Any]) -> None:
    """60 connections that never finish their headers: 40 over the cap closed at once, the other 20
    when the header deadline passes; the server answers normally afterwards."""

    class Tight(base):  # type: ignore[misc,valid-type]
        limits = ConnectionLimits(header_timeout_s=1.0, max_connections=20)

    kb = grounded.open(tmp_path / "kb", server={"body_timeout_s": 1.0, "rate_limit": 0})
    with serve_like_grounded(kb, Tight) as url:
        port = int(url.rsplit(":", 1)[1])
        slow: list[socket.socket] = []
        try:
            for _ in range(60):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                slow.append(sock)
            started = time.monotonic()
            assert _wait_closed(slow, within_s=0.8) >= 40  # over the cap: closed at once
            assert _wait_closed(slow, within_s=5.0) == 60  # the rest: at the header deadline
            assert time.monotonic() - started < 5.0
        finally:
            for sock in slow:
                sock.close()
        assert httpx.get(url + "/healthz").status_code == 200

        # A kept-alive connection that starts its next request's headers and stops.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            assert _wait_closed([sock], within_s=5.0) == 1

        # A body that never arrives whole: 408, before any route or authentication runs.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"query": '
            )
            sock.settimeout(5)
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"did not arrive within 1 s" in answer


@pytest.mark.parametrize("base", PROTOCOLS, ids=lambda p: p.__name__)
def test_a_request_being_served_outlives_the_header_deadline(base: type[Any]) -> None:
    """A long answer (or stream) started in time is not cut when the header deadline passes."""

    class Tight(base):  # type: ignore[misc,valid-type]
        limits = ConnectionLimits(header_timeout_s=0.5, max_connections=20)

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await anyio.sleep(1.5)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"done"})

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(slow_app, host="127.0.0.1", port=port, http=Tight, lifespan="off", log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/").text == "done"
            assert client.get("/").text == "done"  # the same kept-alive connection, re-armed
    finally:
        server.should_exit = True
        thread.join(timeout=10)
