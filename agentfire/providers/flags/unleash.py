"""Unleash: the admin API, one environment per region.

Off/on: POST /api/admin/projects/{p}/features/{f}/environments/{env}/off|on (200, idempotent).
Read-back: GET /api/admin/projects/{p}/features/{f}/environments/{env} -> {"enabled": ...}.
Auth: the whole admin token in `Authorization` (no Bearer).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from agentfire.config import UnleashRegion
from agentfire.providers.flags import FlagError, Outcome, WriteResult, mark_sent
from agentfire.providers.flags._httpflags import HttpFlagProvider, call, json_body, retry_policy, tls_for
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
        mark_sent()
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
        tls=tls_for(section, runbook),
    )


# --- the agent's side --------------------------------------------------------------------------


def openfeature_provider(section: UnleashRegion, runbook: Any, *, oneshot: bool = False) -> Any:
    """What agents evaluate with: the Unleash SDK (UnleashClient) with a backend token of the
    region's environment, polling every `refresh_interval_seconds`. Never the admin token."""
    from agentfire.agentside import ProviderSpec, SourceUnavailable

    if not section.client_token_env:
        raise SourceUnavailable(
            "no client_token_env for this region: agents read Unleash with a backend token of the "
            f"{section.environment!r} environment (never the admin token)")
    env = section.client_token_env
    every = 1 if oneshot else section.refresh_interval_seconds

    def build() -> Any:
        from agentfire.providers.flags._unleash_of import UnleashClientProvider

        token = secret(env, what="Unleash backend token")
        problem = token_problem(token, section.environment)
        if problem:
            raise SourceUnavailable(f"${env}: {problem}")
        return UnleashClientProvider(
            url=section.url, token=token, app_name=section.app_name or runbook.agent.name,
            environment=section.environment, refresh_interval=every,
            request_timeout=min(section.timeout_seconds, section.init_timeout_seconds),
            custom_options=_requests_tls(section, runbook),
        )

    built: dict[str, Any] = {}
    return ProviderSpec(
        build=build, label=f"Unleash client ({section.environment})",
        propagation=f"Unleash SDK polls every {section.refresh_interval_seconds} s",
        propagation_s=float(section.refresh_interval_seconds),
        attach=lambda provider: built.__setitem__("p", provider),
        # answers are memoised per context until the next fetch (the state changes only then;
        # time-based constraints are re-evaluated at each poll): the SDK's engine costs ~150 us
        version=lambda: built["p"].generation,
    )


def token_problem(token: str, environment: str) -> str | None:
    """A backend token names its project and environment ('project:environment.secret'); an
    admin token ('*:*.' or 'user:...') must never be in an agent's hands."""
    head, dot, _ = token.partition(".")
    if not dot or ":" not in head:
        return None  # not the documented shape (e.g. a personal access token): the server decides
    project, _, env = head.partition(":")
    if project == "*" and env == "*":
        return "this is an admin token: agents need a backend (client) token of the environment"
    if env not in ("*", environment):
        return (f"this backend token is for environment {env!r}, but the region is "
                f"{environment!r} (tokens swapped?)")
    return None


def _requests_tls(section: Any, runbook: Any) -> dict[str, Any]:
    """requests options for the SDK: the region's CA bundle and client certificate (requests
    itself honours REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE and the proxy variables)."""
    out: dict[str, Any] = {}
    if section.ca_file:
        out["verify"] = str(runbook.resolve_path(section.ca_file))
    if section.client_cert_file:
        cert = str(runbook.resolve_path(section.client_cert_file))
        out["cert"] = (cert, str(runbook.resolve_path(section.client_key_file))) if section.client_key_file else cert
    return out
