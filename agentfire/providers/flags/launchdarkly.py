"""LaunchDarkly: the REST API, one environment per region.

Off/on: semantic patch PATCH /api/v2/flags/{project}/{flag} with
`Content-Type: application/json; domain-model=launchdarkly.semanticpatch` and
{"environmentKey", "comment", "instructions": [{"kind": "turnFlagOff"}]} (atomic, idempotent;
`?dryRun=true` previews). 405 means the environment requires approval: we report
PENDING_APPROVAL, never done, naming the approval request: an open one with the same instruction
when the flag has one in that environment (GET .../approval-requests; a re-run kill must not pile
up duplicates for the approvers), otherwise one we create.
Read-back: GET /api/v2/flags/{project}/{flag}?env={env} -> environments.{env}.on.
Auth: the access token itself in `Authorization` (no Bearer); LD-API-Version pins the API.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from agentfire.config import LaunchDarklyRegion
from agentfire.journal import iso
from agentfire.providers.flags import FlagError, Outcome, WriteResult, mark_sent
from agentfire.providers.flags._httpflags import HttpFlagProvider, call, json_body, retry_policy, tls_for
from agentfire.secrets import secret
from agentfire.textsafe import safe

API_VERSION = "20240415"
SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"


def _q(part: str) -> str:
    return quote(part, safe="")


def _text(value: Any) -> str:
    """A server-given id or name, inert and short enough for a table cell."""
    return safe(value, 64, keep_newlines=False)


def _open_request(items: list[Any], kind: str) -> dict[str, Any] | None:
    """The oldest approval request still waiting to do exactly `kind`, if any.

    Open: not applied, failed or scheduled for later (`status` pending) and not declined
    (`reviewStatus` pending, or approved and waiting for someone to apply it)."""
    def same(req: Any) -> bool:
        instructions = req.get("instructions")
        return (isinstance(instructions, list) and
                [i.get("kind") if isinstance(i, dict) else None for i in instructions] == [kind])

    open_ = [r for r in items if isinstance(r, dict) and r.get("status") == "pending"
             and r.get("reviewStatus") in ("pending", "approved") and same(r) and r.get("_id")]
    return min(open_, key=lambda r: r["creationDate"] if isinstance(r.get("creationDate"), int) else 0) if open_ else None


def _since(millis: Any) -> str:
    if not isinstance(millis, int) or isinstance(millis, bool):
        return "an unknown time"
    try:
        return iso(datetime.fromtimestamp(millis / 1000, tz=timezone.utc))
    except (OverflowError, OSError, ValueError):
        return "an unknown time"


class LaunchDarklyProvider(HttpFlagProvider):
    kind = "launchdarkly"
    extra_headers = {"LD-API-Version": API_VERSION}  # pin the API, whatever the token's version

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.served_notes: dict[str, str] = {}  # flag -> why a flag that is off reads on

    def _flag_url(self, flag: str) -> str:
        return f"{self.base}/api/v2/flags/{_q(self.project)}/{_q(flag)}"

    def _approval_url(self, flag: str) -> str:
        return (f"{self.base}/api/v2/projects/{_q(self.project)}/flags/{_q(flag)}"
                f"/environments/{_q(self.environment)}/approval-requests")

    def _env_state(self, body: Any, what: str) -> bool:
        envs = body.get("environments") if isinstance(body, dict) else None
        if not isinstance(envs, dict) or self.environment not in envs:
            raise FlagError(Outcome.NOT_FOUND,
                            f"{what}: the flag has no environment {self.environment!r} in project {self.project!r}")
        on = envs[self.environment].get("on") if isinstance(envs[self.environment], dict) else None
        if not isinstance(on, bool):
            raise FlagError(Outcome.ERROR, f"{what}: environments.{self.environment}.on is not a boolean")
        return on

    async def read(self, flag: str) -> bool:
        """Whether agents may be served the flag on: `environments.<env>.on`, and for a flag that
        is off, the value its offVariation serves (a kill of a flag whose offVariation is true
        changes nothing for the agents: that reads on, and the kill is a MISMATCH)."""
        r = await call(self._client, "GET", self._flag_url(flag), what="read", policy=self.policy,
                       params={"env": self.environment})
        body = json_body(r, "read")
        on = self._env_state(body, "read")
        if on:
            return True
        served, why = served_value(body, self.environment)
        if served:
            self.served_notes[flag] = why
            return True
        self.served_notes.pop(flag, None)
        return False

    async def write(self, flag: str, on: bool, *, comment: str, dry_run: bool) -> WriteResult:
        kind = "turnFlagOn" if on else "turnFlagOff"
        body = {"environmentKey": self.environment, "comment": comment, "instructions": [{"kind": kind}]}
        # turnFlagOn/Off are idempotent, so a retry after a cut connection cannot do harm
        if not dry_run:
            mark_sent()
        r = await call(
            self._client, "PATCH", self._flag_url(flag), what="write", policy=self.policy,
            ok=(200, 405), params={"dryRun": "true"} if dry_run else None,
            content=json.dumps(body).encode(), headers={"Content-Type": SEMANTIC_PATCH},
        )
        if r.status_code == 405:
            if dry_run:
                return WriteResult(detail=f"environment {self.environment} requires approval: "
                                          f"a real run would create an approval request to {kind}")
            return await self._request_approval(flag, kind, comment)
        if dry_run:
            preview = self._env_state(json_body(r, "dry run"), "dry run")
            return WriteResult(detail=f"dryRun=true accepted: {kind} would leave "
                                      f"{self.environment} {'on' if preview else 'off'}")
        return WriteResult(detail=f"semantic patch {kind} in {self.environment}")

    async def _request_approval(self, flag: str, kind: str, comment: str) -> WriteResult:
        waiting = "the flag stays as it is until it is applied"
        other = "turnFlagOn" if kind == "turnFlagOff" else "turnFlagOff"
        try:
            items = await self._approval_requests(flag)
        except FlagError as exc:  # e.g. a token that may request approval but not list requests
            items, listing = [], f"listing its approval requests failed ({exc.outcome.value}: {exc.detail})"
        else:
            listing = ""
        existing = _open_request(items, kind)
        opposite = _open_request(items, other)
        if opposite is not None:
            # an undo while the kill's request is still open (or the reverse): approving that
            # one later would silently flip the flag back; the person must know to decline it
            waiting += (f"; NOTE: approval request {_text(opposite['_id'])} to {other} is still open "
                        f"too: decline it, or approving it later reverses this")
        if existing is not None:
            who = existing.get("requestorId")
            approved = " (approved, waiting to be applied)" if existing.get("reviewStatus") == "approved" else ""
            return WriteResult(
                pending=True,
                detail=(f"approval required in {self.environment}: approval request {_text(existing['_id'])} "
                        f"to {kind} already pending since {_since(existing.get('creationDate'))}, "
                        f"requested by {_text(who) if who else 'an unnamed requester'}{approved}; "
                        f"no new request filed; {waiting}"),
            )
        body = {"description": comment or f"agentfire: {kind}", "comment": comment,
                "instructions": [{"kind": kind}]}
        # not idempotent: a second POST would file a second request, so no retry on a cut connection
        try:
            r = await call(self._client, "POST", self._approval_url(flag), what="approval request",
                           policy=self.policy, ok=(200, 201), idempotent=False, json=body)
        except FlagError as exc:  # keep the outcome, but say that approval was the way in
            exc.detail = f"approval required in {self.environment}, and {exc.detail}"
            if listing:
                exc.detail += f"; {listing}"
            raise
        doc = json_body(r, "approval request")
        request_id = doc.get("_id") if isinstance(doc, dict) else None
        status = doc.get("reviewStatus") if isinstance(doc, dict) else None
        return WriteResult(
            pending=True,
            detail=(f"approval required in {self.environment}: "
                    f"{listing + ', so ' if listing else ''}approval request {_text(request_id)} "
                    f"created ({_text(status or 'pending')}); {waiting}"),
        )

    async def _approval_requests(self, flag: str) -> list[Any]:
        """The flag's approval requests in this environment.

        The endpoint takes no filter or paging (getApprovalsForFlag): it answers the flag's
        requests in this environment, and `_open_request` picks out the open ones by instruction."""
        r = await call(self._client, "GET", self._approval_url(flag), what="list approval requests",
                       policy=self.policy)
        doc = json_body(r, "list approval requests")
        items = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise FlagError(Outcome.ERROR, "list approval requests: the answer has no items list")
        return items

    async def probe(self, flag: str) -> str:
        on = await self.read(flag)
        note = f" ({self.served_notes[flag]})" if flag in self.served_notes else ""
        return f"{self.target}: {flag} is {'on' if on else 'off'}{note}; {await self._approval_hint()}"

    async def _approval_hint(self) -> str:
        """Whether a kill here will need approval (a 405), from the environment's settings.

        Only a hint for `doctor`: a token may read flags without reading environments."""
        url = f"{self.base}/api/v2/projects/{_q(self.project)}/environments"
        offset, page = 0, 50
        for _ in range(20):  # bounded: 1000 environments is far beyond any real project
            try:
                r = await call(self._client, "GET", url, what="environments", policy=self.policy,
                               params={"limit": page, "offset": offset})
            except FlagError as exc:
                return f"approval settings unreadable ({exc.outcome.value})"
            doc = json_body(r, "environments")
            items = doc.get("items") if isinstance(doc, dict) else None
            if not isinstance(items, list):
                return "approval settings unreadable (no items)"
            for env in items:
                if isinstance(env, dict) and env.get("key") == self.environment:
                    settings = env.get("approvalSettings") or {}
                    tags = settings.get("requiredApprovalTags") or []
                    if settings.get("required") and tags:
                        return (f"changes to flags tagged {', '.join(map(str, tags))} require approval: "
                                "a kill of such a flag will be PENDING_APPROVAL")
                    if settings.get("required"):
                        return "changes here require approval: a kill will be PENDING_APPROVAL"
                    return "no approval required"
            offset += len(items)
            if not items or offset >= int(doc.get("totalCount") or 0):
                break
        return f"environment {self.environment!r} not listed in project {self.project!r}"


def from_config(section: LaunchDarklyRegion, runbook: Any) -> LaunchDarklyProvider:
    return LaunchDarklyProvider(
        section.base_url, section.project, section.environment,
        secret(section.token_env, what="LaunchDarkly access token"),
        timeout_s=section.timeout_seconds, policy=retry_policy(runbook),
        tls=tls_for(section, runbook),
    )


# --- the agent's side --------------------------------------------------------------------------


def openfeature_provider(section: LaunchDarklyRegion, runbook: Any, *, oneshot: bool = False) -> Any:
    """What agents evaluate with: LaunchDarkly's server SDK (streaming by default) behind
    `launchdarkly-openfeature-server`, with the environment's SDK key. Never an access token."""
    from agentfire.agentside import ProviderSpec, SourceUnavailable

    if not section.sdk_key_env:
        raise SourceUnavailable(
            "no sdk_key_env for this region: agents evaluate LaunchDarkly flags with the "
            f"{section.environment!r} environment's SDK key (never an API access token)")
    env = section.sdk_key_env
    changes = [0]  # bumped on every change to the SDK's flag data: answers are memoised between

    def build() -> Any:
        from ld_openfeature import LaunchDarklyProvider as OFProvider
        from ldclient.config import Config, HTTPConfig

        key = secret(env, what="LaunchDarkly SDK key")
        if key.startswith("api-"):
            raise SourceUnavailable(f"${env} holds an API access token: agents need the environment's "
                                    "SDK key (sdk-...), which can only read flags")
        http = HTTPConfig(
            connect_timeout=min(section.timeout_seconds, section.init_timeout_seconds),
            read_timeout=300.0 if section.stream else section.timeout_seconds,  # SSE heartbeats ~3 min
            ca_certs=str(runbook.resolve_path(section.ca_file)) if section.ca_file else _ca_bundle(),
            cert_file=str(runbook.resolve_path(section.client_cert_file)) if section.client_cert_file else None,
        )
        kw: dict[str, Any] = {}
        if section.sdk_base_uri:
            kw["base_uri"] = section.sdk_base_uri
        if section.stream_uri:
            kw["stream_uri"] = section.stream_uri
        if section.events_uri:
            kw["events_uri"] = section.events_uri
        config = Config(key, stream=section.stream, poll_interval=section.poll_interval_seconds,
                        send_events=section.send_events and not oneshot, http=http,
                        diagnostic_opt_out=oneshot, feature_store=_versioned_store(changes), **kw)
        return OFProvider(config, start_wait=section.init_timeout_seconds)

    if section.stream:
        how, bound = "LaunchDarkly streaming: within about a second", 1.0
    else:
        how, bound = f"LaunchDarkly SDK polls every {section.poll_interval_seconds:g} s", section.poll_interval_seconds
    return ProviderSpec(build=build, label=f"LaunchDarkly SDK ({section.environment})",
                        propagation=how, propagation_s=bound, version=lambda: changes[0])


def _versioned_store(changes: list[int]) -> Any:
    """The SDK's in-memory feature store, counting its changes (init, upsert, delete): between two
    changes an evaluation for the same context gives the same answer (bucketing is a hash of the
    context key), so the guard memoises it instead of paying the SDK's ~50 us per call."""
    from ldclient.feature_store import InMemoryFeatureStore

    class VersionedStore(InMemoryFeatureStore):
        def init(self, all_data: Any) -> None:
            super().init(all_data)
            changes[0] += 1

        def upsert(self, kind: Any, item: Any) -> None:
            super().upsert(kind, item)
            changes[0] += 1

        def delete(self, kind: Any, key: str, version: int) -> None:
            super().delete(kind, key, version)
            changes[0] += 1

    return VersionedStore()


def _ca_bundle() -> str | None:
    """SSL_CERT_FILE / REQUESTS_CA_BUNDLE, which the SDK's urllib3 pool does not read by itself."""
    import os

    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(name)
        if value:
            return value
    return None


def served_value(flag_doc: Any, environment: str) -> tuple[bool | None, str]:
    """What LaunchDarkly serves agents from the flag's REST representation, when it is off: the
    value of its `offVariation` (no offVariation: the SDK's default, which agents pass as off).
    None when the flag is on (then targeting decides)."""
    env = (flag_doc.get("environments") or {}).get(environment) if isinstance(flag_doc, dict) else None
    if not isinstance(env, dict) or env.get("on") is not False:
        return None, ""
    off = env.get("offVariation")
    variations = flag_doc.get("variations")
    if off is None:
        return False, "off, no offVariation: agents get their default (off)"
    if not isinstance(off, int) or not isinstance(variations, list) or not 0 <= off < len(variations):
        return True, f"off, but offVariation {off!r} names no variation"
    value = variations[off].get("value") if isinstance(variations[off], dict) else None
    if value is False:
        return False, "off: serves offVariation false"
    return True, f"off, but its offVariation ({off}) serves {json.dumps(value)}"
