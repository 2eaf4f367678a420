"""capture --push: a Langfuse dataset item (contract fake) and a Phoenix example (real server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentfire.capture import case_id
from tests.fakes.langfuse import FakeLangfuse, HttpAnswer, langfuse_fake  # noqa: F401
from tests.test_capture import WRONG_RECIPIENT, trace_rows, write_store

ITEMS = "/api/public/dataset-items"


def _push(cli, fake: FakeLangfuse, *args: str, env: dict[str, str] | None = None):
    new = [] if Path(".agentfire/incidents/inc-push.jsonl").exists() else ["--new"]  # cwd: the sandbox
    return cli("--incident", "inc-push", *new, "capture", *args, "--push", "--json",
               env={**fake.env(), **(env or {})})


def set_runbook(sandbox: Path, **sections: Any) -> None:
    import yaml

    path = sandbox / "runbook.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(sections)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _journal(sandbox: Path, incident: str = "inc-push") -> list[dict[str, Any]]:
    path = sandbox / ".agentfire" / "incidents" / f"{incident}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_push_upserts_a_dataset_item_with_the_right_fields(sandbox, cli, langfuse_fake):
    from langfuse.api import CreateDatasetItemRequest, DatasetItem
    from langfuse.api.core.pydantic_utilities import parse_obj_as

    write_store(sandbox, ("trace-wr-1", trace_rows("trace-wr-1", WRONG_RECIPIENT)))
    r = _push(cli, langfuse_fake, "trace-wr-1", "--step", "4", "--expected", "ask first")
    assert r.exit_code == 0, r
    doc = r.json()
    cid = case_id("trace-wr-1", 4)
    assert doc["push"][0]["target"] == "langfuse" and doc["push"][0]["outcome"] == "CONFIRMED"
    assert doc["push"][0]["dataset"] == "support-agent-regressions"

    assert list(langfuse_fake.datasets) == ["support-agent-regressions"]
    assert list(langfuse_fake.dataset_items) == [cid]
    item = parse_obj_as(DatasetItem, langfuse_fake.dataset_items[cid])  # the SDK's own model
    case = doc["case"]
    assert item.id == cid
    assert item.source_trace_id == "trace-wr-1"
    assert item.source_observation_id == "trace-wr-1-obs-4"
    assert item.input == case["vars"]
    assert item.expected_output == {"expected": "ask first", "golden_tools": None}
    assert item.metadata["case_id"] == cid and item.metadata["incident"] == "inc-push"
    assert item.metadata["off_rails"]["name"] == "send_email"
    assert item.dataset_name == "support-agent-regressions"
    # the request body itself fits the SDK's request model
    from agentfire.datasets import langfuse_item

    body = parse_obj_as(CreateDatasetItemRequest, langfuse_item(case, "support-agent-regressions"))
    assert body.id == cid and body.source_observation_id == "trace-wr-1-obs-4"

    pushes = [e for e in _journal(sandbox) if e["action"] == "capture.push"]
    assert pushes and pushes[0]["outcome"] == "CONFIRMED"
    everything = r.stdout + r.stderr + json.dumps(_journal(sandbox))
    assert langfuse_fake.secret_key not in everything


def test_a_retry_after_a_5xx_does_not_duplicate(sandbox, cli, langfuse_fake):
    write_store(sandbox, ("t-5", trace_rows("t-5", WRONG_RECIPIENT)))
    langfuse_fake.inject(503, times=2, path=ITEMS)
    r = _push(cli, langfuse_fake, "t-5", "--step", "4", "--expected", "x")
    assert r.exit_code == 0, r
    assert r.json()["push"][0]["outcome"] == "CONFIRMED"
    assert langfuse_fake.count(ITEMS, "POST") == 3  # two 503s, then the upsert
    assert list(langfuse_fake.dataset_items) == [case_id("t-5", 4)]


class CommitThenFail(FakeLangfuse):
    """The server stores the item, then the answer is lost (a gateway 502 after the commit)."""

    failures = 1

    def _route(self, method: str, path: str, q: dict[str, list[str]], body: Any) -> Any:
        answer = super()._route(method, path, q, body)
        if method == "POST" and path == ITEMS and self.failures:
            self.failures -= 1
            raise HttpAnswer(502, {"message": "bad gateway"})
        return answer


def test_a_retry_after_a_5xx_that_was_committed_does_not_duplicate(sandbox, cli):
    write_store(sandbox, ("t-c", trace_rows("t-c", WRONG_RECIPIENT)))
    with CommitThenFail() as fake:
        r = _push(cli, fake, "t-c", "--step", "4", "--expected", "x")
        assert r.exit_code == 0, r
        assert fake.count(ITEMS, "POST") == 2
        assert list(fake.dataset_items) == [case_id("t-c", 4)]
        # and capturing it again: the eval set says "exists", the item is upserted, still one
        again = _push(cli, fake, "t-c", "--step", "4", "--expected", "x")
        assert again.exit_code == 0 and again.json()["outcome"] == "exists"
        assert list(fake.dataset_items) == [case_id("t-c", 4)]
        assert not fake.validation_errors


def test_refused_credentials_keep_the_case_and_exit_1(sandbox, cli, langfuse_fake):
    write_store(sandbox, ("t-a", trace_rows("t-a", WRONG_RECIPIENT)))
    r = _push(cli, langfuse_fake, "t-a", "--step", "4", "--expected", "x",
              env={"LANGFUSE_SECRET_KEY": "sk-wrong-secret-value"})
    assert r.exit_code == 1
    assert "langfuse=AUTH" in r.stderr
    assert r.json()["outcome"] == "added"  # the eval set is the source of truth; it has the case
    assert "sk-wrong-secret-value" not in r.stdout + r.stderr


def test_a_server_that_keeps_failing_is_not_confirmed(sandbox, cli, langfuse_fake):
    write_store(sandbox, ("t-f", trace_rows("t-f", WRONG_RECIPIENT)))
    langfuse_fake.inject(500, times=50, path=ITEMS)
    r = _push(cli, langfuse_fake, "t-f", "--step", "4", "--expected", "x")
    assert r.exit_code == 1
    push = r.json()["push"][0]
    assert push["outcome"] == "ERROR" and "HTTP 500 after 4 tries" in push["detail"]
    assert not langfuse_fake.dataset_items


def test_push_with_nowhere_to_push_is_a_usage_error_before_writing(sandbox, cli, monkeypatch):
    for name in ("LANGFUSE_BASE_URL", "LANGFUSE_HOST"):
        monkeypatch.delenv(name, raising=False)
    write_store(sandbox, ("t-n", trace_rows("t-n", WRONG_RECIPIENT)))
    r = cli("capture", "t-n", "--step", "4", "--expected", "x", "--push")
    assert r.exit_code == 2 and "nowhere to push" in r.stderr
    assert not (sandbox / "evals" / "regressions.jsonl").exists()


def test_langfuse_trace_store_reads_and_pushes_to_the_same_langfuse(sandbox, cli, langfuse_fake,
                                                                   monkeypatch):
    langfuse_fake.add_rows(trace_rows("lf-trace-1", WRONG_RECIPIENT))
    set_runbook(sandbox, traces={"kind": "langfuse", "base_url": langfuse_fake.base_url})
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", langfuse_fake.public_key)
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", langfuse_fake.secret_key)
    monkeypatch.delenv("LANGFUSE_BASE_URL", raising=False)
    r = cli("--incident", "inc-lf", "--new", "capture", "lf-trace-1", "--expected", "ask first",
            "--push", "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["off_rails"]["chosen_by"] == "triage"
    assert list(langfuse_fake.dataset_items) == [doc["case_id"]]
    assert langfuse_fake.dataset_items[doc["case_id"]]["sourceTraceId"] == "lf-trace-1"


# --- Phoenix, for real --------------------------------------------------------------------------

from tests.servers.phoenix import phoenix_server  # noqa: E402,F401


@pytest.mark.servers
def test_push_to_phoenix_upserts_one_example(sandbox, cli, phoenix_server):
    from agentfire.sandbox import seed_store

    seeded = seed_store(sandbox / "seed", scenario="wrong_recipient", traces=20, seed=5)
    bad = next(f for f in seeded.truth["failing"] if not f["still_running"])
    rows = [json.loads(line) for line in seeded.data_file.read_text().splitlines()
            if bad["trace_id"] in line]
    project = phoenix_server.ingest(rows)
    set_runbook(sandbox, traces={"kind": "phoenix", "url": phoenix_server.url, "project": project},
                evals={"path": "evals/regressions.jsonl", "phoenix_dataset": f"regressions-{project}"})
    r = cli("--incident", "inc-px", "--new", "capture", bad["trace_id"], "--expected", "ask first",
            "--push", "--json", env={"LANGFUSE_BASE_URL": ""})
    assert r.exit_code == 0, r
    doc = r.json()
    assert [p["target"] for p in doc["push"]] == ["phoenix"]
    assert doc["push"][0]["outcome"] == "CONFIRMED", doc["push"]
    assert doc["case"]["off_rails"]["step"] == bad["off_rails_step"]
    # again: Phoenix matches the example on its id, so there is still exactly one
    again = cli("--incident", "inc-px", "capture", bad["trace_id"], "--expected", "ask first",
                "--push", "--json", env={"LANGFUSE_BASE_URL": ""})
    assert again.exit_code == 0, again
    assert again.json()["push"][0]["outcome"] == "CONFIRMED"
    import httpx

    ds = httpx.get(f"{phoenix_server.url}/v1/datasets",
                   params={"name": f"regressions-{project}"}).json()["data"]
    assert len(ds) == 1
    examples = httpx.get(f"{phoenix_server.url}/v1/datasets/{ds[0]['id']}/examples").json()
    assert len(examples["data"]["examples"]) == 1
    assert examples["data"]["examples"][0]["metadata"]["case_id"] == doc["case_id"]


def test_an_unusable_langfuse_url_is_an_outcome_not_a_traceback(sandbox, cli):
    write_store(sandbox, ("t-u", trace_rows("t-u", WRONG_RECIPIENT)))
    env = {"LANGFUSE_PUBLIC_KEY": "pk-x", "LANGFUSE_SECRET_KEY": "sk-x-secret"}
    for url, outcome in (("ftp://nowhere.invalid", "UNREACHABLE"), ("http://127.0.0.1:9", "UNREACHABLE")):
        r = cli("capture", "t-u", "--step", "4", "--expected", "x", "--push", "--json",
                env={**env, "LANGFUSE_BASE_URL": url})
        assert r.exit_code == 1, r
        assert r.json()["push"][0]["outcome"] == outcome


def test_rate_limited_dataset_calls_wait_as_asked_then_confirm(sandbox, cli, langfuse_fake):
    write_store(sandbox, ("t-429", trace_rows("t-429", WRONG_RECIPIENT)))
    langfuse_fake.inject(429, times=1, retry_after=0.2, path="/api/public/v2/datasets")
    langfuse_fake.inject(429, times=1, retry_after=0.2, path=ITEMS)
    r = _push(cli, langfuse_fake, "t-429", "--step", "4", "--expected", "x")
    assert r.exit_code == 0, r
    assert r.json()["push"][0]["outcome"] == "CONFIRMED"
    statuses = [q.status for q in langfuse_fake.requests if q.method == "POST"]
    assert statuses == [429, 200, 429, 200]
    assert len(langfuse_fake.dataset_items) == 1
