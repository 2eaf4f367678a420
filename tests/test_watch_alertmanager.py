"""`agentfire watch` against a real Alertmanager (issue 16): an incident seeded into the files
store pages once, updates as more trajectories hit, resolves when they stop; healthy traffic never
pages; a restarted watch does not page twice. watch's clock is replayed (run_round(now=...));
Alertmanager runs on real time, and its webhook notifications are what a pager would get."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agentfire import watch
from agentfire.config import load_runbook
from tests.servers.alertmanager import Alertmanager, alertmanager  # noqa: F401
from tests.servers.phoenix import phoenix_server  # noqa: F401
from tests.test_watch import NOW, _config, _ends, _first_failing, _replay_until_trigger, _rewrite, _seed

pytestmark = pytest.mark.servers


def _firing(am: Alertmanager) -> list[dict]:
    return [n for n in am.notifications() if n["status"] == "firing"]


def test_alertmanager_pages_once_updates_and_resolves(sandbox: Path, alertmanager: Alertmanager) -> None:  # noqa: F811
    am = alertmanager
    _config(sandbox, resolve_after_seconds=1800,
            rules=[{"name": "any", "min_severity": "medium", "threshold": 1, "window_seconds": 3600}],
            routes=[{"kind": "alertmanager", "url": am.url}])
    data, truth = _seed(sandbox, "wrong_recipient")
    ends = _ends(data)
    first, end = _first_failing(truth, ends)
    rb = load_runbook(sandbox / "runbook.yaml")
    paged_at, r = _replay_until_trigger(rb, end - timedelta(seconds=90))
    assert r.ok, r.errors

    [note] = am.wait_for(lambda: _firing(am))
    [alert] = note["alerts"]
    assert alert["labels"]["alertname"] == "AgentOffRails"
    assert alert["labels"]["kind"] == "untrusted_steering" and alert["labels"]["tool"] == "send_email"
    assert alert["labels"]["agent"] == "support-agent" and alert["labels"]["severity"] == "critical"
    ann = alert["annotations"]
    assert ann["first_trace_id"] == first["trace_id"] and ann["off_rails_step"] == str(first["off_rails_step"])
    assert ann["runbook"] == f"agentfire runbook --trace {first['trace_id']}"
    assert ann["blast"] == f"agentfire blast --like {first['trace_id']}:{first['off_rails_step']}"
    assert ann["trajectories"] == "1" and ann["description"].startswith("Off the rails at step")

    # a restarted watch (new runbook object, the state file only) re-sends the firing alert, as
    # Alertmanager expects, and nobody is paged again
    rb2 = load_runbook(sandbox / "runbook.yaml")
    assert watch.run_round(rb2, now=paged_at + timedelta(seconds=60)).ok
    done = sorted(ends[f["trace_id"]] for f in truth["failing"] if not f["still_running"])
    r = watch.run_round(rb2, now=done[3] + timedelta(seconds=5))
    assert r.ok and r.actions("update")
    live = am.wait_for(lambda: [a for a in am.alerts() if a["annotations"].get("trajectories") == "4"])
    assert live[0]["labels"]["signature"] == alert["labels"]["signature"]
    assert live[0]["annotations"]["distinct_users"] == "4"
    time.sleep(3)  # a few group_intervals: an update must not notify again
    assert len(_firing(am)) == 1

    # the running ones go stale, then nothing for resolve_after: resolved, with endsAt
    assert watch.run_round(rb2, now=NOW + timedelta(minutes=20)).ok
    r = watch.run_round(rb2, now=NOW + timedelta(minutes=51))
    assert r.ok and [a["action"] for a in r.alerts] == ["resolve"]
    resolved = am.wait_for(lambda: [n for n in am.notifications() if n["status"] == "resolved"])
    assert resolved[0]["alerts"][0]["labels"]["signature"] == alert["labels"]["signature"]
    assert resolved[0]["alerts"][0]["annotations"]["trajectories"] == str(len(truth["failing"]))
    assert am.alerts() == []
    assert len(_firing(am)) == 1


def test_alertmanager_never_hears_of_healthy_traffic(sandbox: Path, alertmanager: Alertmanager) -> None:  # noqa: F811
    am = alertmanager
    _config(sandbox, routes=[{"kind": "alertmanager", "url": am.url}])
    data, truth = _seed(sandbox, "papered_error")
    failing = {f["trace_id"] for f in truth["failing"]}
    _rewrite(data, keep=lambda r: r["traceId"] not in failing)
    rb = load_runbook(sandbox / "runbook.yaml")
    watch.run_round(rb, now=NOW - timedelta(hours=7), since_s=60)
    for hours in (2, 4, 6, 7.5):
        r = watch.run_round(rb, now=NOW - timedelta(hours=7) + timedelta(hours=hours))
        assert r.ok and r.alerts == [] and r.deliveries == []
    time.sleep(2)
    assert am.alerts(active=False) == [] and am.notifications() == []
    assert json.loads(watch.state_path(rb).read_text())["groups"] == {}


def test_an_incident_in_phoenix_pages_alertmanager_with_the_trace_link(sandbox: Path, alertmanager: Alertmanager,  # noqa: F811
                                                                         phoenix_server) -> None:  # noqa: F811
    am = alertmanager
    seeded = phoenix_server.seed_scenario("wrong_recipient", traces=40, seed=7)
    data = seeded.path / "wrong_recipient.jsonl"
    first, end = _first_failing(seeded.truth, _ends(data))
    _config(sandbox, routes=[{"kind": "alertmanager", "url": am.url}])
    import yaml

    doc = yaml.safe_load((sandbox / "runbook.yaml").read_text())
    doc["traces"] = {"kind": "phoenix", "url": phoenix_server.url, "project": seeded.project}
    (sandbox / "runbook.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    rb = load_runbook(sandbox / "runbook.yaml")
    paged_at, r = _replay_until_trigger(rb, end - timedelta(seconds=90))
    assert end < paged_at <= end + timedelta(seconds=60)
    [note] = am.wait_for(lambda: _firing(am))
    [alert] = note["alerts"]
    assert alert["annotations"]["first_trace_id"] == first["trace_id"]
    assert alert["annotations"]["off_rails_step"] == str(first["off_rails_step"])
    assert alert["generatorURL"].startswith(phoenix_server.url + "/projects/")
    assert alert["generatorURL"].endswith("/traces/" + first["trace_id"])
    # later: every failing trajectory has ended or gone stale (the rootless ones read whole), the
    # alert is updated, then resolved once they stop; one page in all
    seed_now = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    r = watch.run_round(rb, now=seed_now + timedelta(minutes=20))
    assert r.ok and r.alerts[0]["trajectories"] == len(seeded.truth["failing"])
    r = watch.run_round(rb, now=seed_now + timedelta(minutes=20) + timedelta(seconds=rb.model.watch.resolve_after_seconds + 60))
    assert r.ok and [a["action"] for a in r.alerts] == ["resolve"]
    am.wait_for(lambda: [n for n in am.notifications() if n["status"] == "resolved"])
    assert len(_firing(am)) == 1
