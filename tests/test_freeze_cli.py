"""`agentfire freeze` / `--lift` / status caps through the CLI, on sqlite and a real Redis."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentfire import guard
from agentfire.providers.budget import Caps, CapsState
from agentfire.providers.budget.redis import RedisBudgetStore
from agentfire.providers.budget.sqlite import SqliteBudgetStore
from tests.conftest import free_port, run_agentfire
from tests.servers.redis import redis_server  # noqa: F401  (fixture)


def write_traces(root: Path, costs: list[float], running: set[int] = frozenset(),
                 minutes_ago: float = 30) -> None:
    """Langfuse-shaped observation rows: one trajectory per cost (a root AGENT + one GENERATION);
    the indexes in `running` have no root end time (still running)."""
    now = datetime.now(timezone.utc)
    rows = []
    for i, cost in enumerate(costs):
        tid = f"trace-{i:03d}"
        t0 = now - timedelta(minutes=minutes_ago) + timedelta(seconds=i)
        rows.append({"id": f"{tid}-root", "traceId": tid, "type": "AGENT", "name": "support-agent",
                     "userId": f"user-{i}", "startTime": t0.isoformat(),
                     "endTime": None if i in running else (t0 + timedelta(seconds=20)).isoformat(),
                     "input": json.dumps({"q": "hello"}), "output": None})
        rows.append({"id": f"{tid}-gen", "traceId": tid, "type": "GENERATION", "name": "llm",
                     "parentObservationId": f"{tid}-root", "model": "gpt-x",
                     "startTime": (t0 + timedelta(seconds=1)).isoformat(),
                     "endTime": (t0 + timedelta(seconds=2)).isoformat(), "totalCost": cost})
    d = root / ".agentfire/traces"
    d.mkdir(parents=True, exist_ok=True)
    (d / "observations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def set_budget(root: Path, section: dict) -> None:
    cfg = root / "runbook.yaml"
    doc = yaml.safe_load(cfg.read_text())
    doc["budget"] = section
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))


COSTS = [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 2.50]  # p50 = 0.55


@pytest.fixture(params=["sqlite", "redis"])
def store_kind(request: pytest.FixtureRequest, sandbox: Path) -> str:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        set_budget(sandbox, {"kind": "redis", "url": server.url, "key_prefix": f"cli:{uuid.uuid4().hex[:8]}:"})
    write_traces(sandbox, COSTS, running={8, 9})
    guard.forget_caps()
    return request.param


def open_store(root: Path) -> Any:
    from agentfire import budget
    from agentfire.config import load_runbook

    return budget.open_store(load_runbook(root / "runbook.yaml"))


def err(r: Any) -> str:
    """stderr with Rich's line wrapping undone."""
    return " ".join(r.stderr.split())


def journal(root: Path, incident: str) -> list[dict]:
    return [json.loads(l) for l in (root / f".agentfire/incidents/{incident}.jsonl").read_text().splitlines()]


def test_freeze_to_p50_reads_back_journals_and_the_guard_obeys(sandbox: Path, cli, store_kind: str) -> None:
    r = cli("--incident", "inc-f", "--new", "freeze", "--to", "p50", "--window", "1h", "--reason", "loop", "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["outcome"] == "CONFIRMED" and doc["confirmed"] is True
    dist = doc["distribution"]
    assert dist["n"] == 10 and dist["p50"] == pytest.approx(0.55) and dist["max"] == pytest.approx(2.5)
    assert dist["p90"] == pytest.approx(0.9 + 0.1 * 1.6) and dist["running"] == 2
    assert doc["in_flight_over_cap"] == 2  # trace-008 (0.90) and trace-009 (2.50) are above 0.55
    assert {x["trace_id"] for x in doc["in_flight_over_cap_ids"]} == {"trace-008", "trace-009"}
    assert doc["before"]["version"] == 0 and doc["after"]["version"] == 1
    assert doc["after"]["freeze_usd"] == pytest.approx(0.55) and doc["after"]["admission"] == "frozen"
    assert doc["store"].startswith(store_kind)
    entry = [e for e in journal(sandbox, "inc-f") if e["action"] == "freeze"][0]
    assert entry["outcome"] == "CONFIRMED" and entry["before"]["admission"] == "open"
    assert entry["after"]["freeze_usd"] == pytest.approx(0.55) and entry["reason"] == "loop"
    assert entry["distribution"]["n"] == 10 and entry["actor"]
    # the agent side
    caps = guard.load_caps()
    assert guard.check_budget(0.0, caps, starting=True) == "frozen"
    assert guard.check_budget(0.54, caps) is None and guard.check_budget(0.55, caps) == "freeze"
    # status shows the caps next to the kill switch
    s = cli("status", "--json")
    scopes = s.json()["budget"]["scopes"]
    assert [x["scope"] for x in scopes] == ["support-agent"]
    assert scopes[0]["effective"] == {"hard_usd": None, "freeze_usd": pytest.approx(0.55), "admission": "frozen"}
    human = cli("status")
    assert "spend caps" in human.stdout and "frozen" in human.stdout and "$0.5500" in human.stdout


def test_allow_new_hard_and_usd_level(sandbox: Path, cli, store_kind: str) -> None:
    r = cli("--incident", "inc-u", "--new", "freeze", "--to", "$0.25", "--allow-new", "--hard", "3", "--json")
    assert r.exit_code == 0, r
    after = r.json()["after"]
    assert after["freeze_usd"] == 0.25 and after["hard_usd"] == 3.0 and after["admission"] == "open"
    assert r.json()["in_flight_over_cap"] == 2


def test_lift_restores_the_journaled_before(sandbox: Path, cli, store_kind: str) -> None:
    store = open_store(sandbox)
    store.compare_and_set(Caps("support-agent", hard_usd=5.0), 0)  # a standing hard cap
    assert cli("--incident", "inc-l", "--new", "freeze", "--to", "p50", "--json").exit_code == 0
    assert cli("--incident", "inc-l", "freeze", "--to", "p90", "--json").exit_code == 0  # tighter, twice
    r = cli("--incident", "inc-l", "freeze", "--lift", "--json")
    assert r.exit_code == 0, r
    assert r.json()["action"] == "freeze.lift" and r.json()["outcome"] == "CONFIRMED"
    now = store.read("support-agent")
    assert now.state == CapsState(hard_usd=5.0) and now.version == 4
    lifted = [e for e in journal(sandbox, "inc-l") if e["action"] == "freeze.lift"][0]
    assert lifted["before"]["freeze_usd"] is not None and lifted["after"]["hard_usd"] == 5.0
    # nothing left to lift
    again = cli("--incident", "inc-l", "freeze", "--lift")
    assert again.exit_code == 1 and "no freeze of scope" in err(again)
    assert "already lifted at" in err(again)  # not a hint that no one ever froze it


def test_lift_without_incident_uses_the_latest_freeze(sandbox: Path, cli, store_kind: str) -> None:
    r = cli("freeze", "--to", "1", "--json")
    assert r.exit_code == 0, r
    incident = r.json()["incident"]
    lift = cli("freeze", "--lift", "--json")
    assert lift.exit_code == 0 and lift.json()["incident"] == incident
    assert incident in err(lift)


def test_dry_run_writes_and_journals_nothing(sandbox: Path, cli, store_kind: str) -> None:
    r = cli("freeze", "--to", "p75", "--dry-run", "--json")
    assert r.exit_code == 0, r
    assert r.json()["outcome"] == "DRY_RUN" and r.json()["after"] is None
    assert r.json()["wanted"]["freeze_usd"] == pytest.approx(0.775)
    assert open_store(sandbox).read("support-agent").version == 0
    assert not list((sandbox / ".agentfire/incidents").glob("*.jsonl")) if (sandbox / ".agentfire/incidents").exists() else True


def test_for_expires_and_status_says_when(sandbox: Path, cli, store_kind: str) -> None:
    r = cli("--incident", "inc-e", "--new", "freeze", "--to", "0.3", "--for", "2s", "--json")
    assert r.exit_code == 0, r
    scope = cli("status", "--json").json()["budget"]["scopes"][0]
    assert scope["expires_at"] and scope["expired"] is False and scope["effective"]["admission"] == "frozen"
    assert scope["prior"] == {"hard_usd": None, "freeze_usd": None, "admission": "open"}
    assert "expires" in cli("status").stdout
    time.sleep(2.2)
    scope = cli("status", "--json").json()["budget"]["scopes"][0]
    assert scope["expired"] is True and scope["effective"]["admission"] == "open"
    guard.forget_caps()
    assert guard.budget_allows(10.0, starting=True).allowed


def test_concurrent_freeze_and_lift_second_sees_the_first_version(
    sandbox: Path, cli, store_kind: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another on-call writes between our read and our write: we are told, and nothing is lost."""
    from agentfire import budget

    real_open = budget.open_store

    class RacingStore:
        def __init__(self, inner: Any):
            self.inner, self.kind, self.target = inner, inner.kind, inner.target

        def read(self, scope: str) -> Caps:
            return self.inner.read(scope)

        def compare_and_set(self, caps: Caps, expect_version: int) -> int:
            from agentfire.config import load_runbook

            other = real_open(load_runbook(sandbox / "runbook.yaml"))  # the other terminal
            cur = other.read(caps.scope)
            other.compare_and_set(Caps(caps.scope, freeze_usd=9.0, admission="open",
                                       updated_by="bob", updated_at="2026-11-23T23:59:00Z"), cur.version)
            return self.inner.compare_and_set(caps, expect_version)

        def scopes(self) -> list[str]:
            return self.inner.scopes()

        def close(self) -> None:
            self.inner.close()

    monkeypatch.setattr(budget, "open_store", lambda rb: RacingStore(real_open(rb)))
    r = cli("--incident", "inc-r", "--new", "freeze", "--to", "p50")
    assert r.exit_code == 1, r
    assert "changed under you: you read version 0, the store now has version 1" in err(r)
    assert "bob" in err(r) and "Re-run" in err(r) and "Traceback" not in err(r)
    assert open_store(sandbox).read("support-agent").freeze_usd == 9.0  # bob's write survived
    assert journal(sandbox, "inc-r")[-1]["outcome"] == "VERSION_CONFLICT"
    monkeypatch.setattr(budget, "open_store", real_open)
    # the re-run sees bob's version and acts on it
    again = cli("--incident", "inc-r", "freeze", "--to", "p50", "--json")
    assert again.exit_code == 0 and again.json()["before"]["version"] == 1
    assert again.json()["before"]["updated_by"] == "bob"


def test_lift_refuses_when_someone_changed_the_caps_since(sandbox: Path, cli, store_kind: str) -> None:
    assert cli("--incident", "inc-c", "--new", "freeze", "--to", "p50", "--json").exit_code == 0
    store = open_store(sandbox)
    store.compare_and_set(Caps("support-agent", freeze_usd=0.1, admission="frozen", updated_by="carol"), 1)
    r = cli("--incident", "inc-c", "freeze", "--lift")
    assert r.exit_code == 1 and "changed since this incident's freeze" in err(r) and "carol" in err(r)
    assert store.read("support-agent").freeze_usd == 0.1
    forced = cli("--incident", "inc-c", "freeze", "--lift", "--force", "--json")
    assert forced.exit_code == 0 and store.read("support-agent").state == CapsState()


def test_store_down_exits_1_with_a_clear_line(sandbox: Path, cli) -> None:
    write_traces(sandbox, COSTS)
    port = free_port()
    set_budget(sandbox, {"kind": "redis", "url": f"redis://127.0.0.1:{port}/0", "timeout_seconds": 0.5})
    r = run_agentfire("--incident", "inc-d", "--new", "freeze", "--to", "p50", cwd=sandbox)
    assert r.exit_code == 1, r
    assert f"budget store redis://127.0.0.1:{port}/0" in err(r) and "Traceback" not in err(r)
    s = cli("status", "--json")
    assert "error" in s.json()["budget"] and "127.0.0.1" in s.json()["budget"]["error"]


def test_garbage_in_the_store_is_an_error_not_a_freeze(sandbox: Path, cli, redis_server) -> None:  # noqa: F811
    import redis

    prefix = f"gb:{uuid.uuid4().hex[:8]}:"
    set_budget(sandbox, {"kind": "redis", "url": redis_server.url, "key_prefix": prefix})
    write_traces(sandbox, COSTS)
    redis.Redis.from_url(redis_server.url).hset(prefix + "support-agent", mapping={"version": "2", "hard_usd": "ten"})
    r = cli("--incident", "inc-g", "--new", "freeze", "--to", "p50")
    assert r.exit_code == 1 and "hard_usd is 'ten', not a number" in err(r)
    st = cli("status", "--json").json()["budget"]["scopes"][0]
    assert "hard_usd is 'ten'" in st["error"]
    assert "UNREADABLE" in cli("status").stdout
    doc = cli("doctor", "--json")
    assert "hard_usd" in doc.stdout


@pytest.mark.parametrize("args,needle", [
    (["--to", "p42"], "--to: 'p42'"),
    (["--to", "-1"], "must be a finite amount"),
    (["--window", "an hour"], "--window: 'an hour' is not a duration"),
    (["--for", "0h"], "--for: '0h' is not a duration"),
    (["--scope", "[red]x"], "--scope: '[red]x' is not a scope name"),
])
def test_bad_input_is_exit_2_and_changes_nothing(sandbox: Path, cli, args: list[str], needle: str) -> None:
    write_traces(sandbox, COSTS)
    r = cli("--incident", "inc-b", "--new", "freeze", *args)
    assert r.exit_code == 2 and needle in err(r), r
    assert SqliteBudgetStore(sandbox / ".agentfire/budget.sqlite").read("support-agent").version == 0


def test_percentile_of_an_empty_window_is_not_done(sandbox: Path, cli) -> None:
    write_traces(sandbox, COSTS, minutes_ago=180)
    r = cli("--incident", "inc-w", "--new", "freeze", "--to", "p50", "--window", "1h")
    assert r.exit_code == 1 and "no trajectories started in the last 1h" in err(r)
    wide = cli("--incident", "inc-w", "--new", "freeze", "--to", "p50", "--window", "4h", "--json")
    assert wide.exit_code == 0 and wide.json()["distribution"]["n"] == 10


def test_help_has_an_example(cli) -> None:
    r = cli("freeze", "--help")
    assert r.exit_code == 0 and "Example: agentfire freeze --to p50" in r.stdout and "--lift" in r.stdout


def test_lift_from_a_tampered_journal_is_refused(sandbox: Path, cli) -> None:
    write_traces(sandbox, COSTS)
    assert cli("--incident", "inc-t", "--new", "freeze", "--to", "p50", "--json").exit_code == 0
    path = sandbox / ".agentfire/incidents/inc-t.jsonl"
    entries = [json.loads(l) for l in path.read_text().splitlines()]
    for e in entries:
        if e["action"] == "freeze":
            e["before"]["effective"]["hard_usd"] = "unlimited"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    r = cli("--incident", "inc-t", "freeze", "--lift")
    assert r.exit_code == 1 and "hard_usd is 'unlimited', not a number" in err(r)
    assert SqliteBudgetStore(sandbox / ".agentfire/budget.sqlite").read("support-agent").admission == "frozen"


def test_doctor_probes_the_budget_store(sandbox: Path, cli) -> None:
    r = cli("doctor", "--json")
    doc = r.json()
    rows = doc["checks"] if isinstance(doc, dict) else doc
    budget = [c for c in rows if c["area"] == "budget"]
    assert budget and budget[0]["ok"] is True and "not created yet" in budget[0]["detail"]
