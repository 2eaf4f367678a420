"""The LaunchDarkly kill fault matrix, through the CLI, against the contract fake.

One fake serves every LaunchDarkly region (one environment each); a flagd region rides along to
show that a failing LaunchDarkly region never hides the others. For every failure the region's
outcome is right, no region is CONFIRMED unless the fake holds the flag off, the exit code says
whether the agent is off everywhere, the journal records what happened, and no token leaks.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.conftest import REPO, run_agentfire
from tests.fakes.launchdarkly import (  # noqa: F401  (launchdarkly_fake is a fixture)
    LaunchDarklyFake, conform, launchdarkly_fake,
)

TOKEN = "api-7c1e-secret-ld-token-value"
OTHER_TOKEN = "api-0bad-secret-unknown-token"
FLAG = "agent.enabled"
LD_REGIONS = {"ld-prod": "production", "ld-staging": "staging", "ld-eu": "eu"}
DEFAULT = "ld-prod,ld-staging,ld-eu,local"
REGION_ENV = {**LD_REGIONS, "ld-badtoken": "production", "ld-noproject": "production", "ld-quick": "staging"}


def write_runbook(root: Path, base_url: str, *, timeout_s: float = 30.0, deadline: float = 20,
                  max_retries: int = 2, retry_cap: float = 2.0) -> None:
    regions: dict[str, Any] = {
        name: {"kind": "launchdarkly", "base_url": base_url, "project": "default",
               "environment": env, "timeout_seconds": timeout_s}
        for name, env in LD_REGIONS.items()
    }
    regions["ld-badtoken"] = {"kind": "launchdarkly", "base_url": base_url, "project": "default",
                              "environment": "production", "token_env": "LD_OTHER_TOKEN"}
    regions["ld-noproject"] = {"kind": "launchdarkly", "base_url": base_url, "project": "nope",
                               "environment": "production"}
    regions["ld-quick"] = {"kind": "launchdarkly", "base_url": base_url, "project": "default",
                           "environment": "staging", "timeout_seconds": 0.5}
    regions["local"] = {"kind": "flagd", "path": ".agentfire/flags/local.flagd.json", "create": True}
    doc = {
        "version": 1,
        "agent": {"name": "support-agent", "flag": FLAG, "fallback": "fallbacks/support-agent.md"},
        "regions": regions,
        "kill": {"deadline_seconds": deadline, "max_retries": max_retries, "retry_cap_seconds": retry_cap},
        "journal": {"dir": ".agentfire/incidents"},
    }
    (root / "runbook.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML


@pytest.fixture
def ld(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launchdarkly_fake: LaunchDarklyFake):
    """(root, fake): a runbook in tmp_path pointing at the started fake, tokens in the env."""
    root = tmp_path / "ops"
    root.mkdir()
    shutil.copytree(REPO / "fallbacks", root / "fallbacks")
    launchdarkly_fake.tokens = {TOKEN}
    write_runbook(root, launchdarkly_fake.url)
    monkeypatch.chdir(root)
    monkeypatch.setenv("AGENTFIRE_CONFIG", str(root / "runbook.yaml"))
    monkeypatch.setenv("LD_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("LD_OTHER_TOKEN", OTHER_TOKEN)
    monkeypatch.delenv("AGENTFIRE_INCIDENT", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    return root, launchdarkly_fake


def journal(root: Path, incident: str) -> list[dict[str, Any]]:
    path = root / ".agentfire/incidents" / f"{incident}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def flagd_on(root: Path) -> bool:
    doc = json.loads((root / ".agentfire/flags/local.flagd.json").read_text())
    return doc["flags"][FLAG]["defaultVariant"] == "on"


def no_secret_anywhere(root: Path, *outputs: str) -> None:
    texts = list(outputs)
    texts += [p.read_text() for p in (root / ".agentfire/incidents").glob("*.jsonl")] \
        if (root / ".agentfire/incidents").is_dir() else []
    for text in texts:
        assert TOKEN not in text and OTHER_TOKEN not in text


def check_kill(root: Path, fake: LaunchDarklyFake, r: Any, incident: str) -> dict[str, dict[str, Any]]:
    """The invariants every kill keeps, whatever failed: returns region -> JSON row."""
    doc = r.json()
    rows = {x["region"]: x for x in doc["regions"]}
    for name, row in rows.items():
        if row["outcome"] == "CONFIRMED":  # never CONFIRMED unless the provider really holds it off
            live_on = flagd_on(root) if name == "local" else fake.is_on(FLAG, REGION_ENV[name])
            assert live_on is False, (name, row)
            assert row["before"] is True and row["after"] is False
    all_off = all(x["outcome"] in ("CONFIRMED", "ALREADY_OFF") for x in rows.values())
    assert doc["all_off"] is all_off
    assert r.exit_code == (0 if all_off else 1), r
    # the journal says what happened, per region, exactly as reported
    kills = [e for e in journal(root, incident) if e["action"] == "kill"]
    assert kills, "a kill is always journaled"
    journaled = {x["region"]: x for x in kills[-1]["regions"]}
    assert {n: (x["outcome"], x["detail"]) for n, x in journaled.items()} == \
        {n: (x["outcome"], x["detail"]) for n, x in rows.items()}
    assert kills[-1]["outcome"] == ("all_off" if all_off else "incomplete")
    no_secret_anywhere(root, r.stdout, r.stderr)
    return rows


def _approval(fake: LaunchDarklyFake) -> None:
    fake.envs["production"].approval_required = True


# fault on the production region -> (outcome of ld-prod, is the flag still on afterwards)
MATRIX: dict[str, tuple[Callable[[LaunchDarklyFake], Any], str, bool]] = {
    "405 approval required": (_approval, "PENDING_APPROVAL", True),
    "409 once": (lambda f: f.inject("production", "status", status=409, times=1), "CONFIRMED", False),
    "429 every time": (lambda f: f.inject("production", "status", status=429, retry_after=0),
                       "RATE_LIMITED", True),
    "503 every time": (lambda f: f.inject("production", "status", status=503), "UNREACHABLE", True),
    "502 once": (lambda f: f.inject("production", "status", status=502, times=1), "CONFIRMED", False),
    "cut connection on write": (lambda f: f.inject("production", "cut"), "UNREACHABLE", True),
    "cut connection on read": (lambda f: f.inject("production", "cut", on="read"), "UNREACHABLE", True),
    "cut once on write": (lambda f: f.inject("production", "cut", times=1), "CONFIRMED", False),
    "403 forbidden": (lambda f: f.inject("production", "status", status=403, on="any"), "AUTH", True),
    "404 on read": (lambda f: f.inject("production", "status", status=404, on="read"), "NOT_FOUND", True),
    "write succeeds but flag stays on": (lambda f: f.inject("production", "stuck_on"), "MISMATCH", True),
    "400 on write": (lambda f: f.inject("production", "status", status=400), "ERROR", True),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_fault_matrix(ld, cli, case: str) -> None:
    root, fake = ld
    setup, want, still_on = MATRIX[case]
    setup(fake)
    inc = "inc-" + case.replace(" ", "-")
    r = cli("--incident", inc, "--new", "kill", "--region", DEFAULT, "--yes", "--json")
    rows = check_kill(root, fake, r, inc)
    assert rows["ld-prod"]["outcome"] == want, (case, rows["ld-prod"], r)
    assert rows["ld-prod"]["detail"], "a failure always says why"
    assert fake.is_on(FLAG, "production") is still_on
    # one broken region never hides the others
    for other in ("ld-staging", "ld-eu", "local"):
        assert rows[other]["outcome"] == "CONFIRMED", rows[other]
    assert fake.is_on(FLAG, "staging") is False and fake.is_on(FLAG, "eu") is False


def test_approval_request_is_created_and_named(ld, cli) -> None:
    root, fake = ld
    fake.envs["production"].approval_required = True
    r = cli("--incident", "inc-appr", "--new", "kill", "--region", "ld-prod", "--yes", "--json", "--reason", "wrong emails")
    rows = check_kill(root, fake, r, "inc-appr")
    row = rows["ld-prod"]
    assert row["outcome"] == "PENDING_APPROVAL" and row["after"] is True
    assert len(fake.approvals) == 1
    appr = fake.approvals[0]
    assert appr["env"] == "production" and appr["instructions"] == [{"kind": "turnFlagOff"}]
    assert "wrong emails" in appr["description"]
    assert appr["_id"] in row["detail"]  # the report names the approval request
    assert "NOT confirmed off" in r.stderr


def test_approval_request_refused_says_approval_was_required(ld, cli) -> None:
    root, fake = ld
    fake.envs["production"].approval_required = True
    fake.inject("production", "status", status=403, on="approval")
    r = cli("--incident", "inc-appr403", "--new", "kill", "--region", "ld-prod,ld-eu", "--yes", "--json")
    rows = check_kill(root, fake, r, "inc-appr403")
    assert rows["ld-prod"]["outcome"] == "AUTH"
    assert rows["ld-prod"]["detail"].startswith("approval required in production, and approval request: HTTP 403")
    assert not fake.approvals and fake.is_on(FLAG, "production") is True
    assert rows["ld-eu"]["outcome"] == "CONFIRMED"


def journaled_detail(root: Path, incident: str, action: str, region: str) -> str:
    entry = [e for e in journal(root, incident) if e["action"] == action][-1]
    return {x["region"]: x for x in entry["regions"]}[region]["detail"]


def test_second_kill_reuses_the_pending_approval_request(ld, cli) -> None:
    """The walk re-runs kill while blast finds trajectories open: approvers see ONE request."""
    root, fake = ld
    fake.envs["production"].approval_required = True
    first = check_kill(root, fake, cli("--incident", "inc-again", "--new", "kill", "--region", "ld-prod", "--yes",
                                       "--json"), "inc-again")["ld-prod"]
    assert first["outcome"] == "PENDING_APPROVAL" and len(fake.approvals) == 1
    request_id = fake.approvals[0]["_id"]
    assert request_id in first["detail"] and "created" in first["detail"]
    r = cli("--incident", "inc-again", "kill", "--region", "ld-prod", "--yes", "--json")
    again = check_kill(root, fake, r, "inc-again")["ld-prod"]
    assert again["outcome"] == "PENDING_APPROVAL" and again["after"] is True
    assert len(fake.approvals) == 1  # no second request filed
    assert len(fake.requests_for("production", "POST")) == 1
    assert f"approval request {request_id} to turnFlagOff already pending since " in again["detail"]
    assert "requested by member-agentfire" in again["detail"] and "no new request filed" in again["detail"]
    assert request_id in journaled_detail(root, "inc-again", "kill", "ld-prod")
    assert fake.is_on(FLAG, "production") is True


def test_kill_reuses_an_open_request_someone_else_filed(ld, cli) -> None:
    root, fake = ld
    fake.envs["production"].approval_required = True
    older = fake.add_approval(FLAG, "production", "turnFlagOff", requestor="member-oncall-2",
                              created=1764000000000)  # 2025-11-24T16:00:00Z
    newer = fake.add_approval(FLAG, "production", "turnFlagOff", requestor="member-oncall-3",
                              created=1764000600000)
    row = check_kill(root, fake, cli("--incident", "inc-other", "--new", "kill", "--region", "ld-prod", "--yes",
                                     "--json"), "inc-other")["ld-prod"]
    assert row["outcome"] == "PENDING_APPROVAL"
    assert len(fake.approvals) == 2 and not fake.requests_for("production", "POST")
    assert older["_id"] in row["detail"] and newer["_id"] not in row["detail"]  # the oldest one
    assert "already pending since 2025-11-24T16:00:00.000Z, requested by member-oncall-2" in row["detail"]


@pytest.mark.parametrize("earlier", ["declined", "applied", "failed", "approved"])
def test_only_an_open_request_counts(ld, cli, earlier: str) -> None:
    """Declined, applied or failed requests are history; an approved one still waiting to be
    applied is open (applying it is the kill), so it is named, not duplicated."""
    root, fake = ld
    fake.envs["production"].approval_required = True
    old = fake.add_approval(FLAG, "production", "turnFlagOff", review="declined" if earlier == "declined"
                            else "approved", applied=earlier == "applied")
    if earlier == "failed":
        fake.approvals[-1]["status"] = old["status"] = "failed"
    row = check_kill(root, fake, cli("--incident", "inc-" + earlier, "--new", "kill", "--region", "ld-prod", "--yes",
                                     "--json"), "inc-" + earlier)["ld-prod"]
    assert row["outcome"] == "PENDING_APPROVAL"
    if earlier == "approved":
        assert len(fake.approvals) == 1
        assert old["_id"] in row["detail"] and "(approved, waiting to be applied)" in row["detail"]
        return
    assert len(fake.approvals) == 2
    created = fake.approvals[-1]
    assert created["instructions"] == [{"kind": "turnFlagOff"}] and created["reviewStatus"] == "pending"
    assert created["_id"] in row["detail"] and old["_id"] not in row["detail"]
    assert created["_id"] in journaled_detail(root, "inc-" + earlier, "kill", "ld-prod")


def test_kill_and_undo_requests_are_distinct(ld, cli) -> None:
    root, fake = ld
    # an open turnFlagOn (someone asked to turn the agent back on) is no kill request
    fake.envs["eu"].approval_required = True
    turn_on = fake.add_approval(FLAG, "eu", "turnFlagOn")
    row = check_kill(root, fake, cli("--incident", "inc-dist", "--new", "kill", "--region", "ld-eu", "--yes",
                                     "--json"), "inc-dist")["ld-eu"]
    assert row["outcome"] == "PENDING_APPROVAL"
    assert [a["instructions"] for a in fake.approvals] == [[{"kind": "turnFlagOn"}], [{"kind": "turnFlagOff"}]]
    assert f"approval request {fake.approvals[1]['_id']} created" in row["detail"]
    # not reused, but named: approving it later would turn the agent back on behind the kill
    assert f"approval request {turn_on['_id']} to turnFlagOn is still open too: decline it" in row["detail"]

    # the other way: production was killed, then needs approval; an open turnFlagOff is no undo request
    assert check_kill(root, fake, cli("--incident", "inc-dist2", "--new", "kill", "--region", "ld-prod", "--yes",
                                      "--json"), "inc-dist2")["ld-prod"]["outcome"] == "CONFIRMED"
    fake.envs["production"].approval_required = True
    turn_off = fake.add_approval(FLAG, "production", "turnFlagOff")
    undo = cli("--incident", "inc-dist2", "kill", "--undo", "--region", "ld-prod", "--yes", "--json")
    assert undo.exit_code == 1, undo
    urow = undo.json()["regions"][0]
    assert urow["outcome"] == "PENDING_APPROVAL"
    assert f"approval request {turn_off['_id']} to turnFlagOff is still open too" in urow["detail"]
    prod = [a for a in fake.approvals if a["env"] == "production"]
    assert [a["instructions"] for a in prod] == [[{"kind": "turnFlagOff"}], [{"kind": "turnFlagOn"}]]
    undo_id = prod[1]["_id"]
    assert undo_id in urow["detail"] and undo_id in journaled_detail(root, "inc-dist2", "kill.undo", "ld-prod")
    # and a second undo names the undo's own request
    again = cli("--incident", "inc-dist2", "kill", "--undo", "--region", "ld-prod", "--yes", "--json")
    arow = again.json()["regions"][0]
    assert arow["outcome"] == "PENDING_APPROVAL", arow
    assert f"approval request {undo_id} to turnFlagOn already pending since" in arow["detail"]
    assert len([a for a in fake.approvals if a["env"] == "production"]) == 2
    assert undo_id in journaled_detail(root, "inc-dist2", "kill.undo", "ld-prod")
    assert fake.is_on(FLAG, "production") is False


def test_listing_refused_falls_back_to_creating_one(ld, cli) -> None:
    root, fake = ld
    fake.envs["production"].approval_required = True
    fake.add_approval(FLAG, "production", "turnFlagOff")  # invisible to a token that may not list
    fake.inject("production", "status", status=403, on="approval-list")
    r = cli("--incident", "inc-nolist", "--new", "kill", "--region", "ld-prod", "--yes", "--json")
    row = check_kill(root, fake, r, "inc-nolist")["ld-prod"]
    assert row["outcome"] == "PENDING_APPROVAL"
    assert len(fake.approvals) == 2
    created = fake.approvals[-1]["_id"]
    assert row["detail"].startswith("approval required in production: listing its approval requests "
                                    "failed (AUTH: list approval requests: HTTP 403")
    assert f"so approval request {created} created (pending)" in row["detail"]
    assert created in journaled_detail(root, "inc-nolist", "kill", "ld-prod")


def test_listing_and_creating_refused_says_both(ld, cli) -> None:
    root, fake = ld
    fake.envs["production"].approval_required = True
    fake.inject("production", "status", status=403, on="approval-list")
    fake.inject("production", "status", status=403, on="approval")
    row = check_kill(root, fake, cli("--incident", "inc-none", "--new", "kill", "--region", "ld-prod", "--yes",
                                     "--json"), "inc-none")["ld-prod"]
    assert row["outcome"] == "AUTH" and not fake.approvals
    assert row["detail"].startswith("approval required in production, and approval request: HTTP 403")
    assert "listing its approval requests failed (AUTH" in row["detail"]


def test_fake_lists_approval_requests_as_the_api_does(launchdarkly_fake: LaunchDarklyFake) -> None:
    from launchdarkly_api.models.flag_config_approval_requests_response import (
        FlagConfigApprovalRequestsResponse,
    )

    fake = launchdarkly_fake
    for review, applied in (("pending", False), ("approved", False), ("approved", True), ("declined", False)):
        fake.add_approval(FLAG, "production", "turnFlagOff", review=review, applied=applied)
    fake.add_approval(FLAG, "eu", "turnFlagOff")
    url = f"{fake.url}/api/v2/projects/default/flags/{FLAG}/environments/production/approval-requests"
    r = httpx.get(url, headers={"Authorization": next(iter(fake.tokens))})
    assert r.status_code == 200
    doc = r.json()
    conform(FlagConfigApprovalRequestsResponse, doc)
    assert [(a["reviewStatus"], a["status"]) for a in doc["items"]] == [
        ("pending", "pending"), ("approved", "pending"), ("approved", "completed"), ("declined", "pending")]
    assert not fake.errors


def test_missing_and_wrong_credentials(ld, cli) -> None:
    root, fake = ld
    r = cli("--incident", "inc-auth", "--new", "kill", "--region", "ld-badtoken,ld-noproject,ld-staging", "--yes", "--json")
    rows = check_kill(root, fake, r, "inc-auth")
    assert rows["ld-badtoken"]["outcome"] == "AUTH"
    assert rows["ld-noproject"]["outcome"] == "NOT_FOUND"
    assert rows["ld-staging"]["outcome"] == "CONFIRMED"
    assert fake.is_on(FLAG, "production") is True


def test_hung_write_is_cut_at_the_deadline_and_others_still_reported(ld, cli) -> None:
    root, fake = ld
    fake.inject("production", "hang", seconds=30)
    started = time.monotonic()
    r = cli("--incident", "inc-hang", "--new", "kill", "--region", DEFAULT, "--yes", "--json", "--deadline", "2")
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 3, elapsed  # generous bound: the deadline plus start-up and teardown
    rows = check_kill(root, fake, r, "inc-hang")
    assert rows["ld-prod"]["outcome"] == "TIMEOUT"
    assert "write was sent and is not confirmed" in rows["ld-prod"]["detail"]
    assert [rows[n]["outcome"] for n in ("ld-staging", "ld-eu", "local")] == ["CONFIRMED"] * 3


def test_request_timeout_is_timeout_within_the_deadline(ld, cli) -> None:
    root, fake = ld
    fake.inject("staging", "hang", on="read", seconds=5)
    r = cli("--incident", "inc-slow", "--new", "kill", "--region", "ld-quick,ld-eu", "--yes", "--json")
    rows = check_kill(root, fake, r, "inc-slow")
    assert rows["ld-quick"]["outcome"] == "TIMEOUT"
    assert "request timeout" in rows["ld-quick"]["detail"]
    # the first try and one retry: a timed-out server is retried once (RetryPolicy.timeout_retries),
    # not max_retries times, so a hung region gives its answer fast
    assert len(fake.requests_for("staging", "GET")) == 2
    assert rows["ld-eu"]["outcome"] == "CONFIRMED"


def _gap(fake: LaunchDarklyFake, env: str) -> float:
    patches = fake.requests_for(env, "PATCH")
    assert [p.answer for p in patches] == ["429", "200"], patches
    return patches[1].t - patches[0].t


def test_retries_honour_retry_after_and_ratelimit_reset(ld, cli) -> None:
    root, fake = ld
    fake.inject("production", "status", status=429, retry_after=1, times=1)
    fake.inject("staging", "status", status=429, reset_in=1.2, times=1)  # X-Ratelimit-Reset, epoch ms
    fake.inject("eu", "status", status=429, retry_after=30, times=1)  # beyond the 2 s cap
    r = cli("--incident", "inc-429", "--new", "kill", "--region", "ld-prod,ld-staging,ld-eu", "--yes", "--json")
    rows = check_kill(root, fake, r, "inc-429")
    assert {x["outcome"] for x in rows.values()} == {"CONFIRMED"}
    assert 0.9 <= _gap(fake, "production") < 3.0
    assert 0.9 <= _gap(fake, "staging") < 3.2
    assert 1.9 <= _gap(fake, "eu") < 4.0  # capped at retry_cap_seconds, not the 30 s asked


def test_requests_follow_the_api_contract(ld, cli) -> None:
    root, fake = ld
    r = cli("--incident", "inc-contract", "--new", "kill", "--region", "ld-prod", "--yes", "--json", "--reason", "r1")
    assert check_kill(root, fake, r, "inc-contract")["ld-prod"]["outcome"] == "CONFIRMED"
    reqs = fake.requests_for("production")
    assert [(q.method, q.query) for q in reqs] == [
        ("GET", {"env": ["production"]}), ("PATCH", {}), ("GET", {"env": ["production"]})]
    for q in reqs:
        assert q.headers["Authorization"] == "<valid token>"  # the token itself, no "Bearer"
        assert q.headers["LD-API-Version"] == "20240415"
    patch = reqs[1]
    assert patch.headers["Content-Type"] == "application/json; domain-model=launchdarkly.semanticpatch"
    assert patch.body["environmentKey"] == "production"
    assert patch.body["instructions"] == [{"kind": "turnFlagOff"}]
    assert "inc-contract" in patch.body["comment"] and "r1" in patch.body["comment"]


def test_fake_refuses_what_the_real_api_refuses(launchdarkly_fake: LaunchDarklyFake) -> None:
    fake = launchdarkly_fake
    body = {"environmentKey": "production", "instructions": [{"kind": "turnFlagOff"}]}
    url = f"{fake.url}/api/v2/flags/default/{FLAG}"
    token = next(iter(fake.tokens))
    plain = httpx.patch(url, json=body, headers={"Authorization": token})
    assert plain.status_code == 400 and plain.json()["code"] == "invalid_request"
    bearer = httpx.get(url, params={"env": "production"}, headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401
    assert fake.is_on(FLAG, "production") is True


def test_fake_validation_catches_drift() -> None:
    from launchdarkly_api.models.feature_flag import FeatureFlag

    fake = LaunchDarklyFake()
    fake.add_env("production")
    fake.add_flag(FLAG)
    good = fake.flag_json(fake.flags[FLAG], None)
    conform(FeatureFlag, good)
    invented = json.loads(json.dumps(good))
    invented["environments"]["production"]["enabled"] = False  # an Unleash-ism, not LaunchDarkly
    with pytest.raises(ValueError, match="enabled"):
        conform(FeatureFlag, invented)
    wrong_type = json.loads(json.dumps(good))
    wrong_type["environments"]["production"]["on"] = "false"
    with pytest.raises(Exception):
        conform(FeatureFlag, wrong_type)


def test_dry_run_sends_dry_run_and_changes_nothing(ld, cli) -> None:
    root, fake = ld
    fake.envs["eu"].approval_required = True
    r = cli("kill", "--region", DEFAULT, "--dry-run", "--json")
    assert r.exit_code == 0, r
    rows = {x["region"]: x for x in r.json()["regions"]}
    assert {x["outcome"] for x in rows.values()} == {"DRY_RUN"}
    assert "requires approval" in rows["ld-eu"]["detail"]
    patches = [q for q in fake.requests if q.method == "PATCH"]
    assert len(patches) == 3 and all(q.query == {"dryRun": ["true"]} for q in patches)
    assert not fake.approvals  # a dry run files no approval request
    assert all(fake.is_on(FLAG, env) for env in LD_REGIONS.values()) and flagd_on(root)
    no_secret_anywhere(root, r.stdout, r.stderr)
    assert not list((root / ".agentfire/incidents").glob("*.jsonl")) if (root / ".agentfire/incidents").exists() else True


def test_undo_turns_on_only_what_this_incident_turned_off(ld, cli) -> None:
    root, fake = ld
    fake.set_on(FLAG, "eu", False)  # off before the incident: must stay off
    r = cli("--incident", "inc-u", "--new", "kill", "--region", DEFAULT, "--yes", "--json")
    rows = check_kill(root, fake, r, "inc-u")
    assert rows["ld-eu"]["outcome"] == "ALREADY_OFF" and r.exit_code == 0
    u = cli("--incident", "inc-u", "kill", "--undo", "--region", DEFAULT, "--yes", "--json")
    assert u.exit_code == 0, u
    outcomes = {x["region"]: x["outcome"] for x in u.json()["regions"]}
    assert outcomes == {"ld-prod": "CONFIRMED", "ld-staging": "CONFIRMED", "ld-eu": "SKIPPED", "local": "CONFIRMED"}
    assert fake.is_on(FLAG, "production") and fake.is_on(FLAG, "staging") and not fake.is_on(FLAG, "eu")
    ons = [q.body["instructions"] for q in fake.requests if q.method == "PATCH" and
           q.body["instructions"] == [{"kind": "turnFlagOn"}]]
    assert len(ons) == 2
    undo_entry = [e for e in journal(root, "inc-u") if e["action"] == "kill.undo"][-1]
    assert undo_entry["outcome"] == "restored"
    no_secret_anywhere(root, u.stdout, u.stderr)


def test_undo_that_needs_approval_is_pending_not_restored(ld, cli) -> None:
    root, fake = ld
    assert cli("--incident", "inc-ua", "--new", "kill", "--region", "ld-prod", "--yes", "--json").exit_code == 0
    fake.envs["production"].approval_required = True
    u = cli("--incident", "inc-ua", "kill", "--undo", "--region", "ld-prod", "--yes", "--json")
    assert u.exit_code == 1
    assert u.json()["regions"][0]["outcome"] == "PENDING_APPROVAL"
    assert fake.approvals[-1]["instructions"] == [{"kind": "turnFlagOn"}]
    assert fake.is_on(FLAG, "production") is False


def test_status_reads_live_and_reports_unreadable_regions(ld, cli) -> None:
    root, fake = ld
    fake.set_on(FLAG, "staging", False)
    fake.inject("eu", "cut", on="read")
    s = cli("status", "--region", "ld-prod,ld-staging,ld-eu,ld-badtoken", "--json")
    assert s.exit_code == 1, s
    rows = {x["region"]: x for x in s.json()["regions"]}
    assert [rows[n]["on"] for n in ("ld-prod", "ld-staging", "ld-eu", "ld-badtoken")] == [True, False, None, None]
    assert rows["ld-eu"]["detail"].startswith("UNREACHABLE")
    assert rows["ld-badtoken"]["detail"].startswith("AUTH")
    assert all(q.method == "GET" for q in fake.requests)  # status never writes
    no_secret_anywhere(root, s.stdout, s.stderr)


def test_doctor_probes_read_only_and_predicts_approval(ld, cli) -> None:
    root, fake = ld
    fake.envs["eu"].approval_required = True
    d = cli("doctor", "--json")
    checks = {c["name"]: c for c in d.json()["checks"] if c["area"] == "flags"}
    assert checks["ld-prod (launchdarkly)"]["ok"] is True
    assert "no approval required" in checks["ld-prod (launchdarkly)"]["detail"]
    assert "PENDING_APPROVAL" in checks["ld-eu (launchdarkly)"]["detail"]
    assert checks["ld-badtoken (launchdarkly)"]["ok"] is False
    assert all(q.method == "GET" for q in fake.requests)
    no_secret_anywhere(root, d.stdout, d.stderr)


def test_no_token_leaks_even_without_the_redaction_net(ld, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """secrets.redact() is a safety net; the provider itself must never put a token anywhere."""
    import agentfire.secrets as secrets_mod

    class Forgetful(set):
        def add(self, value: str) -> None:  # remember nothing: redact() becomes a no-op
            pass

    monkeypatch.setattr(secrets_mod, "_SEEN", Forgetful())
    root, fake = ld
    fake.envs["production"].approval_required = True
    fake.inject("staging", "cut")
    fake.inject("eu", "status", status=500)
    r = cli("--incident", "inc-leak", "--new", "kill", "--region", "all", "--yes", "--json", "--deadline", "10")
    rows = check_kill(root, fake, r, "inc-leak")
    assert rows["ld-badtoken"]["outcome"] == "AUTH" and rows["ld-prod"]["outcome"] == "PENDING_APPROVAL"
    t = cli("--incident", "inc-leak", "kill", "--region", "all", "--yes")  # the table renderer too
    assert t.exit_code == 1 and "PENDING_APPROVAL" in t.stdout and "AUTH" in t.stdout
    no_secret_anywhere(root, t.stdout, t.stderr)


def test_rate_limit_longer_than_the_deadline_is_rate_limited_not_timeout(ld, cli) -> None:
    """A retry that would sleep past the overall deadline stops early and says RATE_LIMITED."""
    root, fake = ld
    write_runbook(root, fake.url, max_retries=4, retry_cap=5)
    fake.inject("production", "status", status=429, retry_after=3)
    started = time.monotonic()
    r = cli("--incident", "inc-rl", "--new", "kill", "--region", "ld-prod,ld-eu", "--yes", "--json", "--deadline", "4")
    assert time.monotonic() - started < 4 + 3
    rows = check_kill(root, fake, r, "inc-rl")
    assert rows["ld-prod"]["outcome"] == "RATE_LIMITED", rows["ld-prod"]
    assert "after 2 tries" in rows["ld-prod"]["detail"]
    assert rows["ld-eu"]["outcome"] == "CONFIRMED"


def test_hung_region_as_a_real_process_exits_by_the_deadline(ld) -> None:
    """The whole process (not only the in-process command) ends at the deadline."""
    root, fake = ld
    fake.inject("eu", "hang", seconds=30)
    started = time.monotonic()
    r = run_agentfire("--incident", "inc-proc", "--new", "kill", "--region", "ld-prod,ld-eu", "--yes", "--json",
                      "--deadline", "2", cwd=root, timeout=30)
    assert time.monotonic() - started < 2 + 6  # deadline plus interpreter start-up on a busy machine
    assert r.exit_code == 1, r
    assert {x["region"]: x["outcome"] for x in r.json()["regions"]} == {"ld-prod": "CONFIRMED", "ld-eu": "TIMEOUT"}
    no_secret_anywhere(root, r.stdout, r.stderr)
