"""Unleash: the admin API, one environment per region.

Off/on: POST /api/admin/projects/{p}/features/{f}/environments/{env}/off|on (200, idempotent).
Read-back: GET /api/admin/projects/{p}/features/{f}/environments/{env} -> {"enabled": ...}.
Auth: the whole admin token in `Authorization` (no Bearer).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from agentfire.config import UnleashRegion
from agentfire.providers.flags import FlagError, Outcome, WriteResult
from agentfire.providers.flags._httpflags import HttpFlagProvider, call, json_body, retry_policy
from agentfire.secrets import secret


class UnleashProvider(HttpFlagProvider):
    kind = "unleash"

    def _env_url(self, flag: str) -> str:
        return (f"{self.base}/api/admin/projects/{quote(self.project, safe='')}/features/"
                f"{quote(flag, safe='')}/environments/{quote(self.environment, safe='')}")

    async def _call(self, method: str, url: str, *, what: str) -> Any:
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
        body = json_body(r, "read")
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


def from_config(section: UnleashRegion, runbook: Any) -> UnleashProvider:
    return UnleashProvider(
        section.url, section.project, section.environment,
        secret(section.token_env, what="Unleash admin token"),
        timeout_s=section.timeout_seconds, policy=retry_policy(runbook), token_env=section.token_env,
    )


class UnleashClientReader(HttpFlagProvider):
    """What an agent sees: GET /api/client/features/{flag} with a backend token of the region's
    environment (the token decides the environment). Read-only: agents never write."""

    kind = "unleash"

    async def read(self, flag: str) -> bool:
        r = await call(self._client, "GET", f"{self.base}/api/client/features/{quote(flag, safe='')}",
                       what="client read", policy=self.policy)
        body = json_body(r, "client read")
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise FlagError(Outcome.ERROR, "client read: the answer has no boolean 'enabled'")
        return body["enabled"]

    async def write(self, flag: str, on: bool, *, comment: str, dry_run: bool) -> WriteResult:
        raise FlagError(Outcome.ERROR, "the client API is read-only")

    async def probe(self, flag: str) -> str:
        return f"client API: {flag} is {'on' if await self.read(flag) else 'off'}"


def agent_reader(section: UnleashRegion, runbook: Any) -> UnleashClientReader | None:
    if not section.client_token_env:
        return None
    return UnleashClientReader(
        section.url, section.project, section.environment,
        secret(section.client_token_env, what="Unleash backend token"),
        timeout_s=section.timeout_seconds, policy=retry_policy(runbook),
        token_env=section.client_token_env,
    )
