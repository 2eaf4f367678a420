"""`agentfire watch` (issue 16) on the sandbox scenarios in the files store, with a local webhook
receiver, the PagerDuty and Slack contract fakes and the Langfuse fake; the real Alertmanager is in
tests/test_watch_alertmanager.py.

The clock is replayed (`run_round(now=...)`): a round at time T reads what ended up to T, so "pages
within one round after the first failing trajectory ends" is checked without sleeping.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentfire import sandbox as sb
from agentfire import watch
from agentfire.config import load_runbook
from agentfire.errors import ConfigError
from agentfire.trajectory import from_observations
from tests.fakes.alerting import FakePagerDuty, FakeSlack, Receiver

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)


def _config(root: Path, **watch_section: Any) -> Path:
    cfg = root / "runbook.yaml"
    doc = yaml.safe_load(cfg.read_text())
    doc["watch"] = watch_section
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


def _seed(root: Path, scenario: str, traces: int = 200) -> tuple[Path, dict[str, Any]]:
    store = root / ".agentfire" / "traces"
    res = sb.seed_store(store, scenario=scenario, traces=traces, seed=11, now=NOW)
    return res.data_file, res.truth


def _ends(data_file: Path) -> dict[str, datetime | None]:
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in data_file.read_text().splitlines():
        r = json.loads(line)
        by[r["traceId"]].append(r)
    out = {}
    for tid, rows in by.items():
        t = from_observations(tid, rows, as_of=NOW + timedelta(hours=2))
        out[tid] = watch.done_time(t)
    return out


def _rewrite(data_file: Path, keep: Any = None, change: Any = None) -> None:
    rows = [json.loads(line) for line in data_file.read_text().splitlines()]
    rows = [change(r) if change else r for r in rows if keep is None or keep(r)]
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _first_failing(truth: dict[str, Any], ends: dict[str, datetime | None]) -> tuple[dict[str, Any], datetime]:
    done = [(ends[f["trace_id"]], f) for f in truth["failing"] if not f["still_running"]]
    end, f = min(done, key=lambda x: x[0])
    return f, end


def _replay_until_trigger(rb: Any, start: datetime, limit: int = 10) -> tuple[datetime, Any]:
    watch.run_round(rb, now=start, since_s=60)
    t = start
    for _ in range(limit):
        t += timedelta(seconds=60)
        r = watch.run_round(rb, now=t)
        assert r.ok, r.errors
        if r.actions("trigger"):
            return t, r
    raise AssertionError(f"no page within {limit} rounds after {start}")


# --- acceptance: every sandbox scenario ----------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(sb.SCENARIOS))
def test_pages_within_one_round_of_the_first_failing_trajectory_with_its_step(sandbox: Path, scenario: str) -> None:
    with Receiver() as hook:
        _config(sandbox, routes=[{"kind": "webhook", "url": hook.url + "/hook"}])
        data, truth = _seed(sandbox, scenario)
        first, end = _first_failing(truth, _ends(data))
        rb = load_runbook(sandbox / "runbook.yaml")
        paged_at, r = _replay_until_trigger(rb, end - timedelta(seconds=90))
        assert end < paged_at <= end + timedelta(seconds=60)  # the round right after it ended
        [alert] = r.actions("trigger")
        assert alert["first"]["trace_id"] == first["trace_id"]
        assert alert["step"] == first["off_rails_step"]
        assert alert["call_step"] == first["off_rails_call_step"]
        assert alert["tool"] == first["off_rails_tool"]
        assert alert["commands"]["runbook"] == f"agentfire runbook --trace {first['trace_id']}"
        assert alert["commands"]["blast"] == f"agentfire blast --like {first['trace_id']}:{first['off_rails_step']}"
        [body] = hook.bodies(200)
        assert body["status"] == "firing" and body["action"] == "trigger"
        assert body["alert"]["first"]["trace_id"] == first["trace_id"]
        assert body["alert"]["sentence"].startswith("Off the rails at step")


@pytest.mark.parametrize("scenario", sorted(sb.SCENARIOS))
def test_healthy_trajectories_never_page(sandbox: Path, scenario: str) -> None:
    with Receiver() as hook:
        _config(sandbox, routes=[{"kind": "webhook", "url": hook.url + "/hook"}])
        data, truth = _seed(sandbox, scenario)
        failing = {f["trace_id"] for f in truth["failing"]}
        _rewrite(data, keep=lambda r: r["traceId"] not in failing)
        rb = load_runbook(sandbox / "runbook.yaml")
        watch.run_round(rb, now=NOW - timedelta(hours=7), since_s=60)
        total = 0
        for hours in (1, 2, 3, 4, 5, 6, 7, 7.5):  # every trajectory ends (or goes stale) in one of these
            r = watch.run_round(rb, now=NOW - timedelta(hours=7) + timedelta(hours=hours))
            assert r.ok, r.errors
            assert r.findings == [] and r.alerts == []
            total += r.triaged
        assert total == len({json.loads(x)["traceId"] for x in data.read_text().splitlines()})
        assert hook.received == []


# --- lifecycle: page once, update, resolve; restart ------------------------------------------------


def test_pages_once_updates_resolves_and_a_restart_pages_nobody_twice(sandbox: Path) -> None:
    with Receiver() as hook:
        _config(sandbox, resolve_after_seconds=1800,
                rules=[{"name": "any", "min_severity": "medium", "threshold": 1, "window_seconds": 3600}],
                routes=[{"kind": "webhook", "url": hook.url + "/hook"}])
        data, truth = _seed(sandbox, "wrong_recipient")
        ends = _ends(data)
        first, end = _first_failing(truth, ends)
        rb = load_runbook(sandbox / "runbook.yaml")
        paged_at, r = _replay_until_trigger(rb, end - timedelta(seconds=90))
        assert len(hook.bodies(200)) == 1

        # a restart: a new runbook object and the state file only; the same round again pages nobody
        rb2 = load_runbook(sandbox / "runbook.yaml")
        again = watch.run_round(rb2, now=paged_at)
        assert again.ok and again.ended == 0 and not again.actions("trigger")
        assert len(hook.bodies(200)) == 1

        # more failing trajectories end: one update with the counts, no second page
        done = sorted(ends[f["trace_id"]] for f in truth["failing"] if not f["still_running"])
        r = watch.run_round(rb2, now=done[3] + timedelta(seconds=5))
        [upd] = r.actions("update")
        assert upd["trajectories"] == 4 and upd["first"]["trace_id"] == first["trace_id"]
        assert upd["distinct_users"] == 4
        statuses = [(b["action"], b["alert"]["trajectories"]) for b in hook.bodies(200)]
        assert statuses == [("trigger", 1), ("update", 4)]

        # the seed's last failing ones are still running: the alert counts them and stays open
        r = watch.run_round(rb2, now=NOW + timedelta(seconds=30))
        [alert] = r.alerts
        assert alert["still_running"] == len(truth["still_running"])
        assert sorted(alert["running_trace_ids"]) == sorted(truth["still_running"])

        # they go stale (and count as ended); then nothing for resolve_after: resolved, once
        r = watch.run_round(rb2, now=NOW + timedelta(minutes=20))
        assert r.alerts[0]["trajectories"] == len(truth["failing"])
        assert r.alerts[0]["distinct_users"] == len(truth["affected_users"])
        assert r.alerts[0]["still_running"] == 0
        r = watch.run_round(rb2, now=NOW + timedelta(minutes=20 + 31))
        assert [a["action"] for a in r.alerts] == ["resolve"]
        r = watch.run_round(rb2, now=NOW + timedelta(minutes=20 + 32))
        actions = [b["action"] for b in hook.bodies(200)]
        assert actions.count("trigger") == 1 and actions.count("resolve") == 1 and actions[-1] == "resolve"


def test_a_failed_delivery_is_a_round_error_and_is_sent_again_next_round(sandbox: Path) -> None:
    with Receiver() as hook:
        _config(sandbox, routes=[{"kind": "webhook", "url_env": "WATCH_TEST_HOOK", "max_retries": 0}])
        data, truth = _seed(sandbox, "destructive_sql")
        first, end = _first_failing(truth, _ends(data))
        rb = load_runbook(sandbox / "runbook.yaml")
        watch.run_round(rb, now=end - timedelta(seconds=30), since_s=60)
        import os

        os.environ.pop("WATCH_TEST_HOOK", None)
        r = watch.run_round(rb, now=end + timedelta(seconds=30))
        assert not r.ok and "WATCH_TEST_HOOK" in " ".join(r.errors)
        assert r.actions("trigger")
        os.environ["WATCH_TEST_HOOK"] = hook.url + "/hook"
        try:
            r = watch.run_round(rb, now=end + timedelta(seconds=90))
        finally:
            os.environ.pop("WATCH_TEST_HOOK", None)
        assert r.ok
        [body] = hook.bodies(200)
        assert body["action"] == "trigger" and body["alert"]["first"]["trace_id"] == first["trace_id"]


def test_drill_trajectories_never_page(sandbox: Path) -> None:
    with Receiver() as hook:
        _config(sandbox, routes=[{"kind": "webhook", "url": hook.url + "/hook"}])
        data, truth = _seed(sandbox, "wrong_recipient")

        def tag(r: dict[str, Any]) -> dict[str, Any]:
            r["tags"] = ["agentfire-gameday", "agentfire-gameday:inc-20261120-120000-ab12"]
            return r

        _rewrite(data, change=tag)
        rb = load_runbook(sandbox / "runbook.yaml")
        watch.run_round(rb, now=NOW - timedelta(hours=7), since_s=60)
        r = watch.run_round(rb, now=NOW + timedelta(minutes=30))
        assert r.ok and r.ended > 0 and r.drills_skipped == r.ended
        assert r.findings == [] and r.alerts == [] and hook.received == []


def test_a_sandbox_drill_tags_what_it_injects_and_watch_never_pages_on_it(sandbox: Path, cli) -> None:
    """A drill on the files store (the sandbox target) tags its rows as a staging drill's are, so
    a watch over that store during the drill counts them apart instead of paging on-call."""
    with Receiver() as hook:
        _config(sandbox, routes=[{"kind": "webhook", "url": hook.url + "/hook"}])
        res = cli("--incident", "drill-w", "--new", "gameday", "start", "wrong_recipient", "--seed", "5",
                  "--traces", "60", "--json")
        assert res.exit_code == 0, res
        rows = [json.loads(line) for line in
                (sandbox / ".agentfire/traces/wrong_recipient.jsonl").read_text().splitlines()]
        assert rows and all({"agentfire-gameday", "agentfire-gameday:drill-w"} <= set(r["tags"]) for r in rows)
        rb = load_runbook(sandbox / "runbook.yaml")
        now = datetime.now(timezone.utc)
        watch.run_round(rb, now=now - timedelta(hours=7), since_s=60)
        r = watch.run_round(rb, now=now + timedelta(minutes=30))
        assert r.ok and r.ended > 0 and r.drills_skipped == r.ended
        assert r.alerts == [] and hook.received == []


def test_a_store_that_cannot_be_read_is_a_round_error_exit_1_and_the_position_stays(sandbox: Path, cli) -> None:
    doc = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    doc["traces"] = {"kind": "files", "path": "missing-store", "seed_scenario": None}
    (sandbox / "runbook.yaml").write_text(yaml.safe_dump(doc))
    rb = load_runbook(sandbox / "runbook.yaml")
    r = watch.run_round(rb, now=NOW, since_s=600)
    assert not r.ok and "could not be read" in r.errors[0] and "missing-store" in r.errors[0]
    state = json.loads(watch.state_path(rb).read_text())
    # nothing read: the next round, even much later, reads from where this one meant to start
    assert state["position"] == "2026-11-20T11:50:00.000Z"
    later = watch.run_round(rb, now=NOW + timedelta(hours=3), since_s=600)
    assert later.position_before == NOW - timedelta(seconds=600)
    res = cli("watch", "--once")
    assert res.exit_code == 1
    assert "round error" in res.stderr and "missing-store" in res.stderr


def test_a_slow_store_is_a_round_error(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.langfuse import FakeLangfuse

    data, _truth = _seed(sandbox, "wrong_recipient", traces=40)
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    with FakeLangfuse(rows=rows, latency=1.5) as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        doc = yaml.safe_load((sandbox / "runbook.yaml").read_text())
        doc["traces"] = {"kind": "langfuse"}
        doc["watch"] = {"read_timeout_seconds": 0.5}
        (sandbox / "runbook.yaml").write_text(yaml.safe_dump(doc))
        rb = load_runbook(sandbox / "runbook.yaml")
        r = watch.run_round(rb, now=NOW, since_s=600)
    assert not r.ok and "did not answer within 0.5 s" in r.errors[0]


def test_the_langfuse_store_pages_like_the_files_store(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.langfuse import FakeLangfuse

    data, truth = _seed(sandbox, "papered_error", traces=60)
    first, end = _first_failing(truth, _ends(data))
    rows = [json.loads(x) for x in data.read_text().splitlines()]
    with FakeLangfuse(rows=rows) as fake:
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        doc = yaml.safe_load((sandbox / "runbook.yaml").read_text())
        doc["traces"] = {"kind": "langfuse", "project_id": "proj-7", "ui_url": "https://lf.example.org"}
        (sandbox / "runbook.yaml").write_text(yaml.safe_dump(doc))
        rb = load_runbook(sandbox / "runbook.yaml")
        paged_at, r = _replay_until_trigger(rb, end - timedelta(seconds=90))
        # the failing ones caught mid-flight without a root go stale: read whole, counted
        later = watch.run_round(rb, now=NOW + timedelta(minutes=20))
        assert later.ok and later.alerts[0]["trajectories"] == len(truth["failing"])
        assert fake.validation_errors == []
    [alert] = r.actions("trigger")
    assert alert["first"]["trace_id"] == first["trace_id"] and alert["step"] == first["off_rails_step"]
    assert alert["first"]["url"] == f"https://lf.example.org/project/proj-7/traces/{first['trace_id']}"


# --- routes: PagerDuty and Slack contract fakes -----------------------------------------------------


def test_pagerduty_trigger_update_resolve_with_one_dedup_key_and_429(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakePagerDuty() as pd:
        monkeypatch.setenv("PD_ROUTING_KEY", pd.routing_key)
        _config(sandbox, resolve_after_seconds=600,
                routes=[{"kind": "pagerduty", "url": pd.url, "routing_key_env": "PD_ROUTING_KEY"}])
        data, truth = _seed(sandbox, "runaway_loop")
        ends = _ends(data)
        first, end = _first_failing(truth, ends)
        rb = load_runbook(sandbox / "runbook.yaml")
        pd.rate_limit(1, retry_after="1")
        paged_at, r = _replay_until_trigger(rb, end - timedelta(seconds=90))
        assert pd.errors == []
        first_try, retry = pd.received[0], pd.received[1]
        assert first_try.status == 429 and retry.status == 202
        assert retry.at - first_try.at >= 1.0  # Retry-After honoured
        trig = retry.body
        assert trig["event_action"] == "trigger" and trig["payload"]["severity"] == "critical"
        assert trig["payload"]["custom_details"]["first_trace_id"] == first["trace_id"]
        assert trig["payload"]["custom_details"]["off_rails_step"] == first["off_rails_step"]
        assert "agentfire runbook --trace" in trig["payload"]["custom_details"]["runbook"]
        done = sorted(ends[f["trace_id"]] for f in truth["failing"] if not f["still_running"])
        watch.run_round(rb, now=done[1] + timedelta(seconds=5))
        watch.run_round(rb, now=NOW + timedelta(minutes=20))
        r = watch.run_round(rb, now=NOW + timedelta(minutes=40))
        assert r.ok and [a["action"] for a in r.alerts] == ["resolve"]
        accepted = [x.body for x in pd.received if x.status == 202]
        assert [e["event_action"] for e in accepted][0] == "trigger" and accepted[-1]["event_action"] == "resolve"
        assert {e["dedup_key"] for e in accepted} == {trig["dedup_key"]}
        assert len([e for e in accepted if e["event_action"] == "trigger"]) >= 2  # updates re-trigger
        assert pd.errors == []


def test_pagerduty_refusal_is_a_round_error_naming_the_route(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakePagerDuty() as pd:
        monkeypatch.setenv("PD_ROUTING_KEY", "not-the-key")
        _config(sandbox, routes=[{"kind": "pagerduty", "name": "oncall", "url": pd.url,
                                  "routing_key_env": "PD_ROUTING_KEY"}])
        data, truth = _seed(sandbox, "wrong_recipient")
        _first, end = _first_failing(truth, _ends(data))
        rb = load_runbook(sandbox / "runbook.yaml")
        watch.run_round(rb, now=end - timedelta(seconds=30), since_s=60)
        r = watch.run_round(rb, now=end + timedelta(seconds=30))
    assert not r.ok and "route oncall" in r.errors[0] and "HTTP 400" in r.errors[0]
    assert "not-the-key" not in json.dumps(r.to_json())


def test_slack_message_is_valid_block_kit_and_429_is_retried(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("slack_sdk", reason="pip install -e '.[test]' (slack-sdk checks the Slack fake's blocks)")
    with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook)
        _config(sandbox, routes=[{"kind": "slack", "url_env": "SLACK_WEBHOOK_URL"}])
        data, truth = _seed(sandbox, "destructive_sql")
        first, end = _first_failing(truth, _ends(data))
        rb = load_runbook(sandbox / "runbook.yaml")
        slack.rate_limit(1, retry_after="1")
        paged_at, r = _replay_until_trigger(rb, end - timedelta(seconds=90))
        assert r.ok and slack.errors == []
        assert [x.status for x in slack.received] == [429, 200]
        assert slack.received[1].at - slack.received[0].at >= 1.0
        msg = slack.received[1].body
        text = json.dumps(msg)
        assert first["trace_id"] in text and f"agentfire runbook --trace {first['trace_id']}" in text
        assert msg["blocks"][0]["type"] == "header" and "PAGE" in msg["blocks"][0]["text"]["text"]
        assert slack.webhook not in json.dumps(r.to_json())  # the webhook URL is a secret


def test_slack_limits_hold_for_long_values() -> None:
    pytest.importorskip("slack_sdk", reason="pip install -e '.[test]' (slack-sdk checks the Slack fake's blocks)")
    from agentfire.watch.routes import slack_message
    from tests.fakes.alerting import slack_problems

    a = {"agent": "a" * 300, "kind": "untrusted_steering", "tool": "t" * 400, "sentence": "<@U123> " + "x" * 9000,
         "summary": "s" * 5000, "trajectories": 3, "distinct_users": 2, "still_running": None, "severity": "critical",
         "first": {"trace_id": "f" * 3000, "url": None}, "latest": {"trace_id": "l", "url": "https://x/y"},
         "step": 4, "signature_id": "abc", "commands": {"runbook": "r" * 4000, "blast": "b"}, "fired_at": "now"}
    msg = slack_message(a, "trigger")
    assert slack_problems(msg) == []
    assert "<@U123>" not in json.dumps(msg)  # trace text cannot mention anyone


# --- configuration --------------------------------------------------------------------------------


def test_watch_section_errors_name_file_and_line(sandbox: Path) -> None:
    cfg = _config(sandbox, rules=[{"threshold": 0}])
    with pytest.raises(ConfigError) as e:
        load_runbook(cfg)
    line = next(n for n, text in enumerate(cfg.read_text().splitlines(), 1) if "threshold" in text)
    assert f"{cfg}:{line}: watch.rules.0.threshold" in str(e.value)
    _config(sandbox, routes=[{"kind": "slack", "url": "https://hooks.slack.com/services/T/B/secret"}])
    with pytest.raises(ConfigError) as e:
        load_runbook(cfg)
    assert "url_env" in str(e.value) and "watch.routes.0" in str(e.value)
    _config(sandbox, routes=[{"kind": "pager"}])
    with pytest.raises(ConfigError) as e:
        load_runbook(cfg)
    assert "watch.routes.0.kind" in str(e.value)


def test_watch_once_json_and_no_journal(sandbox: Path, cli) -> None:
    res = cli("watch", "--once", "--json", "--since", "2h")
    assert res.exit_code == 0, res
    doc = res.json()
    assert doc["ok"] is True and doc["store"].startswith("files:") and doc["read"] > 0
    assert not (sandbox / ".agentfire" / "incidents").exists()  # watch journals nothing
    assert (sandbox / ".agentfire" / "watch-state.json").is_file()
    again = cli("watch", "--once", "--json")
    assert again.exit_code == 0 and again.json()["ended"] == 0  # nothing read twice


# --- gameday start --page -------------------------------------------------------------------------


def test_gameday_page_goes_through_the_routes_marked_as_a_drill_and_starts_the_clock(sandbox: Path, cli) -> None:
    from agentfire.journal import Journal

    with Receiver() as hook:
        _config(sandbox, routes=[{"kind": "webhook", "url": hook.url + "/hook"}])
        res = cli("--incident", "drill-7", "--new", "gameday", "start", "wrong_recipient", "--seed", "5", "--traces", "60",
                  "--page", "--json")
        assert res.exit_code == 0, res
        doc = res.json()
        [body] = hook.bodies(200)
    alert = body["alert"]
    assert alert["drill"] is True and alert["summary"].startswith("[DRILL drill-7]")
    assert alert["first"]["trace_id"] == doc["alert_trace_id"]
    assert alert["commands"]["runbook"] == f"agentfire runbook --trace {doc['alert_trace_id']}"
    rb = load_runbook(sandbox / "runbook.yaml")
    entries = list(Journal(rb.journal_dir, "drill-7").iter_entries())
    [page] = [e for e in entries if e["action"] == "gameday.page"]
    assert page["outcome"] == "delivered" and page["delivered_at"] == doc["paged"]["delivered_at"]
    score = cli("gameday", "score", "drill-7", "--json")
    assert score.json()["clock_from"] == "page"


def test_gameday_page_without_routes_is_a_usage_error_before_anything_starts(sandbox: Path, cli) -> None:
    res = cli("--incident", "drill-8", "--new", "gameday", "start", "wrong_recipient", "--page")
    assert res.exit_code == 2 and "watch.routes" in res.stderr
    assert not (sandbox / ".agentfire" / "incidents" / "drill-8.jsonl").exists()


def test_doctor_checks_the_routes_env_variables(sandbox: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(sandbox, routes=[{"kind": "pagerduty", "routing_key_env": "WATCH_PD_KEY_T"},
                             {"kind": "slack", "url_env": "WATCH_SLACK_T"}])
    monkeypatch.setenv("WATCH_SLACK_T", "https://hooks.slack.invalid/services/x")
    monkeypatch.delenv("WATCH_PD_KEY_T", raising=False)
    res = cli("doctor", "--json")
    checks = {c["name"]: c for c in res.json()["checks"] if c["area"] == "env"}
    assert checks["$WATCH_PD_KEY_T"]["ok"] is False and checks["$WATCH_SLACK_T"]["ok"] is True
    assert "hooks.slack.invalid" not in res.stdout + res.stderr  # a secret's value is never shown


def test_bounded_work_per_round_leaves_the_rest_for_the_next_round_and_skips_nothing(sandbox: Path) -> None:
    _config(sandbox, max_per_round=70)
    data, truth = _seed(sandbox, "destructive_sql", traces=200)
    rb = load_runbook(sandbox / "runbook.yaml")
    watch.run_round(rb, now=NOW - timedelta(hours=7), since_s=60)
    at = NOW + timedelta(minutes=20)
    seen: list[str] = []
    rounds = []
    for _ in range(6):
        r = watch.run_round(rb, now=at)
        assert r.ok, r.errors
        rounds.append((r.triaged, r.backlog))
        seen += [f["trace_id"] for f in r.findings]
        if not r.backlog:
            break
    ended = {tid for tid, d in _ends(data).items() if d is not None and d <= at}
    assert rounds[0] == (70, len(ended) - 70) and rounds[-1][1] == 0
    assert sum(n for n, _ in rounds) == len(ended)  # each one triaged once, none skipped
    assert sorted(seen) == sorted(f["trace_id"] for f in truth["failing"])
