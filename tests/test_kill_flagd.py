"""kill / status / undo against the embedded sandbox (flagd files), through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import run_agentfire


def flag_doc(root: Path, region: str) -> dict:
    return json.loads((root / f".agentfire/flags/{region}.flagd.json").read_text())


def test_kill_all_regions_confirms_each_and_journals(sandbox: Path, cli) -> None:
    r = cli("--incident", "inc-test", "--new", "kill", "--region", "all", "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    assert doc["incident"] == "inc-test" and doc["flag"] == "agent.enabled" and doc["all_off"] is True
    assert [x["region"] for x in doc["regions"]] == ["us-east", "eu-west", "ap-south"]
    for x in doc["regions"]:
        assert x["outcome"] == "CONFIRMED" and x["before"] is True and x["after"] is False
        assert set(x) == {"region", "provider", "outcome", "before", "after", "latency_ms", "detail",
                          "agent_view", "agents_see", "agents_see_s"}
        # read back as an agent evaluates it: the flagd OpenFeature provider says off
        assert x["agent_view"]["on"] is False and "flagd file" in x["agent_view"]["detail"]
        assert "next call" in x["agents_see"]
        # the off variant is the default, not merely state DISABLED (which serves the caller default)
        f = flag_doc(sandbox, x["region"])["flags"]["agent.enabled"]
        assert f["defaultVariant"] == "off" and f["state"] == "ENABLED"
    entries = [json.loads(l) for l in (sandbox / ".agentfire/incidents/inc-test.jsonl").read_text().splitlines()]
    kill = [e for e in entries if e["action"] == "kill"][0]
    assert {r["region"]: r["before"] for r in kill["regions"]} == {"us-east": True, "eu-west": True, "ap-south": True}
    assert kill["actor"] and kill["ts"].endswith("Z")


def test_second_kill_is_already_off_and_status_reads_live(sandbox: Path, cli) -> None:
    assert cli("--incident", "inc-a", "--new", "kill", "--json").exit_code == 0
    r = cli("--incident", "inc-a", "kill", "--json")
    assert r.exit_code == 0
    assert {x["outcome"] for x in r.json()["regions"]} == {"ALREADY_OFF"}
    s = cli("status", "--json")
    assert s.exit_code == 0
    assert [x["on"] for x in s.json()["regions"]] == [False, False, False]


def test_undo_restores_only_regions_this_incident_turned_off(sandbox: Path, cli) -> None:
    # eu-west is off before the incident (someone killed it by hand earlier)
    assert cli("--incident", "inc-old", "--new", "kill", "--region", "eu-west", "--json").exit_code == 0
    assert cli("--incident", "inc-new", "--new", "kill", "--region", "all", "--json").exit_code == 0
    r = cli("--incident", "inc-new", "kill", "--undo", "--json")
    assert r.exit_code == 0, r
    outcomes = {x["region"]: x["outcome"] for x in r.json()["regions"]}
    assert outcomes == {"us-east": "CONFIRMED", "eu-west": "SKIPPED", "ap-south": "CONFIRMED"}
    live = {x["region"]: x["on"] for x in cli("status", "--json").json()["regions"]}
    assert live == {"us-east": True, "eu-west": False, "ap-south": True}


def test_dry_run_changes_nothing(sandbox: Path, cli) -> None:
    cli("status")  # creates the files with the agent on
    before = {r: flag_doc(sandbox, r) for r in ("us-east", "eu-west", "ap-south")}
    r = cli("kill", "--dry-run", "--json")
    assert r.exit_code == 0
    assert {x["outcome"] for x in r.json()["regions"]} == {"DRY_RUN"}
    assert {r: flag_doc(sandbox, r) for r in before} == before
    assert not (sandbox / ".agentfire/incidents").exists() or not list((sandbox / ".agentfire/incidents").glob("*.jsonl"))


def test_corrupt_flag_file_is_left_untouched_and_region_fails(sandbox: Path, cli) -> None:
    cli("status")
    bad = sandbox / ".agentfire/flags/eu-west.flagd.json"
    bad.write_text('{"flags": {"agent.enabled": ')
    r = cli("--incident", "inc-c", "--new", "kill", "--json")
    assert r.exit_code == 1
    outcomes = {x["region"]: x["outcome"] for x in r.json()["regions"]}
    assert outcomes == {"us-east": "CONFIRMED", "eu-west": "ERROR", "ap-south": "CONFIRMED"}
    assert r.json()["all_off"] is False
    assert bad.read_text() == '{"flags": {"agent.enabled": '


def test_targeting_is_stashed_on_kill_and_restored_on_undo(sandbox: Path, cli) -> None:
    cli("status")
    p = sandbox / ".agentfire/flags/us-east.flagd.json"
    doc = json.loads(p.read_text())
    rule = {"if": [{"in": ["@beta", {"var": "email"}]}, "on", None]}
    doc["flags"]["agent.enabled"]["targeting"] = rule
    p.write_text(json.dumps(doc))
    assert cli("--incident", "inc-t", "--new", "kill", "--region", "us-east", "--json").exit_code == 0
    killed = json.loads(p.read_text())["flags"]["agent.enabled"]
    assert "targeting" not in killed and killed["defaultVariant"] == "off"
    assert cli("--incident", "inc-t", "kill", "--undo", "--region", "us-east").exit_code == 0
    restored = json.loads(p.read_text())["flags"]["agent.enabled"]
    assert restored["targeting"] == rule and restored["defaultVariant"] == "on"


def test_real_process_kill_without_terminal_never_asks(sandbox: Path) -> None:
    r = run_agentfire("kill", "--region", "us-east,ap-south", cwd=sandbox)
    assert r.exit_code == 0, r
    assert "CONFIRMED" in r.stdout and "opened incident inc-" in r.stderr
    assert "us-east" in r.stdout and "eu-west" not in r.stdout


def test_atomic_write_never_replaces_a_device_or_symlink(tmp_path: Path) -> None:
    import os

    import pytest

    from agentfire._files import atomic_write
    from agentfire.errors import StateFileError

    with pytest.raises(StateFileError):
        atomic_write(Path("/dev/null"), b"x")
    assert Path("/dev/null").is_char_device()
    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    os.symlink(target, link)
    with pytest.raises(StateFileError):
        atomic_write(link, b"[]")
    assert target.read_text() == "{}" and link.is_symlink()


# --- the read-back's evaluator is the provider's ------------------------------------------------

_ON_OFF = {"on": True, "off": False}
READ_BACK_FILES: dict[str, dict] = {
    "on": {"state": "ENABLED", "variants": _ON_OFF, "defaultVariant": "on"},
    "killed": {"state": "ENABLED", "variants": _ON_OFF, "defaultVariant": "off"},
    "disabled": {"state": "DISABLED", "variants": _ON_OFF, "defaultVariant": "off"},
    "targeted": {"state": "ENABLED", "variants": _ON_OFF, "defaultVariant": "off",
                 "targeting": {"if": [{"ends_with": [{"var": "email"}, "@beta.example"]}, "on", "off"]}},
    "fractional": {"state": "ENABLED", "variants": _ON_OFF, "defaultVariant": "off",
                   "targeting": {"fractional": [["on", 50], ["off", 50]]}},
    "not a boolean": {"state": "ENABLED", "variants": {"on": "yes", "off": "no"}, "defaultVariant": "on"},
}


def _answer(provider: Any, flag: str, ctx: Any) -> tuple:
    try:
        d = provider.resolve_boolean_details(flag, False, ctx)
    except Exception as exc:  # an OpenFeatureError (a missing flag, a non-boolean) is an answer too
        return (None, type(exc).__name__, str(exc), getattr(exc, "error_code", "raised"), None)
    return (d.value, d.reason, d.variant, d.error_code, d.error_message)


def test_the_read_back_evaluates_the_file_as_the_flagd_provider_does(tmp_path: Path) -> None:
    """kill's read-back (agentside.agent_view, one shot) asks flagd-core's evaluator directly,
    fed the file as the provider's FileWatcher reads it; an agent's FlagdProvider(FILE) asks
    the same evaluator through its in-process resolver. Same answer, file by file and context
    by context (targeting, fractional, DISABLED, a missing flag, a non-boolean, YAML)."""
    import yaml
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext

    from agentfire.providers.flags.flagd import FileEvaluator

    contexts = [EvaluationContext("support-agent"), EvaluationContext("u-1", {"email": "a@beta.example"}),
                *(EvaluationContext(f"user-{i}") for i in range(8))]
    compared = set()
    for name, entry in READ_BACK_FILES.items():
        for suffix in (".json", ".yaml"):
            path = tmp_path / f"{name.replace(' ', '-')}{suffix}"
            doc = {"flags": {"agent.enabled": entry}}
            path.write_text(yaml.safe_dump(doc) if suffix == ".yaml" else json.dumps(doc))
            provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path),
                                     deadline_ms=60_000)
            provider.initialize(EvaluationContext())
            try:
                once = FileEvaluator(path)
                assert type(provider.resolver.evaluator) is type(once.core)  # the same engine
                for ctx in contexts:
                    for flag in ("agent.enabled", "no.such.flag"):
                        want = _answer(provider, flag, ctx)
                        assert _answer(once, flag, ctx) == want, (name, suffix, ctx, flag)
                        compared.add((name, want[0], want[3] is not None))
            finally:
                provider.shutdown()
    # the cases really differ: on, off, per-context values, an error
    assert {v for _, v, _ in compared} >= {True, False} and any(e for *_, e in compared)
    assert {v for n, v, _ in compared if n == "targeted"} == {True, False, None}  # None: no.such.flag


def test_the_read_back_sees_a_corrupt_file_as_not_evaluated(sandbox: Path, cli) -> None:
    """Agents keep serving a corrupt file's last good values only inside a running provider; the
    one-shot read-back checks the file first and says it cannot be evaluated (fails closed)."""
    from agentfire import agentside
    from agentfire.config import load_runbook

    assert cli("status").exit_code == 0
    rb = load_runbook(sandbox / "runbook.yaml")
    assert agentside.agent_view(rb, "us-east", timeout_s=2).on is True
    (sandbox / ".agentfire/flags/us-east.flagd.json").write_text('{"flags": {"agent.enabled": {"sta')
    view = agentside.agent_view(rb, "us-east", timeout_s=0.3, want_on=False)
    assert view.on is None and "not valid JSON" in view.detail
