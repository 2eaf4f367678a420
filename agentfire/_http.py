"""Bounded HTTP: retries that honour Retry-After and X-Ratelimit-Reset, with jitter and a cap.

Used by every HTTP provider (Unleash, LaunchDarkly, Langfuse, Phoenix). Rules (DESIGN.md rule 3):
every call has a timeout; a retry never sleeps past the caller's deadline; 429, 409 and 5xx are
retried a bounded number of times; transport errors are retried only for idempotent requests.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import ssl  # noqa: F401  (annotations only; the module is loaded by httpx anyway)
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUSES = frozenset({409, 429, 500, 502, 503, 504})

# The caller's overall deadline (a time.monotonic() value) for requests that pass none: set by a
# command's core (e.g. the kill switch) so that a provider's retries stop before it, reporting
# "rate limited after N tries" instead of being cancelled as a bare timeout.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("agentfire_http_deadline", default=None)



@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    cap_seconds: float = 5.0  # the longest single wait, whatever the server asks
    base_seconds: float = 0.2
    # a server that let one request time out will most likely hang the next: retry a timeout
    # this often at most, whatever max_retries allows for 429s and 5xx (an on-call is waiting)
    timeout_retries: int = 1


class RetriesExhausted(Exception):
    """The last response was still retryable (429/5xx) when tries or time ran out."""

    def __init__(self, response: httpx.Response, tries: int):
        super().__init__(f"HTTP {response.status_code} after {tries} tries")
        self.response = response
        self.tries = tries


def server_wait_seconds(response: httpx.Response, now: float | None = None) -> float | None:
    """How long the server asked us to wait: Retry-After (seconds or HTTP date), else
    X-Ratelimit-Reset (LaunchDarkly: epoch milliseconds; seconds are accepted too)."""
    now = time.time() if now is None else now
    ra = response.headers.get("Retry-After")
    if ra:
        ra = ra.strip()
        try:
            return max(0.0, float(ra))
        except ValueError:
            try:
                dt = email.utils.parsedate_to_datetime(ra)
                return max(0.0, dt.timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = response.headers.get("X-Ratelimit-Reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return None
        # epoch milliseconds are ~1.7e12; epoch seconds ~1.7e9; small numbers are deltas
        if value > 1e11:
            return max(0.0, value / 1000.0 - now)
        if value > 1e8:
            return max(0.0, value - now)
        return max(0.0, value)
    return None


def backoff_seconds(attempt: int, response: httpx.Response | None, policy: RetryPolicy) -> float:
    asked = server_wait_seconds(response) if response is not None else None
    base = asked if asked is not None else policy.base_seconds * (2**attempt)
    # jitter spreads concurrent retries (20 regions hitting one rate limit) apart
    return min(policy.cap_seconds, base) + random.uniform(0, min(0.25, policy.cap_seconds / 4))


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: RetryPolicy = RetryPolicy(),
    deadline: float | None = None,
    idempotent: bool = True,
    **kwargs: Any,
) -> httpx.Response:
    """Send with bounded retries. Returns the first non-retryable response.

    Raises RetriesExhausted when the last answer was still 429/409/5xx, httpx.TimeoutException
    or httpx.TransportError when the server cannot be reached, and asyncio.TimeoutError when
    the deadline (a time.monotonic() value) has passed.
    """
    if deadline is None:
        deadline = DEADLINE.get()
    attempt = 0
    timeouts = 0
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            raise asyncio.TimeoutError("deadline passed before the request was sent")
        response: httpx.Response | None = None
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            timeouts += 1
            if not idempotent or attempt >= policy.max_retries or timeouts > policy.timeout_retries:
                raise
        except httpx.TransportError:
            if not idempotent or attempt >= policy.max_retries:
                raise
        if response is not None and response.status_code not in RETRY_STATUSES:
            return response
        if response is not None and attempt >= policy.max_retries:
            raise RetriesExhausted(response, attempt + 1)
        wait = backoff_seconds(attempt, response, policy)
        if deadline is not None and time.monotonic() + wait >= deadline:
            if response is not None:
                raise RetriesExhausted(response, attempt + 1)
            raise asyncio.TimeoutError("deadline passed while retrying")
        attempt += 1
        await asyncio.sleep(wait)


_ssl_context: Any = None


def shared_ssl_context() -> "ssl.SSLContext":
    """One TLS context for every client: httpx builds a new one (loading the CA bundle) per
    client by default, ~0.1 s each on a loaded machine, which serialises a 20-region kill."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


_tls_contexts: dict[tuple[Any, ...], Any] = {}


def tls_context(ca_file: str | None = None, client_cert: str | None = None,
                client_key: str | None = None) -> "ssl.SSLContext":
    """The TLS context for a provider, like the rest of the ecosystem:
    - the CA bundle named by $SSL_CERT_FILE or $REQUESTS_CA_BUNDLE when set (corporate CAs), else
      the operating system's trust store through `truststore` when installed
      (`pip install 'agentfire[tls]'`), else certifi's bundle (httpx's default);
    - plus the provider's own `ca_file` (a private CA for that server only);
    - and a client certificate (`client_cert_file`, `client_key_file`) where the server wants mTLS.
    Cached per combination: building one costs ~0.1 s on a loaded machine."""
    import os
    import ssl as _ssl

    bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    key = (bundle, ca_file, client_cert, client_key)
    ctx = _tls_contexts.get(key)
    if ctx is not None:
        return ctx
    if not (ca_file or client_cert or bundle):
        ctx = _system_or_default()
    else:
        if bundle:
            ctx = _ssl.create_default_context(cafile=bundle)
        else:
            ctx = _system_or_default(fresh=True)
        if ca_file:
            ctx.load_verify_locations(cafile=ca_file)
        if client_cert:
            ctx.load_cert_chain(client_cert, client_key)
    _tls_contexts[key] = ctx
    return ctx


def _system_or_default(fresh: bool = False) -> Any:
    try:
        import ssl as _ssl

        import truststore

        return truststore.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
    except ImportError:
        return httpx.create_ssl_context() if fresh else shared_ssl_context()


def proxy_for(url: str) -> str | None:
    """The proxy httpx would use for `url` from the environment (HTTPS_PROXY, ALL_PROXY, NO_PROXY),
    with any credentials in it replaced: named in errors, so a dead proxy is not blamed on the
    vendor."""
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    p = urlsplit(proxy)
    if p.username or p.password:
        host = p.hostname or ""
        netloc = f"***@{host}" + (f":{p.port}" if p.port else "")
        proxy = urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
    return proxy


def async_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx.AsyncClient sharing the TLS context; use it for every provider's client."""
    kwargs.setdefault("verify", shared_ssl_context())
    return httpx.AsyncClient(**kwargs)
