"""`agentfire gameday --target staging` into Langfuse: OTLP ingestion, read back through /v2/observations.

Against the contract fake (tests/fakes/langfuse.py): it parses the ExportTraceServiceRequest and
maps spans to observation rows the way Langfuse's OTLP ingestion does, validated with the SDK's
ObservationV2 before it stores them.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_agentfire
from tests.fakes.langfuse import OTEL_PATH, FakeLangfuse, langfuse_fake  # noqa: F401

SCENARIOS = ["wrong_recipient", "destructive_sql", "runaway_loop", "papered_error"]


@pytest.fixture
def fake(langfuse_fake: FakeLangfuse) -> FakeLangfuse:  # noqa: F811
    return langfuse_fake


def _langfuse_runbook(root: Path, environment: str | None = None) -> None:
    cfg = yaml.safe_load((root / "runbook.yaml").read_text())
    cfg["traces"] = {"kind": "langfuse", **({"environment": environment} if environment else {})}
    (root / "runbook.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _journal(root: Path, incident: str) -> list[dict]:
    path = root / ".agentfire/incidents" / f"{incident}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _scenario_rows(scenario: str, traces: int = 20, seed: int = 5) -> tuple[list[dict], dict]:
    from agentfire import sandbox

    with tempfile.TemporaryDirectory() as tmp:
        res = sandbox.seed_store(tmp, scenario=scenario, traces=traces, seed=seed)
        return [json.loads(l) for l in res.data_file.read_text().splitlines() if l.strip()], res.truth


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_passes_a_scripted_drill_on_langfuse(sandbox: Path, fake: FakeLangfuse,
                                                            scenario: str) -> None:
    _langfuse_runbook(sandbox)
    inc = f"drill-lf-{scenario}"
    r = run_agentfire("--incident", inc, "--new", "gameday", "run", scenario, "--auto", "--target", "staging",
                      "--seed", "31", "--traces", "30", "--json", cwd=sandbox, env=fake.env(), timeout=300)
    assert r.exit_code == 0, r
    score = r.json()
    assert score["passed"] is True and score["target"] == "staging"
    assert all(c["ok"] for c in score["checks"].values()), score["checks"]
    assert [t["minute"] for t in score["timing"] if t["seconds"] is not None] == [
        "kill", "freeze", "triage", "blast", "capture"]
    entries = _journal(sandbox, inc)
    start = next(e for e in entries if e["action"] == "gameday.start")
    assert start["injected"]["store"] == "langfuse" and start["injected"]["observations"] == fake.ingested_spans
    # the ingestion path was used, as a v4 exporter uses it
    assert fake.count(OTEL_PATH, "POST") >= 1
    assert all(h.get("x-langfuse-ingestion-version") == "4" for h in fake.ingestion_headers)
    # the trace ids an on-call sees in Langfuse are the ground truth's
    truth = json.loads(Path(start["truth_file"]).read_text())
    in_langfuse = {row["traceId"] for row in fake.rows}
    assert score["alert_trace_id"] in in_langfuse
    assert {f["trace_id"] for f in truth["failing"] if not f["still_running"]} <= in_langfuse
    # drill data is marked as such in the staging store
    assert all({"agentfire-gameday", f"agentfire-gameday:{inc}"} <= set(row["tags"]) for row in fake.rows)
    # no key anywhere in output or journal
    text = r.stdout + r.stderr + json.dumps(entries)
    assert fake.secret_key not in text and fake.public_key not in text


def test_ingested_spans_land_in_langfuse_fields(fake: FakeLangfuse) -> None:
    """Every field the triage/blast/freeze reads comes back as the scenario wrote it."""
    from agentfire.providers.traces.langfuse import LangfuseTraceStore

    rows, _truth = _scenario_rows("papered_error")
    store = LangfuseTraceStore(fake.base_url, fake.public_key, fake.secret_key)
    result = store.export_otlp(rows)
    ended = [r for r in rows if r.get("endTime")]
    assert result.exported == len(ended) == fake.ingested_spans and len(result.skipped) == len(rows) - len(ended)
    stored = {r["id"]: r for r in fake.rows}
    for row in ended:
        got = stored[row["id"]]  # 16-hex observation ids and 32-hex trace ids are kept
        for key in ("traceId", "type", "name", "startTime", "endTime", "parentObservationId", "input",
                    "output", "userId", "sessionId", "level", "statusMessage", "model", "totalCost",
                    "environment"):
            assert got.get(key) == row.get(key), (key, row["id"])
        assert got["usageDetails"] == (row.get("usageDetails") or {})
        assert got["metadata"] == (row.get("metadata") or {})
    assert {r["type"] for r in fake.rows} >= {"TOOL", "GENERATION", "AGENT", "SPAN"}
    assert any(r["level"] == "ERROR" and r["statusMessage"] for r in fake.rows)


def test_the_runbook_environment_is_the_one_written(fake: FakeLangfuse) -> None:
    from agentfire.providers.traces.langfuse import LangfuseTraceStore

    rows, _truth = _scenario_rows("runaway_loop")
    LangfuseTraceStore(fake.base_url, fake.public_key, fake.secret_key, environment="staging").export_otlp(rows)
    assert {r["environment"] for r in fake.rows} == {"staging"}


def test_phoenix_spans_carry_no_langfuse_attributes() -> None:
    from agentfire._otlp import to_export_request

    rows, _truth = _scenario_rows("wrong_recipient")
    request, _result = to_export_request(rows, "p")
    keys = {kv.key for rs in request.resource_spans for ss in rs.scope_spans for sp in ss.spans
            for kv in sp.attributes}
    assert "openinference.span.kind" in keys and not any(k.startswith("langfuse.") for k in keys)


def test_start_waits_for_lagging_ingestion(sandbox: Path) -> None:
    _langfuse_runbook(sandbox)
    with FakeLangfuse(ingestion_lag_reads=3) as fake:
        r = run_agentfire("--incident", "drill-lag", "--new", "gameday", "start", "runaway_loop", "--target", "staging",
                          "--seed", "8", "--traces", "20", "--json", cwd=sandbox, env=fake.env(), timeout=120)
        assert r.exit_code == 0, r
        # it read until everything was there: more than one scan of the window
        assert fake.count("/api/public/v2/observations") > 3
        assert r.json()["injected"]["observations"] == fake.ingested_spans == len(fake.rows)
        assert not fake.validation_errors


def test_ingestion_refused_is_a_clear_error_and_nothing_is_journaled(sandbox: Path, fake: FakeLangfuse) -> None:
    _langfuse_runbook(sandbox)
    fake.inject(401, path=OTEL_PATH, times=100,
                body={"message": "Invalid credentials. Confirm that you've configured the correct host."})
    r = run_agentfire("--incident", "drill-401", "--new", "gameday", "run", "wrong_recipient", "--auto", "--target",
                      "staging", "--seed", "4", "--traces", "20", "--json", cwd=sandbox, env=fake.env(), timeout=120)
    assert r.exit_code == 1, r
    assert "HTTP 401" in r.stderr and "Langfuse" in r.stderr and "key" in r.stderr
    assert "Traceback" not in r.stderr
    assert fake.secret_key not in r.stdout + r.stderr
    entries = _journal(sandbox, "drill-401")
    assert not any(e["action"].startswith("gameday.") for e in entries), entries
    assert not any(e.get("outcome") == "injected" for e in entries)
    assert fake.rows == []


def test_wrong_keys_are_refused_without_echoing_them(sandbox: Path, fake: FakeLangfuse) -> None:
    _langfuse_runbook(sandbox)
    env = dict(fake.env(), LANGFUSE_SECRET_KEY="sk-lf-wrong-0000000000")
    r = run_agentfire("--incident", "drill-badkey", "--new", "gameday", "start", "destructive_sql", "--target", "staging",
                      "--traces", "20", cwd=sandbox, env=env, timeout=120)
    assert r.exit_code == 1, r
    assert "HTTP 401" in r.stderr and "sk-lf-wrong" not in r.stdout + r.stderr
    assert not any(e["action"].startswith("gameday.") for e in _journal(sandbox, "drill-badkey"))
