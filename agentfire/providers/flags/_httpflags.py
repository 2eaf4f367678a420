"""What the HTTP flag providers (Unleash, LaunchDarkly) share: one client, one error mapping."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx

from agentfire import _http
from agentfire.providers.flags import FlagError, Outcome


class HttpFlagProvider:
    """The plumbing every HTTP flag provider shares: one client per region, with the whole token
    in `Authorization` (Unleash and LaunchDarkly both refuse "Bearer"), a timeout on every call,
    and the runbook's retry policy."""

    kind = "http"
    extra_headers: dict[str, str] = {}  # a vendor's fixed headers (e.g. an API version)

    def __init__(self, base_url: str, project: str, environment: str, token: str, *,
                 timeout_s: float = 5.0, policy: _http.RetryPolicy = _http.RetryPolicy(),
                 token_env: str | None = None, tls: Any = None):
        self.base = base_url.rstrip("/")
        self.project = project
        self.environment = environment
        self.policy = policy
        self.token_env = token_env  # named in auth errors (never the value)
        self.target = f"{self.base} project={project} env={environment}"
        self._client = _http.async_client(
            headers={"Authorization": token, "Accept": "application/json", **self.extra_headers},
            timeout=httpx.Timeout(timeout_s),
            **({"verify": tls} if tls is not None else {}),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def json_body(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise FlagError(Outcome.ERROR, f"{what}: the answer is not JSON") from None


def retry_policy(runbook: Any) -> _http.RetryPolicy:
    """The retry policy the runbook's `kill` section asks of every HTTP flag provider."""
    kill = runbook.model.kill
    return _http.RetryPolicy(max_retries=kill.max_retries, cap_seconds=kill.retry_cap_seconds)


def error_detail(response: httpx.Response) -> str:
    """A short, secret-free description of an error answer (vendor error bodies are JSON)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        msg = body.get("message") or body.get("details") or body.get("code") or body.get("error")
        if isinstance(msg, list):
            msg = "; ".join(str(m.get("message", m)) if isinstance(m, dict) else str(m) for m in msg)
        if msg:
            return f"HTTP {response.status_code}: {str(msg)[:300]}"
    return f"HTTP {response.status_code}"


def classify_status(response: httpx.Response, what: str) -> FlagError:
    code = response.status_code
    detail = f"{what}: {error_detail(response)}"
    if code in (401, 403):
        return FlagError(Outcome.AUTH, detail)
    if code == 404:
        return FlagError(Outcome.NOT_FOUND, detail)
    if code == 429:
        return FlagError(Outcome.RATE_LIMITED, detail)
    if code >= 500:
        return FlagError(Outcome.UNREACHABLE, detail)
    return FlagError(Outcome.ERROR, detail)


async def call(
    client: httpx.AsyncClient, method: str, url: str, *, what: str,
    policy: _http.RetryPolicy, ok: tuple[int, ...] = (200,), **kwargs: Any,
) -> httpx.Response:
    """One bounded request, mapped to FlagError on anything but the `ok` statuses."""
    try:
        response = await _http.request(client, method, url, policy=policy, **kwargs)
    except _http.RetriesExhausted as exc:
        err = classify_status(exc.response, what)
        err.detail += f" (after {exc.tries} tries)"
        raise err from None
    except httpx.TimeoutException:
        raise FlagError(Outcome.TIMEOUT, f"{what}: no answer within the request timeout") from None
    except httpx.TransportError as exc:
        proxy = _http.proxy_for(url)
        via = f" (via proxy {proxy}, from the environment's proxy settings)" if proxy else ""
        if isinstance(exc, httpx.ProxyError):
            raise FlagError(Outcome.UNREACHABLE, f"{what}: the proxy {proxy or ''} failed: {exc}") from None
        raise FlagError(Outcome.UNREACHABLE, f"{what}: {type(exc).__name__}: {exc}{via}") from None
    except ssl.SSLError as exc:
        # TLS 1.3 sends a refused client certificate as an alert on the first read, which some
        # httpcore versions let through unwrapped: the region is unreachable, not an unknown error
        raise FlagError(Outcome.UNREACHABLE, f"{what}: TLS: {exc}") from None
    except asyncio.TimeoutError:
        raise FlagError(Outcome.TIMEOUT, f"{what}: deadline passed") from None
    if response.status_code not in ok:
        raise classify_status(response, what)
    return response


def tls_for(section: Any, runbook: Any) -> Any:
    """The region's TLS context when it names a CA file or client certificate (else None: the
    shared default, which honours SSL_CERT_FILE / REQUESTS_CA_BUNDLE / truststore too)."""
    import os

    ca = getattr(section, "ca_file", None)
    cert = getattr(section, "client_cert_file", None)
    key = getattr(section, "client_key_file", None)
    env_bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    if not (ca or cert or env_bundle):
        return _http.tls_context()
    return _http.tls_context(
        str(runbook.resolve_path(ca)) if ca else None,
        str(runbook.resolve_path(cert)) if cert else None,
        str(runbook.resolve_path(key)) if key else None,
    )
