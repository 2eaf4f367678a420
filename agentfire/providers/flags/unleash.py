"""Unleash: the admin API, one environment per region.

Off/on: POST /api/admin/projects/{p}/features/{f}/environments/{env}/off|on (200, idempotent).
Read-back: GET /api/admin/projects/{p}/features/{f}/environments/{env} -> {"enabled": ...}.
Auth: the whole admin token in `Authorization` (no Bearer).
Checked against Unleash 8.2: 401 for an unknown token, 403 for a backend (client) token on the
admin API (and, on Enterprise, when change requests guard the environment), 404 for an unknown
project, flag or environment (the body says which).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from agentfire import _http
from agentfire.config import UnleashRegion
from agentfire.providers.flags import FlagError, Outcome, WriteResult
from agentfire.providers.flags._httpflags import call
from agentfire.secrets import secret


class UnleashProvider:
    kind = "unleash"

    def __init__(self, url: str, project: str, environment: str, token: str, *,
                 timeout_s: float = 5.0, policy: _http.RetryPolicy = _http.RetryPolicy(),
                 token_env: str | None = None):
        self.base = url.rstrip("/")
        self.project = project
        self.environment = environment
        self.policy = policy
        self.target = f"{self.base} project={project} env={environment}"
        self.token_env = token_env
        self._client = _http.async_client(
            headers={"Authorization": token, "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s),
        )

    def _env_url(self, flag: str) -> str:
        return (f"{self.base}/api/admin/projects/{quote(self.project, safe='')}/features/"
                f"{quote(flag, safe='')}/environments/{quote(self.environment, safe='')}")

    async def _call(self, method: str, url: str, *, what: str) -> httpx.Response:
        try:
            return await call(self._client, method, url, what=what, policy=self.policy,
                              ok=(200, 202, 204) if method == "POST" else (200,))
        except FlagError as exc:
            if exc.outcome is Outcome.AUTH:
                # the server's words ("You must log in") do not say which token to fix
                src = f"${self.token_env}" if self.token_env else "the token"
                exc.detail += (f" (check the admin API token in {src}; backend/client tokens are "
                               "refused by the admin API)")
            raise

    async def read(self, flag: str) -> bool:
        r = await self._call("GET", self._env_url(flag), what="read")
        try:
            body = r.json()
        except ValueError:
            raise FlagError(Outcome.ERROR, "read: the answer is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise FlagError(Outcome.ERROR, "read: the answer has no boolean 'enabled'")
        return body["enabled"]

    async def write(self, flag: str, on: bool, *, comment: str, dry_run: bool) -> WriteResult:
        url = f"{self._env_url(flag)}/{'on' if on else 'off'}"
        if dry_run:
            # Unleash has no preview; check that the flag and environment exist instead
            await self.read(flag)
            return WriteResult(detail=f"would POST .../environments/{self.environment}/{'on' if on else 'off'}")
        await self._call("POST", url, what="write")
        # the server is confirmed by the read-back; SDKs pick it up at their next poll (15 s default)
        return WriteResult(detail=f"environment {self.environment} {'on' if on else 'off'}; "
                                  "SDKs see it at their next poll")

    async def probe(self, flag: str) -> str:
        on = await self.read(flag)
        return f"{self.target}: {flag} is {'on' if on else 'off'}"

    async def aclose(self) -> None:
        await self._client.aclose()


def from_config(section: UnleashRegion, runbook: Any) -> UnleashProvider:
    kill = runbook.model.kill
    return UnleashProvider(
        section.url, section.project, section.environment,
        secret(section.token_env, what="Unleash admin token"),
        timeout_s=section.timeout_seconds,
        policy=_http.RetryPolicy(max_retries=kill.max_retries, cap_seconds=kill.retry_cap_seconds),
        token_env=section.token_env,
    )
