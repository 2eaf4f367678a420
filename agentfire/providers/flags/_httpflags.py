"""What the HTTP flag providers (Unleash, LaunchDarkly) share: one client, one error mapping."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from agentfire import _http
from agentfire.providers.flags import FlagError, Outcome


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
        raise FlagError(Outcome.UNREACHABLE, f"{what}: {type(exc).__name__}: {exc}") from None
    except asyncio.TimeoutError:
        raise FlagError(Outcome.TIMEOUT, f"{what}: deadline passed") from None
    if response.status_code not in ok:
        raise classify_status(response, what)
    return response
