"""Where watch's alerts go: Alertmanager (v2 API), a Slack incoming webhook, PagerDuty Events API
v2 and a generic JSON webhook. Each route turns one alert document (agentfire.watch.Alert.to_json)
into its vendor's payload; sending goes through agentfire._http (bounded retries that honour
429 Retry-After). Secrets (Slack webhook URLs, PagerDuty routing keys, tokens) come from the
environment variables the route names, and never appear in a message or an error.

- Alertmanager: POST {url}/api/v2/alerts, a list of alerts with labels (alertname, agent, kind,
  tool, signature, severity), annotations (summary, description, trace ids and links, commands),
  startsAt, generatorURL (the first trace's UI link) and endsAt: set to the resolve time when
  resolved, else a few rounds ahead (watch re-sends every firing alert each round, as Prometheus
  does, so a watch that stops lets Alertmanager expire them).
- PagerDuty: POST {url or https://events.pagerduty.com}/v2/enqueue, event_action trigger (again
  on update: same dedup_key, PagerDuty updates the open incident) or resolve; dedup_key per
  signature; payload.summary <= 1024 characters, severity critical/error/warning/info,
  custom_details, links.
- Slack: POST the webhook URL {"text": fallback, "blocks": [...]}: header <= 150 characters,
  section text <= 3000, <= 10 fields of <= 2000, <= 50 blocks.
- webhook: POST {"version": 1, "status": "firing"|"resolved", "alert": {...}}.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from agentfire.textsafe import neutralise

PAGERDUTY_URL = "https://events.pagerduty.com"
PD_SUMMARY_MAX = 1024
PD_DEDUP_MAX = 255
SLACK_HEADER_MAX = 150
SLACK_TEXT_MAX = 3000
SLACK_FIELD_MAX = 2000
SLACK_FIELDS_MAX = 10
AM_ALERTNAME = "AgentOffRails"


class DeliveryError(Exception):
    """A route did not take the alert (its answer, or why it could not be reached)."""


def _cut(text: Any, limit: int) -> str:
    s = neutralise(str(text if text is not None else ""))
    return s if len(s) <= limit else s[: limit - 1] + "…"


@dataclass
class Delivery:
    route: str
    ok: bool
    status: int | None
    detail: str
    tries: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"route": self.route, "ok": self.ok, "status": self.status, "detail": self.detail,
                "tries": self.tries}


# --- payloads -------------------------------------------------------------------------------


def alertmanager_alert(a: dict[str, Any], *, ends_at: str) -> dict[str, Any]:
    """One entry of POST /api/v2/alerts (labels and annotations are strings)."""
    labels = {"alertname": AM_ALERTNAME, "agent": a["agent"], "kind": a["kind"],
              "tool": a.get("tool") or "-", "signature": a["signature_id"],
              "severity": a["severity"], "rule": a.get("rule") or "-", "source": "agentfire"}
    if a.get("drill"):
        labels["drill"] = "true"
    ann = {
        "summary": _cut(a["summary"], 1000), "description": _cut(a["sentence"], 4000),
        "first_trace_id": a["first"]["trace_id"], "latest_trace_id": a["latest"]["trace_id"],
        "off_rails_step": str(a.get("step")), "trajectories": str(a["trajectories"]),
        "distinct_users": str(a["distinct_users"]),
        "still_running": str(a["still_running"]) if a.get("still_running") is not None else "unknown",
        "runbook": a["commands"]["runbook"], "blast": a["commands"]["blast"],
    }
    for which in ("first", "latest"):
        if a[which].get("url"):
            ann[f"{which}_trace_url"] = a[which]["url"]
    doc: dict[str, Any] = {"labels": labels, "annotations": ann, "startsAt": a["fired_at"], "endsAt": ends_at}
    if a["first"].get("url"):
        doc["generatorURL"] = a["first"]["url"]
    return doc


def pagerduty_event(a: dict[str, Any], routing_key: str, action: str) -> dict[str, Any]:
    if action == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": a["dedup_key"][:PD_DEDUP_MAX]}
    links = [{"href": a[w]["url"], "text": f"{w} trace {a[w]['trace_id']}"}
             for w in ("first", "latest") if a[w].get("url")]
    details = {
        "verdict": a["sentence"], "kind": a["kind"], "tool": a.get("tool"), "off_rails_step": a.get("step"),
        "first_trace_id": a["first"]["trace_id"], "latest_trace_id": a["latest"]["trace_id"],
        "trajectories": a["trajectories"], "distinct_users": a["distinct_users"],
        "still_running": a.get("still_running"), "runbook": a["commands"]["runbook"],
        "blast": a["commands"]["blast"], "signature": a.get("signature"), "drill": bool(a.get("drill")),
    }
    return {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": a["dedup_key"][:PD_DEDUP_MAX],
        "payload": {"summary": _cut(a["summary"], PD_SUMMARY_MAX), "source": f"agentfire watch ({a['agent']})",
                    "severity": a["severity"], "timestamp": a["fired_at"], "component": a["agent"],
                    "group": a.get("tool") or a["kind"], "class": a["kind"], "custom_details": details},
        "links": links, "client": "agentfire watch",
    }


def slack_message(a: dict[str, Any], action: str) -> dict[str, Any]:
    status = {"trigger": "PAGE", "update": "UPDATE", "resolve": "RESOLVED"}[action]
    drill = "[DRILL] " if a.get("drill") else ""
    header = _cut(f"{drill}{status}: {a['agent']} {a['kind'].replace('_', ' ')}"
                  + (f" at {a['tool']}" if a.get("tool") else ""), SLACK_HEADER_MAX)

    def trace(which: str) -> str:
        t = a[which]
        tid = _mrkdwn(t["trace_id"])
        return f"<{t['url']}|{tid}>" if t.get("url") else f"`{tid}`"

    running = a.get("still_running")
    fields = [
        f"*Trajectories*\n{a['trajectories']}", f"*Distinct users*\n{a['distinct_users']}",
        f"*Still running*\n{running if running is not None else 'unknown'}",
        f"*Severity*\n{a['severity']}",
        f"*First trace*\n{trace('first')}", f"*Latest trace*\n{trace('latest')}",
        f"*Off-rails step*\n{a.get('step')}", f"*Signature*\n`{a['signature_id']}`",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(_mrkdwn(a["sentence"]), SLACK_TEXT_MAX)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _cut(f, SLACK_FIELD_MAX)}
                                       for f in fields[:SLACK_FIELDS_MAX]]},
    ]
    if action != "resolve":
        cmds = f"```{a['commands']['runbook']}\n{a['commands']['blast']}```"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(cmds, SLACK_TEXT_MAX)}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _cut(f"agentfire watch · since {a['fired_at']}"
                                        + (f" · resolved {a['resolved_at']}" if a.get("resolved_at") else ""), 300)}]})
    return {"text": _cut(f"{drill}{status}: {a['summary']}", SLACK_TEXT_MAX), "blocks": blocks}


def _mrkdwn(text: str) -> str:
    """Slack's three control characters escaped, so trace text cannot make links or mentions."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_body(a: dict[str, Any], action: str) -> dict[str, Any]:
    return {"version": 1, "status": "resolved" if action == "resolve" else "firing", "action": action,
            "alert": a}


# --- sending --------------------------------------------------------------------------------


class Route:
    """One configured route (config.WatchRoute) with its secrets resolved at send time."""

    def __init__(self, spec: Any, every_seconds: float = 60.0):
        self.spec = spec
        self.kind = spec.kind
        self.label = spec.label
        self.every_seconds = every_seconds

    @property
    def resends(self) -> bool:
        """Alertmanager wants every firing alert again each round; the others only on change."""
        return self.kind == "alertmanager"

    def _url(self) -> str:
        from agentfire.secrets import secret

        if self.spec.url_env:
            return secret(self.spec.url_env, what=f"watch route {self.label}'s URL")
        if self.spec.url:
            return self.spec.url
        return PAGERDUTY_URL

    def _headers(self) -> dict[str, str]:
        from agentfire.secrets import secret

        h = {"Content-Type": "application/json", "User-Agent": "agentfire-watch"}
        if self.spec.token_env:
            h["Authorization"] = "Bearer " + secret(self.spec.token_env, what=f"watch route {self.label}'s token")
        return h

    def request(self, alerts: list[tuple[dict[str, Any], str]], *, ends_in_s: float) -> list[tuple[str, Any]]:
        """(url, body) pairs to POST for these (alert, action) pairs; action trigger|update|resolve."""
        from agentfire.trajectory import iso
        from datetime import datetime, timedelta, timezone

        base = self._url().rstrip("/")
        if self.kind == "alertmanager":
            ahead = iso(datetime.now(timezone.utc) + timedelta(seconds=ends_in_s))
            body = [alertmanager_alert(a, ends_at=(a.get("resolved_at") or ahead) if act == "resolve" else ahead)
                    for a, act in alerts]
            return [(base + "/api/v2/alerts", body)] if body else []
        if self.kind == "pagerduty":
            from agentfire.secrets import secret

            key = secret(self.spec.routing_key_env, what=f"watch route {self.label}'s routing key")
            url = base if base.endswith("/v2/enqueue") else base + "/v2/enqueue"
            return [(url, pagerduty_event(a, key, "resolve" if act == "resolve" else "trigger")) for a, act in alerts]
        if self.kind == "slack":
            return [(base, slack_message(a, act)) for a, act in alerts]
        return [(base, webhook_body(a, act)) for a, act in alerts]

    async def send(self, client: Any, alerts: list[tuple[dict[str, Any], str]], *, ends_in_s: float) -> list[Delivery]:
        """POST each request; one Delivery per request (Alertmanager: one for the batch)."""
        import httpx

        from agentfire import _http
        from agentfire.errors import AgentfireError

        try:
            requests = self.request(alerts, ends_in_s=ends_in_s)
        except AgentfireError as exc:  # a missing env variable: said, not raised mid-round
            return [Delivery(self.label, False, None, str(exc))]
        policy = _http.RetryPolicy(max_retries=self.spec.max_retries, cap_seconds=30.0)
        out = []
        for url, body in requests:
            counting = _Counting(client)
            try:
                resp = await _http.request(counting, "POST", url, policy=policy, json=body,
                                           headers=self._headers(), timeout=self.spec.timeout_seconds)
                ok = resp.status_code in (200, 201, 202, 204)
                detail = "delivered" if ok else f"HTTP {resp.status_code}: {_cut(resp.text, 300)}"
                out.append(Delivery(self.label, ok, resp.status_code, detail, counting.n))
            except _http.RetriesExhausted as exc:
                out.append(Delivery(self.label, False, exc.response.status_code,
                                    f"HTTP {exc.response.status_code} after {exc.tries} tries"
                                    + (" (rate limited)" if exc.response.status_code == 429 else ""), exc.tries))
            except httpx.TimeoutException:
                out.append(Delivery(self.label, False, None, f"no answer within {self.spec.timeout_seconds:g} s",
                                    counting.n))
            except httpx.TransportError as exc:
                out.append(Delivery(self.label, False, None, f"unreachable: {type(exc).__name__}", counting.n))
            except asyncio.TimeoutError:
                out.append(Delivery(self.label, False, None, "deadline passed", counting.n))
        return out


class _Counting:
    """The client as agentfire._http sees it, counting every attempt (retries too)."""

    def __init__(self, client: Any):
        self.client = client
        self.n = 0

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        self.n += 1
        return await self.client.request(*args, **kwargs)
