"""The kill switch against a real Unleash 8.2 (two environments = two regions) plus a flagd region.

Every flip is driven through the CLI, and the server's own answer is checked through its client
API with a backend token of each environment: what an agent's SDK would see, not what agentfire
says it did. Each test gets a fresh kill-switch flag so tests never see each other's flips.
"""

from __future__ import annotations

import json
import time
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentfire import guard
from tests.conftest import REPO, free_port, run_agentfire
from tests.servers.unleash import UnleashServer, unleash_flag, unleash_server  # noqa: F401

TOKEN_ENV = "AF_TEST_UNLEASH_ADMIN_TOKEN"
BACKEND_ENV = {"production": "AF_TEST_BACKEND_PROD", "development": "AF_TEST_BACKEND_DEV"}
FLAGD_REGION = "ap-south"


class Deployment:
    """A runbook.yaml in a temp dir: us-east = production, eu-west = development, ap-south = flagd."""

    def __init__(self, root: Path, server: UnleashServer, flag: str):
        self.root = root
        self.server = server
        self.flag = flag
        self.config = root / "runbook.yaml"
        self.extra_secrets: list[str] = []

    def unleash_region(self, environment: str, **over: Any) -> dict[str, Any]:
        """An Unleash region; its agents read with the environment's backend token."""
        return {"kind": "unleash", "url": self.server.url, "environment": environment,
                "token_env": TOKEN_ENV, "timeout_seconds": 5,
                "client_token_env": BACKEND_ENV.get(environment), **over}

    def default_regions(self, **eu_west: Any) -> dict[str, dict[str, Any]]:
        """The three regions; keyword arguments change the eu-west (development) region."""
        return {
            "us-east": self.unleash_region("production"),
            "eu-west": self.unleash_region("development", **eu_west),
            FLAGD_REGION: {"kind": "flagd", "path": "flags/ap-south.flagd.json", "create": True},
        }

    def write(self, regions: dict[str, dict[str, Any]] | None = None, **kill: Any) -> Path:
        regions = regions if regions is not None else self.default_regions()
        doc = {
            "version": 1,
            "agent": {"name": "support-agent", "flag": self.flag, "fallback": "fallbacks/support-agent.md"},
            "regions": regions,
            "kill": {"deadline_seconds": 30, **kill},
            "journal": {"dir": "incidents"},
        }
        self.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        return self.config

    def flagd_on(self) -> bool | None:
        p = self.root / "flags/ap-south.flagd.json"
        if not p.exists():
            return None
        f = json.loads(p.read_text())["flags"][self.flag]
        return f["variants"][f["defaultVariant"]]

    def journal_text(self) -> str:
        d = self.root / "incidents"
        return "".join(p.read_text() for p in sorted(d.glob("*.jsonl"))) if d.exists() else ""

    def journal(self, incident: str) -> list[dict[str, Any]]:
        p = self.root / "incidents" / f"{incident}.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines()]

    def assert_no_secret(self, *results: Any) -> None:
        texts = [t for r in results for t in (r.stdout, r.stderr)] + [self.journal_text()]
        for value in [*self.server.secrets(), *self.extra_secrets]:
            hex_part = value.rsplit(".", 1)[-1]
            for t in texts:
                assert hex_part not in t, "a token value leaked into output or the journal"


@pytest.fixture
def dep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unleash_server: UnleashServer,
        unleash_flag: str) -> Deployment:
    root = tmp_path / "deploy"
    root.mkdir()
    shutil.copytree(REPO / "fallbacks", root / "fallbacks")
    d = Deployment(root, unleash_server, unleash_flag)
    d.write()
    monkeypatch.chdir(root)
    monkeypatch.setenv("AGENTFIRE_CONFIG", str(d.config))
    monkeypatch.setenv(TOKEN_ENV, unleash_server.admin_token)
    for env, name in BACKEND_ENV.items():
        monkeypatch.setenv(name, unleash_server.backend_tokens[env])
    monkeypatch.delenv("AGENTFIRE_INCIDENT", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    return d


def outcomes(result: Any) -> dict[str, str]:
    return {r["region"]: r["outcome"] for r in result.json()["regions"]}


# --- kill, status, undo --------------------------------------------------------------------------


def test_kill_status_undo_round_trip_as_the_client_api_sees_it(dep: Deployment, cli) -> None:
    srv, flag = dep.server, dep.flag
    assert srv.client_view(flag) == {"development": True, "production": True}
    strategies = {env: srv.client_feature(flag, env)["strategies"] for env in ("development", "production")}
    assert all(strategies.values())

    s = cli("status", "--json")
    assert s.exit_code == 0, s
    assert {r["region"]: r["on"] for r in s.json()["regions"]} == {"us-east": True, "eu-west": True, FLAGD_REGION: True}

    k = cli("--incident", "inc-ul", "--new", "kill", "--region", "all", "--yes", "--reason", "wrong recipients", "--json")
    assert k.exit_code == 0, k
    doc = k.json()
    assert doc["all_off"] is True and doc["flag"] == flag
    for r in doc["regions"]:
        assert (r["outcome"], r["before"], r["after"]) == ("CONFIRMED", True, False), r
    assert {r["region"]: r["provider"] for r in doc["regions"]} == {
        "us-east": "unleash", "eu-west": "unleash", FLAGD_REGION: "flagd"}
    # the server's own answer, through the client API with each environment's backend token
    assert srv.client_view(flag) == {"development": False, "production": False}
    assert dep.flagd_on() is False

    s = cli("status", "--json")
    assert s.exit_code == 0
    assert {r["region"]: r["on"] for r in s.json()["regions"]} == {"us-east": False, "eu-west": False, FLAGD_REGION: False}

    again = cli("--incident", "inc-ul", "kill", "--json")
    assert again.exit_code == 0 and set(outcomes(again).values()) == {"ALREADY_OFF"}

    u = cli("--incident", "inc-ul", "kill", "--undo", "--json")
    assert u.exit_code == 0, u
    assert outcomes(u) == {"us-east": "CONFIRMED", "eu-west": "CONFIRMED", FLAGD_REGION: "CONFIRMED"}
    assert srv.client_view(flag) == {"development": True, "production": True}
    # a kill turns the environment off; it must not lose the rollout strategies behind it
    assert {env: srv.client_feature(flag, env)["strategies"] for env in strategies} == strategies
    assert dep.flagd_on() is True

    entries = dep.journal("inc-ul")
    kill = next(e for e in entries if e["action"] == "kill")
    assert kill["reason"] == "wrong recipients" and kill["outcome"] == "all_off"
    assert {r["region"]: (r["before"], r["after"], r["wrote"]) for r in kill["regions"]} == {
        "us-east": (True, False, True), "eu-west": (True, False, True), FLAGD_REGION: (True, False, True)}
    assert [e["action"] for e in entries if e["action"].startswith("kill")] == ["kill", "kill", "kill.undo"]
    dep.assert_no_secret(s, k, again, u)


def test_kill_one_region_touches_only_its_environment(dep: Deployment, cli) -> None:
    k = cli("--incident", "inc-one", "--new", "kill", "--region", "us-east", "--json")
    assert k.exit_code == 0, k
    assert outcomes(k) == {"us-east": "CONFIRMED"}
    assert dep.server.client_view(dep.flag) == {"development": True, "production": False}
    assert dep.flagd_on() is None  # the flagd region was never touched (not even created)


def test_undo_leaves_off_an_environment_that_was_off_before_the_incident(dep: Deployment, cli) -> None:
    srv, flag = dep.server, dep.flag
    srv.set_admin(flag, "development", False)  # someone turned it off by hand earlier
    k = cli("--incident", "inc-pre", "--new", "kill", "--json")
    assert k.exit_code == 0, k
    assert outcomes(k) == {"us-east": "CONFIRMED", "eu-west": "ALREADY_OFF", FLAGD_REGION: "CONFIRMED"}
    u = cli("--incident", "inc-pre", "kill", "--undo", "--json")
    assert u.exit_code == 0, u
    assert outcomes(u) == {"us-east": "CONFIRMED", "eu-west": "SKIPPED", FLAGD_REGION: "CONFIRMED"}
    assert srv.client_view(flag) == {"development": False, "production": True}


def test_real_process_kill_and_undo_keep_the_token_secret(dep: Deployment) -> None:
    env = {"AGENTFIRE_CONFIG": str(dep.config)}
    k = run_agentfire("--incident", "inc-proc", "--new", "kill", "--region", "all", cwd=dep.root, env=env)
    assert k.exit_code == 0, k
    assert k.stdout.count("CONFIRMED") == 3
    assert dep.server.client_view(dep.flag) == {"development": False, "production": False}
    u = run_agentfire("--incident", "inc-proc", "kill", "--undo", cwd=dep.root, env=env)
    assert u.exit_code == 0, u
    assert dep.server.client_view(dep.flag) == {"development": True, "production": True}
    dep.assert_no_secret(k, u)


def test_dry_run_leaves_the_server_unchanged(dep: Deployment, cli) -> None:
    r = cli("kill", "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert set(outcomes(r).values()) == {"DRY_RUN"}
    assert all(x["before"] is True and x["after"] is True for x in r.json()["regions"])
    assert dep.server.client_view(dep.flag) == {"development": True, "production": True}
    assert dep.server.admin_enabled(dep.flag, "production") is True
    assert dep.journal_text() == ""
    dep.assert_no_secret(r)


# --- failures, region by region ----------------------------------------------------------------


def test_region_whose_flag_does_not_exist_is_not_found_and_the_others_confirm(dep: Deployment, cli) -> None:
    # eu-west looks in a project that has no such flag
    dep.write(dep.default_regions(project="no-such-project"))
    r = cli("--incident", "inc-nf", "--new", "kill", "--json")
    assert r.exit_code == 1, r
    assert outcomes(r) == {"us-east": "CONFIRMED", "eu-west": "NOT_FOUND", FLAGD_REGION: "CONFIRMED"}
    nf = next(x for x in r.json()["regions"] if x["region"] == "eu-west")
    assert dep.flag in nf["detail"] and "404" in nf["detail"] and nf["after"] is None
    assert r.json()["all_off"] is False
    assert "NOT confirmed off everywhere" in r.stderr and "eu-west=NOT_FOUND" in r.stderr
    assert dep.server.client_view(dep.flag) == {"development": True, "production": False}
    kill = next(e for e in dep.journal("inc-nf") if e["action"] == "kill")
    assert kill["outcome"] == "incomplete"
    dep.assert_no_secret(r)


def test_flag_missing_from_the_server_entirely(dep: Deployment, cli) -> None:
    dep.flag = "agent.never-created"
    dep.write()
    r = cli("--incident", "inc-nf2", "--new", "kill", "--json")
    assert r.exit_code == 1, r
    assert outcomes(r) == {"us-east": "NOT_FOUND", "eu-west": "NOT_FOUND", FLAGD_REGION: "CONFIRMED"}


def test_wrong_admin_token_is_auth(dep: Deployment, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "*:*.0123456789abcdef0123456789abcdef"
    dep.extra_secrets.append(wrong)
    monkeypatch.setenv("AF_TEST_WRONG_TOKEN", wrong)
    dep.write(dep.default_regions(token_env="AF_TEST_WRONG_TOKEN"))
    r = cli("--incident", "inc-auth", "--new", "kill", "--json")
    assert r.exit_code == 1, r
    assert outcomes(r) == {"us-east": "CONFIRMED", "eu-west": "AUTH", FLAGD_REGION: "CONFIRMED"}
    detail = next(x["detail"] for x in r.json()["regions"] if x["region"] == "eu-west")
    assert "401" in detail and "AF_TEST_WRONG_TOKEN" in detail
    assert dep.server.client_view(dep.flag) == {"development": True, "production": False}
    dep.assert_no_secret(r)


def test_backend_token_instead_of_admin_token_is_auth(dep: Deployment, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, dep.server.backend_tokens["production"])
    r = cli("--incident", "inc-403", "--new", "kill", "--region", "us-east", "--json")
    assert r.exit_code == 1, r
    assert outcomes(r) == {"us-east": "AUTH"}
    assert "403" in r.json()["regions"][0]["detail"]
    assert dep.server.client_enabled(dep.flag, "production") is True
    dep.assert_no_secret(r)


def test_unknown_environment_is_not_found(dep: Deployment, cli) -> None:
    dep.write({"us-east": dep.unleash_region("production"), "staging": dep.unleash_region("staging")})
    r = cli("--incident", "inc-env", "--new", "kill", "--json")
    assert r.exit_code == 1, r
    assert outcomes(r) == {"us-east": "CONFIRMED", "staging": "NOT_FOUND"}
    assert "staging" in next(x["detail"] for x in r.json()["regions"] if x["region"] == "staging")
    s = cli("status", "--json")
    assert s.exit_code == 1
    assert {x["region"]: x["on"] for x in s.json()["regions"]} == {"us-east": False, "staging": None}


def test_missing_token_variable_is_those_regions_auth_rows_and_the_others_are_killed(
    dep: Deployment, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 12 item 8: one region's missing credential no longer aborts the kill everywhere
    monkeypatch.delenv(TOKEN_ENV)
    r = cli("--incident", "inc-noenv", "--new", "kill", "--region", "all", "--json")
    assert r.exit_code == 1, r
    assert "Traceback" not in r.stderr
    rows = {x["region"]: x for x in r.json()["regions"]}
    assert {n: x["outcome"] for n, x in rows.items()} == \
        {"us-east": "AUTH", "eu-west": "AUTH", FLAGD_REGION: "CONFIRMED"}
    assert all(TOKEN_ENV in rows[n]["detail"] for n in ("us-east", "eu-west"))
    # nothing was sent to the server; the flagd region is off and it is all journaled
    assert dep.server.client_view(dep.flag) == {"development": True, "production": True}
    assert dep.flagd_on() is False
    assert '"AUTH"' in dep.journal_text() and '"CONFIRMED"' in dep.journal_text()


def test_unreachable_server_is_unreachable_and_the_others_confirm(dep: Deployment, cli) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    dep.write(dep.default_regions(url=closed), max_retries=1)
    r = cli("--incident", "inc-down", "--new", "kill", "--json")
    assert r.exit_code == 1, r
    assert outcomes(r) == {"us-east": "CONFIRMED", "eu-west": "UNREACHABLE", FLAGD_REGION: "CONFIRMED"}


# --- doctor ----------------------------------------------------------------------------------------


def _flag_checks(doc: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    return {c["name"]: (c["ok"], c["detail"]) for c in doc["checks"] if c["area"] == "flags"}


def test_doctor_against_the_real_server(dep: Deployment, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("UnleashClient", reason="pip install 'agentfire[unleash]'")
    wait_for_client_api(dep)
    r = cli("doctor", "--json")
    flags = _flag_checks(r.json())
    assert flags["us-east (unleash)"][0] and flags["eu-west (unleash)"][0], flags
    assert f"{dep.flag} is on" in flags["us-east (unleash)"][1]
    assert dep.server.url in flags["us-east (unleash)"][1]
    assert r.exit_code == 0, [c for c in r.json()["checks"] if not c["ok"]]

    wrong = "*:*.fedcba9876543210fedcba9876543210"
    dep.extra_secrets.append(wrong)
    monkeypatch.setenv(TOKEN_ENV, wrong)
    bad = cli("doctor")
    assert bad.exit_code == 1, bad
    assert "FAIL" in bad.stdout and "AUTH" in bad.stdout
    bad_json = cli("doctor", "--json")
    flags = _flag_checks(bad_json.json())
    assert not flags["us-east (unleash)"][0] and not flags["eu-west (unleash)"][0]
    assert flags[f"{FLAGD_REGION} (flagd)"][0]
    # doctor is read-only: the flag is still on
    assert dep.server.client_view(dep.flag) == {"development": True, "production": True}
    dep.assert_no_secret(r, bad, bad_json)


# --- the agent's side ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_agents(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(guard, "RUNBOOK_RECHECK_S", 0.0)  # these tests edit runbook.yaml between calls
    guard.forget_agents()
    yield
    guard.forget_agents()


def wait_for_client_api(dep: Deployment) -> None:
    """A new flag reaches Unleash's client API (what the SDKs fetch) a little after it is created
    (seconds on a loaded machine): wait until agents are served it in both environments."""
    end = time.monotonic() + 30
    while not all(guard.agent_enabled(r, config=str(dep.config)).enabled for r in ("us-east", "eu-west")):
        assert time.monotonic() < end, guard.agent_enabled("us-east", config=str(dep.config)).reason
        time.sleep(0.2)
    guard.forget_agents()


def agent_region(dep: Deployment, environment: str, **over: Any) -> dict[str, Any]:
    return dep.unleash_region(environment, refresh_interval_seconds=1, **over)


def test_guard_never_reads_with_the_admin_token(dep: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """No client_token_env: the agent is off and says what it needs; an admin token handed to
    the agent as its client token is refused."""
    pytest.importorskip("UnleashClient", reason="pip install 'agentfire[unleash]'")
    dep.write({"us-east": dep.unleash_region("production", client_token_env=None)})
    off = guard.agent_enabled(region="us-east", config=str(dep.config))
    assert off.enabled is False and "client_token_env" in off.reason and off.fallback
    monkeypatch.setenv("AF_TEST_BACKEND_PROD", dep.server.admin_token)
    dep.write({"us-east": agent_region(dep, "production")})
    bad = guard.agent_enabled(region="us-east", config=str(dep.config))
    assert bad.enabled is False and "admin token" in bad.reason
    dep.assert_no_secret(type("R", (), {"stdout": bad.reason, "stderr": ""})())


def test_guard_reads_through_the_unleash_sdk_with_a_backend_token(dep: Deployment, cli,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent needs no admin token: UnleashClient with a backend token, what the SDKs read."""
    pytest.importorskip("UnleashClient", reason="pip install 'agentfire[unleash]'")
    for env, name in BACKEND_ENV.items():
        monkeypatch.setenv(name, dep.server.backend_tokens[env])
    dep.write({"us-east": agent_region(dep, "production"), "eu-west": agent_region(dep, "development")})
    monkeypatch.delenv(TOKEN_ENV)  # the agent's environment has no admin token at all
    assert guard.agent_enabled(region="us-east", config=str(dep.config)).enabled is True
    monkeypatch.setenv(TOKEN_ENV, dep.server.admin_token)
    k = cli("--incident", "inc-client", "--new", "kill", "--region", "us-east", "--json")
    assert k.exit_code == 0, k
    (row,) = k.json()["regions"]
    # the read-back evaluated the flag the way the agents do: the SDK with the backend token
    assert row["outcome"] == "CONFIRMED" and row["agent_view"]["on"] is False
    assert "Unleash client (production)" in row["agent_view"]["detail"]
    assert "polls every 1 s" in row["agents_see"]
    monkeypatch.delenv(TOKEN_ENV)
    deadline = time.monotonic() + 15
    while guard.agent_enabled(region="us-east", config=str(dep.config)).enabled and time.monotonic() < deadline:
        time.sleep(0.1)
    off = guard.agent_enabled(region="us-east", config=str(dep.config))
    assert off.enabled is False and off.reason == "kill switch is off" and off.fallback
    assert guard.agent_enabled(region="eu-west", config=str(dep.config)).enabled is True
    # a wrong backend token fails closed
    guard.forget_agents()
    monkeypatch.setenv("AF_TEST_BACKEND_PROD", "default:production.not-a-token")
    dep.write({"us-east": agent_region(dep, "production", init_timeout_seconds=3)})
    bad = guard.agent_enabled(region="us-east", config=str(dep.config))
    assert bad.enabled is False and "failing closed" in bad.reason and "not-a-token" not in bad.reason


def test_agent_process_unleash_kill_undo_down_hung(dep: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """A separate agent process with only a backend token, through a proxy the test can take down
    or hang: kill and undo reach it at its next poll; a dead or hung server turns it off after
    max_stale_seconds, and it comes back when the server does."""
    pytest.importorskip("UnleashClient", reason="pip install 'agentfire[unleash]'")
    from urllib.parse import urlsplit

    from tests.fakes.tcpproxy import TcpProxy
    from tests.guard_agent import GuardAgent

    u = urlsplit(dep.server.url)
    proxy = TcpProxy(u.hostname, u.port)
    monkeypatch.setenv("AF_TEST_BACKEND_PROD", dep.server.backend_tokens["production"])
    regions = dep.default_regions()
    regions["us-east"] = agent_region(dep, "production", url=proxy.url, max_stale_seconds=2,
                                      timeout_seconds=1)
    dep.write(regions)
    agent_env = {TOKEN_ENV: ""}  # the agent holds no admin token
    try:
        with GuardAgent("us-east", dep.config, env=agent_env, context={"targetingKey": "user-1"}) as agent:
            agent.wait_for(True, 30)
            agent.mark()
            k = run_agentfire("--incident", "inc-uproc", "--new", "kill", "--region", "us-east", "--yes", cwd=dep.root)
            assert k.exit_code == 0, k
            assert "agents see this within ~1 s" in k.stderr
            agent.wait_for(False, 15, reason_has="kill switch is off")
            agent.mark()
            u2 = run_agentfire("--incident", "inc-uproc", "kill", "--undo", "--yes", cwd=dep.root)
            assert u2.exit_code == 0, u2
            agent.wait_for(True, 15)
            agent.mark()
            proxy.set_mode("down")
            down = agent.wait_for(False, 20, reason_has="source failing")
            assert dep.server.backend_tokens["production"].rsplit(".", 1)[-1] not in down["reason"]
            agent.mark()
            proxy.set_mode("ok")
            agent.wait_for(True, 20)
            agent.mark()
            proxy.set_mode("hang")
            agent.wait_for(False, 20, reason_has="source failing")
            agent.mark()
            proxy.set_mode("ok")
            agent.wait_for(True, 20)
    finally:
        proxy.close()


def test_doctor_checks_the_agents_tokens(dep: Deployment, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bogus client token, or production and development tokens swapped: the admin checks all
    pass, and only the agents' view shows that agents are offline or read another environment."""
    pytest.importorskip("UnleashClient", reason="pip install 'agentfire[unleash]'")
    for env, name in BACKEND_ENV.items():
        monkeypatch.setenv(name, dep.server.backend_tokens[env])
    regions = dep.default_regions()
    regions["us-east"] = agent_region(dep, "production")
    regions["eu-west"] = agent_region(dep, "development")
    dep.write(regions)
    wait_for_client_api(dep)
    ok = cli("doctor", "--json")
    agents = {c["name"]: c for c in ok.json()["checks"] if c["area"] == "agents"}
    assert agents["us-east (agent view)"]["ok"] and agents["eu-west (agent view)"]["ok"], agents
    # swapped
    monkeypatch.setenv("AF_TEST_BACKEND_PROD", dep.server.backend_tokens["development"])
    monkeypatch.setenv("AF_TEST_BACKEND_DEV", dep.server.backend_tokens["production"])
    swapped = cli("doctor", "--json")
    assert swapped.exit_code == 1
    agents = {c["name"]: c for c in swapped.json()["checks"] if c["area"] == "agents"}
    assert not agents["us-east (agent view)"]["ok"] and "swapped" in agents["us-east (agent view)"]["detail"]
    # bogus
    monkeypatch.setenv("AF_TEST_BACKEND_PROD", "default:production.bogus0000")
    monkeypatch.setenv("AF_TEST_BACKEND_DEV", dep.server.backend_tokens["development"])
    bogus = cli("doctor", "--json")
    assert bogus.exit_code == 1
    agents = {c["name"]: c for c in bogus.json()["checks"] if c["area"] == "agents"}
    assert not agents["us-east (agent view)"]["ok"] and agents["eu-west (agent view)"]["ok"]
    assert "cannot evaluate" in agents["us-east (agent view)"]["detail"]
    dep.assert_no_secret(ok, swapped, bogus)
