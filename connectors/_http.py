"""The HTTP client the API connectors share: retries with backoff, ``Retry-After``, a rate limit.

- 429 and 5xx responses, timeouts and dropped connections are retried with exponential backoff
  (``Retry-After`` wins when the server sends it, and GitHub's ``x-ratelimit-reset`` too);
- 401/403/404 are fatal, with a message naming the URL and what to check;
- a body that is not JSON is retried, then reported with the start of what came back;
- requests are spaced to stay under ``rate_limit`` per second.

Every failure leaves as a :class:`~grounded.errors.ConnectorError`; httpx errors never escape.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from grounded.errors import ConnectorError, FatalConnectorError, RetriableConnectorError

__all__ = ["HttpClient", "json_path"]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpClient:
    """GET JSON from one API, politely and persistently."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        rate_limit: float | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        secret_hint: str = "",
    ) -> None:
        self.client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": "grounded-sync/0.1 (+https://github.com/)", **(headers or {})},
            auth=auth,
            timeout=timeout,
            transport=transport,
            follow_redirects=True,
        )
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.interval = 1.0 / rate_limit if rate_limit else 0.0
        self.sleep = sleep
        self.secret_hint = secret_hint
        self._next_at = 0.0
        self._lock = threading.Lock()
        self.requests = 0

    def close(self) -> None:
        self.client.close()

    def _throttle(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            wait = self._next_at - now
            self._next_at = max(now, self._next_at) + self.interval
        if wait > 0:
            self.sleep(wait)

    def get(self, url: str, params: Mapping[str, Any] | None = None) -> tuple[Any, httpx.Response]:
        """``(parsed JSON, response)`` for a GET, after retries; raises a ConnectorError."""
        return self.request("GET", url, params)

    def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        expect_json: bool = True,
    ) -> tuple[Any, httpx.Response]:
        """``(body, response)`` for one request, after retries; raises a ConnectorError.

        The body is parsed JSON (``expect_json``, retried when malformed), else JSON when it
        parses and text when not. A body over ``max_bytes`` is refused while it streams in, never
        read whole. Only idempotent methods are retried after a timeout or a 5xx; POST and PATCH
        are retried only when the request never reached the server (connection refused) or on 429.
        """
        method = method.upper()
        idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            self._throttle()
            self.requests += 1
            try:
                # No params at all (not {}) keeps a next-link's own query string intact.
                response, content = self._send(method, url, params, json_body, headers, max_bytes)
            except httpx.TimeoutException as exc:
                last_problem = f"timed out ({type(exc).__name__})"
                if not idempotent:
                    break
                self._wait(attempt, None)
                continue
            except httpx.TransportError as exc:
                if "Name or service not known" in str(exc) or "nodename nor servname" in str(exc):
                    raise FatalConnectorError(f"{method} {url}: unknown host ({exc}); fix base_url") from exc
                last_problem = f"connection failed ({exc})"
                if not idempotent and not isinstance(exc, httpx.ConnectError):
                    break
                self._wait(attempt, None)
                continue
            where = f"{method} {response.request.url}"
            if content is None:
                raise FatalConnectorError(f"{where}: the response is larger than {max_bytes} bytes (the limit)")
            limited = response.status_code == 403 and response.headers.get("x-ratelimit-remaining") == "0"
            if (response.status_code in RETRY_STATUSES and (idempotent or response.status_code == 429)) or limited:
                last_problem = f"HTTP {response.status_code}"
                if attempt < self.max_retries:
                    self._wait(attempt, _retry_after(response))
                continue
            if response.status_code in (401, 403):
                raise FatalConnectorError(
                    f"{where}: HTTP {response.status_code} (not authorised); check the credentials"
                    f"{' in ' + self.secret_hint if self.secret_hint else ''} and their permissions"
                )
            if response.status_code == 404:
                raise FatalConnectorError(f"{where}: HTTP 404 (not found); check base_url and the endpoint path")
            if response.status_code >= 400:
                raise FatalConnectorError(f"{where}: HTTP {response.status_code}: {content[:200]!r}")
            try:
                return json.loads(content), response
            except (json.JSONDecodeError, UnicodeDecodeError):
                if not expect_json:
                    return content.decode("utf-8", "replace"), response
                last_problem = f"malformed JSON (body starts {content[:80].decode('utf-8', 'replace')!r})"
                self._wait(attempt, None)
        raise RetriableConnectorError(
            f"{method} {self.client.base_url.join(url)}: {last_problem} after {attempt + 1} attempt(s); "
            "the API may be overloaded or down, try again later"
        )

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        max_bytes: int | None,
    ) -> tuple[httpx.Response, bytes | None]:
        """One request; the body, or ``None`` when it is over ``max_bytes``."""
        with self.client.stream(
            method, url, params=dict(params) if params else None, json=json_body, headers=headers
        ) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    return response, None
                chunks.append(chunk)
            return response, b"".join(chunks)

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        if attempt >= self.max_retries:
            return
        delay = retry_after if retry_after is not None else self.backoff * (2**attempt)
        if delay > self.max_wait:
            raise RetriableConnectorError(
                f"the API asked to wait {delay:.0f} s (Retry-After), longer than max_wait={self.max_wait:.0f} s; "
                "sync again later"
            )
        self.sleep(max(delay, 0.0))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    reset = response.headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) - time.time())
    return None


def json_path(data: Any, path: str) -> list[Any]:
    """Values at a dotted path: ``data.items``, ``query.pages.*.title``, ``results[0].id``.

    ``*`` fans out over a list's items or a dict's values; an empty path is ``data`` itself.
    Missing keys give no values rather than an error.
    """
    current = [data]
    for part in (p for p in path.replace("[", ".").replace("]", "").split(".") if p):
        nxt: list[Any] = []
        for value in current:
            if part == "*":
                if isinstance(value, list):
                    nxt.extend(value)
                elif isinstance(value, dict):
                    nxt.extend(value.values())
            elif isinstance(value, dict) and part in value:
                nxt.append(value[part])
            elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
                nxt.append(value[int(part)])
        current = nxt
    return current


def first(data: Any, path: str) -> Any:
    """The first value at ``path``, or ``None``."""
    values = json_path(data, path)
    return values[0] if values else None


def wrap(exc: Exception, what: str) -> ConnectorError:
    return exc if isinstance(exc, ConnectorError) else FatalConnectorError(f"{what}: {exc}")
