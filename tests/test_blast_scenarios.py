"""blast against every sandbox scenario's ground truth: exact trajectories, users and still-open,
on the files store (DuckDB), on the Langfuse contract fake (with 429s, 5xx and observations
arriving during the scan) and on Phoenix (a real server)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agentfire.blast import files_scan, resolve
from agentfire.blast.signature import ArgCondition, Signature, StepPattern
from agentfire.sandbox import SCENARIOS, seed_store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def anchored(pattern: str) -> str:
    """re.fullmatch semantics as a search pattern; a leading inline flag stays in front."""
    m = re.match(r"^\(\?[aiLmsux]+\)", pattern)
    flags, body = (m.group(0), pattern[m.end():]) if m else ("", pattern)
    return f"{flags}^(?:{body})$"


def truth_signature(sig: dict[str, Any]) -> Signature:
    """The sandbox's ground-truth signature as a blast Signature (min_repeats -> a sequence)."""
    conds = tuple(ArgCondition(k, "re", anchored(v)) for k, v in sig.get("match", {}).items())
    step = StepPattern(tool=sig["tool"], args=conds, level=sig.get("level"))
    return Signature((step,) * int(sig.get("min_repeats") or 1))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> dict[str, tuple[Path, dict[str, Any]]]:
    out = {}
    for scenario in SCENARIOS:
        d = tmp_path_factory.mktemp(scenario)
        res = seed_store(d, scenario=scenario, traces=300, seed=11, now=NOW)
        out[scenario] = (d, res.truth)
    return out


def window_of(truth: dict[str, Any]):
    # the window's end is exclusive: a step at exactly `now` must still count
    end = datetime.fromisoformat(truth["window"]["to"].replace("Z", "+00:00")) + timedelta(seconds=1)
    return resolve(from_=truth["window"]["from"], to=end.isoformat())


def check_against_truth(result, truth: dict[str, Any]) -> None:
    assert result.complete, result.gaps
    want = {f["trace_id"] for f in truth["failing"]}
    got = {h.trace_id for h in result.hits}
    assert got == want, (sorted(got - want)[:5], sorted(want - got)[:5])
    assert len(result.hits) == len(truth["failing"])
    assert result.user_ids == truth["affected_users"]
    assert sorted(result.still_open_ids) == truth["still_running"]
    by_id = {h.trace_id: h for h in result.hits}
    for f in truth["failing"]:
        assert by_id[f["trace_id"]].user_id == f["user_id"]
        assert by_id[f["trace_id"]].tool == f["off_rails_tool"]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_files_store_matches_ground_truth(seeded, scenario):
    path, truth = seeded[scenario]
    sig = truth_signature(truth["signature"])
    result = files_scan.scan(path, sig, window_of(truth))
    check_against_truth(result, truth)
    if len(sig.steps) == 1:  # a single-step signature reports the off-rails call itself
        steps = {f["trace_id"]: f["off_rails_call_step"] for f in truth["failing"]}
        assert {h.trace_id: h.step_index for h in result.hits} == steps


def _rows(path: Path, scenario: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / f"{scenario}.jsonl").read_text().splitlines()]


def langfuse_scan(fake, *, max_retries: int = 4, slices: int = 8):
    from agentfire._http import RetryPolicy
    from agentfire.blast.pushdown import LangfusePushdown
    from agentfire.blast.remote_scan import RemoteScan
    from agentfire.providers.traces.langfuse import LangfuseTraceStore

    store = LangfuseTraceStore(fake.base_url, fake.public_key, fake.secret_key,
                               policy=RetryPolicy(max_retries=max_retries, cap_seconds=0.2, base_seconds=0.01))
    return RemoteScan(store, LangfusePushdown(), slices=slices)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_langfuse_fake_matches_ground_truth_with_faults(seeded, scenario):
    from tests.fakes.langfuse import FakeLangfuse

    path, truth = seeded[scenario]
    rows = _rows(path, scenario)
    sig = truth_signature(truth["signature"])
    window = window_of(truth)
    late = [dict(r, id=f"late-{r['id']}", traceId="late-trace", userId="late-user",
                 startTime=(NOW + timedelta(minutes=5)).isoformat().replace("+00:00", "Z"), endTime=None)
            for r in rows if r["traceId"] == truth["failing"][0]["trace_id"]]
    with FakeLangfuse(rows=rows) as fake:
        fake.inject(429, times=2, retry_after=0.05)
        fake.inject(503, times=2)
        # a matching trajectory that arrives mid-scan, after the window: never counted
        fake.add_rows_after(3, late)
        result = asyncio.run(langfuse_scan(fake, max_retries=4, slices=4).run(sig, window))
        assert not fake.validation_errors, fake.validation_errors
        statuses = [r.status for r in fake.requests]
    assert statuses.count(429) == 2 and statuses.count(503) == 2
    # the signature went to the server: the scan asked for the tool, not for every observation
    scan_requests = [r for r in fake.requests if "traceId" not in json.dumps(r.query)]
    assert scan_requests and all(r.query.get("name") == [sig.last.tool] or sig.last.tool in json.dumps(r.query)
                                 for r in scan_requests)
    check_against_truth(result, truth)
    # the scan fetched only the candidate trajectories, not every trace in the window
    assert result.stats.requests < 40 + len(truth["failing"]) * 2


def test_langfuse_5xx_past_the_retry_bound_is_a_named_gap(seeded):
    from tests.fakes.langfuse import FakeLangfuse

    path, truth = seeded["wrong_recipient"]
    sig = truth_signature(truth["signature"])
    window = window_of(truth)
    with FakeLangfuse(rows=_rows(path, "wrong_recipient")) as fake:
        fake.inject(502, times=50)
        result = asyncio.run(langfuse_scan(fake, max_retries=2, slices=1).run(sig, window))
    assert not result.complete
    assert result.gaps[0].start == window.start and result.gaps[0].end == window.end
    assert "502" in result.gaps[0].reason


def test_langfuse_pacing_waits_instead_of_failing(seeded):
    """The pacer waits for its sliding window instead of failing (scaled down: 3 per 0.5 s), and a
    whole scan against a fake that enforces 1000 requests a minute never sees a 429."""
    from agentfire.blast.remote_scan import Pacer

    async def go() -> float:
        p = Pacer(3, per=0.5)
        t = asyncio.get_running_loop().time()
        for _ in range(7):
            await p.acquire()
        return asyncio.get_running_loop().time() - t

    elapsed = asyncio.run(go())
    assert elapsed >= 1.0  # 7 requests at 3 per 0.5 s need two full waits
    from tests.fakes.langfuse import FakeLangfuse

    path, truth = seeded["papered_error"]
    sig = truth_signature(truth["signature"])
    with FakeLangfuse(rows=_rows(path, "papered_error"), rate_limit_per_minute=1000) as fake:
        result = asyncio.run(langfuse_scan(fake).run(sig, window_of(truth)))
        assert all(r.status != 429 for r in fake.requests)
    check_against_truth(result, truth)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_like_derives_a_signature_that_finds_the_incident(seeded, scenario, sandbox, cli):
    """--like on one failing trace: triage's off-rails step becomes a signature that finds
    exactly the scenario's failing trajectories (and is printed as YAML to edit)."""
    import yaml

    path, truth = seeded[scenario]
    rb = (sandbox / "runbook.yaml").read_text().replace("path: .agentfire/traces", f"path: {path}")
    (sandbox / "runbook.yaml").write_text(rb)
    w = window_of(truth)
    example = truth["failing"][0]["trace_id"]
    r = cli("blast", "--like", example, "--from", truth["window"]["from"], "--to",
            w.end.isoformat(), "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert {h["trace_id"] for h in doc["hits"]} == {f["trace_id"] for f in truth["failing"]}
    assert sorted(doc["user_ids"]) == truth["affected_users"]
    # the printed form (terminal) is YAML that --signature reads back to the same signature
    r2 = cli("blast", "--like", example, "--since", "1m")
    assert "signature derived from step" in r2.stderr
    from agentfire.blast import from_document
    assert from_document(doc["signature"]) == from_document(yaml.safe_load(yaml.safe_dump(doc["signature"])))


def test_like_refuses_a_step_that_is_not_a_tool_call(seeded, sandbox, cli):
    path, truth = seeded["wrong_recipient"]
    rb = (sandbox / "runbook.yaml").read_text().replace("path: .agentfire/traces", f"path: {path}")
    (sandbox / "runbook.yaml").write_text(rb)
    from agentfire.providers.traces.files import FilesTraceStore

    traj = FilesTraceStore(path).get_trajectory_sync(truth["failing"][0]["trace_id"])
    from agentfire.sandbox import ATTACKER_ADDRESS

    f = truth["failing"][0]
    # a model turn that only spoke (the final "Done!") made no call: refused
    spoke = max(s.index for s in traj.steps if s.kind == "model" and not s.output.get("tool_calls"))
    r = cli("blast", "--like", f"{traj.trace_id}:{spoke}", "--since", "6h")
    assert r.exit_code == 2 and "made no tool call" in r.stderr, r
    # the deciding model turn stands for the call it made: the same hits as the call itself
    by_turn = cli("blast", "--like", f"{traj.trace_id}:{f['off_rails_step']}", "--since", "6h", "--json")
    by_call = cli("blast", "--like", f"{traj.trace_id}:{f['off_rails_call_step']}", "--since", "6h", "--json")
    assert by_turn.exit_code == by_call.exit_code and by_turn.exit_code in (0, 1), by_turn
    assert by_turn.json()["signature"] == by_call.json()["signature"]
    assert "send_email" in json.dumps(by_turn.json()["signature"]) and ATTACKER_ADDRESS in json.dumps(by_turn.json()["signature"])
    r = cli("blast", "--like", "no-such-trace", "--since", "6h")
    assert r.exit_code == 1 and "not found" in r.stderr, r


from tests.servers.phoenix import phoenix_server  # noqa: E402,F401  (the session fixture)


@pytest.mark.servers
def test_phoenix_matches_ground_truth_on_every_scenario(phoenix_server, tmp_path):
    """A real Phoenix: each scenario ingested over OTLP; blast pushes span_kind/name/status_code
    and finds exactly the failing trajectories, their users and the still-running ones."""
    from agentfire.blast.pushdown import PhoenixPushdown
    from agentfire.blast.remote_scan import RemoteScan
    from agentfire.providers.traces.phoenix import PhoenixTraceStore

    for scenario in SCENARIOS:
        res = seed_store(tmp_path / scenario, scenario=scenario, traces=40, seed=5, now=NOW)
        project = phoenix_server.ingest(_rows(tmp_path / scenario, scenario))
        store = PhoenixTraceStore(phoenix_server.url, project)
        result = asyncio.run(RemoteScan(store, PhoenixPushdown(), slices=2).run(
            truth_signature(res.truth["signature"]), window_of(res.truth)))
        check_against_truth(result, res.truth)
        # pushdown: the scan read the signature's tool spans, not the whole project
        assert result.stats.rows_scanned < len(_rows(tmp_path / scenario, scenario)) / 2, scenario


def test_cli_on_langfuse_store_with_json_out(seeded, sandbox, cli, monkeypatch, tmp_path):
    """The command end to end on a Langfuse runbook: secrets from the environment, the JSON
    --out file, and no secret anywhere in the output."""
    from tests.fakes.langfuse import FakeLangfuse

    path, truth = seeded["destructive_sql"]
    rb = (sandbox / "runbook.yaml").read_text()
    rb = rb.replace("  kind: files\n  path: .agentfire/traces\n  seed_scenario: wrong_recipient",
                    "  kind: langfuse")
    assert "kind: langfuse" in rb
    (sandbox / "runbook.yaml").write_text(rb)
    out = tmp_path / "affected.json"
    with FakeLangfuse(rows=_rows(path, "destructive_sql")) as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        w = window_of(truth)
        r = cli("blast", "--tool", "run_sql", "--arg", "database=production",
                "--arg", r"query re (?i)^\s*delete\s+from\s+orders", "--from", truth["window"]["from"],
                "--to", w.end.isoformat(), "--out", str(out), "--json")
        secret = fake.secret_key
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["trajectories"] == len(truth["failing"]) and doc["complete"]
    assert sorted(doc["still_open_trace_ids"]) == truth["still_running"]
    assert doc["scan"]["requests"] > 0 and doc["store"].startswith("langfuse:")
    saved = json.loads(out.read_text())
    assert {h["trace_id"] for h in saved["hits"]} == {f["trace_id"] for f in truth["failing"]}
    assert secret not in r.stdout + r.stderr + out.read_text()


@pytest.mark.parametrize("refusal", ["400", "ignored"])
def test_langfuse_batch_fetch_falls_back_to_one_trace_a_request(seeded, monkeypatch, refusal):
    """A server that refuses (400) or ignores the `traceId any of` filter: the candidates are
    fetched one trajectory a request, with the same answer."""
    from tests.fakes import langfuse as fake_mod
    from tests.fakes.langfuse import FakeLangfuse

    real = fake_mod._condition

    def condition(c):
        if c.get("column") == "traceId" and c.get("type") == "stringOptions":
            if refusal == "400":
                raise fake_mod.HttpAnswer(400, {"message": "Invalid filter: traceId is a string column"})
            return lambda r: True
        return real(c)

    monkeypatch.setattr(fake_mod, "_condition", condition)
    path, truth = seeded["wrong_recipient"]
    with FakeLangfuse(rows=_rows(path, "wrong_recipient")) as fake:
        result = asyncio.run(langfuse_scan(fake).run(truth_signature(truth["signature"]), window_of(truth)))
        per_trace = [r for r in fake.requests if r.query.get("traceId")]
    check_against_truth(result, truth)
    assert len(per_trace) >= len(truth["failing"])
