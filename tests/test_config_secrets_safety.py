"""Issue 12, items 16-19 and 21: secrets and hostile configuration.

Tokens echoed by a server are redacted at every output (tables, guard reasons, journal, --json),
in every encoding we send them; a hostile runbook.yaml is one clear config error, fast; an unset
variable in a path is a config error naming it; spend that is not a finite number fails closed,
timeouts are range-checked, malformed URLs are one-line errors; a Redis store without persistence
is a doctor warning, and a freeze that vanished from the store shows in `status`.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import REPO, run_agentfire
from tests.fakes.langfuse import FakeLangfuse, langfuse_fake  # noqa: F401
from tests.fakes.launchdarkly import LaunchDarklyFake, launchdarkly_fake  # noqa: F401
from tests.servers.redis import redis_server  # noqa: F401

FLAG = "agent.enabled"
TOKEN = "api-77aa/secret+token=value-ld"


@pytest.fixture
def ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ops"
    root.mkdir()
    shutil.copytree(REPO / "fallbacks", root / "fallbacks")
    monkeypatch.chdir(root)
    monkeypatch.setenv("AGENTFIRE_CONFIG", str(root / "runbook.yaml"))
    monkeypatch.delenv("AGENTFIRE_INCIDENT", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    return root


def runbook(root: Path, **sections: Any) -> Path:
    doc: dict[str, Any] = {
        "version": 1,
        "agent": {"name": "support-agent", "flag": FLAG, "fallback": "fallbacks/support-agent.md"},
        "regions": {"local": {"kind": "flagd", "path": ".agentfire/flags/local.flagd.json", "create": True}},
        "journal": {"dir": ".agentfire/incidents"},
    }
    doc.update(sections)
    (root / "runbook.yaml").write_text(json.dumps(doc, indent=2))
    return root / "runbook.yaml"


# --- item 16: tokens echoed by a server are redacted everywhere --------------------------------


def _forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), quote_plus(value), base64.b64encode(value.encode()).decode()]


def test_token_echoed_by_the_server_is_redacted_in_tables_guard_and_journal(
        ops: Path, cli, launchdarkly_fake: LaunchDarklyFake, monkeypatch: pytest.MonkeyPatch) -> None:
    launchdarkly_fake.tokens = {TOKEN}
    runbook(ops, regions={"ld-prod": {"kind": "launchdarkly", "base_url": launchdarkly_fake.url,
                                      "project": "default", "environment": "production"}})
    monkeypatch.setenv("LD_ACCESS_TOKEN", TOKEN)
    echo = ("token " + TOKEN + " refused; as sent: " + quote(TOKEN, safe="") + " / "
            + quote_plus(TOKEN) + " / " + base64.b64encode(TOKEN.encode()).decode())
    launchdarkly_fake.inject("production", "status", status=403, on="read", message=echo)
    r = cli("--incident", "inc-echo", "--new", "kill", "--yes")  # the table, not --json
    assert r.exit_code == 1, r
    assert "refused" in r.stdout  # the server's words are shown...
    s = cli("status")
    # a guard reason carrying a provider's error text (an SDK echoing the key it was sent)
    from agentfire.guard import AgentDecision

    d = AgentDecision(False, f"flag unreadable (HTTPError: key {quote_plus(TOKEN)} refused)")
    assert not d and "refused" in d.reason
    j = cli("--incident", "inc-echo", "kill", "--yes", "--json")
    texts = [r.stdout, r.stderr, s.stdout, s.stderr, d.reason, j.stdout, j.stderr,
             (ops / ".agentfire/incidents/inc-echo.jsonl").read_text()]
    for text in texts:  # ...but never the token, in any encoding
        for form in _forms(TOKEN):
            assert form not in text, (form, text)


def test_basic_credential_and_url_encoded_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfire.secrets import redact, redact_obj, secret

    monkeypatch.setenv("AF_T_PK", "pk-lf-1234-public")
    monkeypatch.setenv("AF_T_SK", "sk-lf-5678/secret+x")
    pk, sk = secret("AF_T_PK", what="pk"), secret("AF_T_SK", what="sk")
    basic = base64.b64encode(f"{pk}:{sk}".encode()).decode()
    text = f"Authorization: Basic {basic}; url ?key={quote(sk, safe='')}&k2={quote_plus(sk)}"
    out = redact(text)
    assert basic not in out and quote(sk, safe="") not in out and quote_plus(sk) not in out
    assert "Basic ***" in out
    assert basic not in json.dumps(redact_obj({"a": [text]}))


def test_basic_credential_echoed_by_langfuse_is_redacted(
        ops: Path, langfuse_fake: FakeLangfuse, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in langfuse_fake.env().items():
        monkeypatch.setenv(k, v)
    runbook(ops, traces={"kind": "langfuse"})
    basic = base64.b64encode(f"{langfuse_fake.public_key}:{langfuse_fake.secret_key}".encode()).decode()
    langfuse_fake.inject(400, times=50, body={"message": f"bad request with Authorization: Basic {basic}"})
    outs = []
    for args in (("triage", "tr-missing"), ("triage", "tr-missing", "--json")):
        r = run_agentfire(*args, cwd=ops, env={**langfuse_fake.env(), "AGENTFIRE_CONFIG": str(ops / "runbook.yaml")})
        assert r.exit_code != 0
        outs += [r.stdout, r.stderr]
    assert any("bad request" in o for o in outs), outs
    for o in outs:
        assert basic not in o and langfuse_fake.secret_key not in o


# --- item 17: hostile YAML is one clear config error, fast --------------------------------------

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize("name,text", [
    ("alias bomb", BOMB),
    ("self-referencing alias", "version: 1\nagent: &x\n  name: a\n  loop: *x\n"),
    ("self-referencing list", "version: 1\nregions: &r [*r]\n"),
    ("deep nesting", "version: 1\nagent: " + "[" * 5000 + "]" * 5000 + "\n"),
    ("deep mappings", "version: 1\nagent: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n"),
    ("huge file", "version: 1\n# " + "x" * (9 * 1024 * 1024) + "\n"),
], ids=["alias-bomb", "self-alias", "self-list", "deep-flow", "deep-mappings", "huge"])
def test_hostile_yaml_is_one_clear_config_error(ops: Path, name: str, text: str) -> None:
    (ops / "runbook.yaml").write_text(text)
    started = time.monotonic()
    r = run_agentfire("status", cwd=ops, env={"AGENTFIRE_CONFIG": str(ops / "runbook.yaml")}, timeout=120)
    elapsed = time.monotonic() - started
    assert r.exit_code == 2, (name, r)
    assert "Traceback" not in r.stderr and "runbook.yaml" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3, r.stderr
    assert elapsed < 30, (name, elapsed)  # it used to hang (the bomb) or crash


def test_guard_fails_closed_fast_on_an_alias_bomb(ops: Path) -> None:
    (ops / "runbook.yaml").write_text(BOMB)
    from agentfire.guard import agent_enabled

    d = agent_enabled(config=str(ops / "runbook.yaml"))
    assert not d and "alias" in d.reason


# --- item 18: an unset variable in a path is a config error naming it ---------------------------


def test_unset_variable_in_a_path_is_a_config_error(ops: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AF_UNSET_STATE_DIR", raising=False)
    runbook(ops, budget={"kind": "sqlite", "path": "$AF_UNSET_STATE_DIR/budget.sqlite"})
    r = cli("--incident", "inc-var", "--new", "freeze", "--to", "0.40", "--window", "1h")
    assert r.exit_code == 2, r
    assert "$AF_UNSET_STATE_DIR" in r.stderr and "not set" in r.stderr
    assert not (ops / "$AF_UNSET_STATE_DIR").exists()  # no store the agents never read
    d = cli("doctor", "--json")
    assert d.exit_code == 1
    bad = [c for c in d.json()["checks"] if not c["ok"]]
    assert any("$AF_UNSET_STATE_DIR" in c["detail"] for c in bad), bad
    monkeypatch.setenv("AF_UNSET_STATE_DIR", str(ops / "state"))
    assert cli("--incident", "inc-var", "--new", "freeze", "--to", "0.40").exit_code == 0
    assert (ops / "state/budget.sqlite").exists()


# --- item 19: non-finite spend fails closed; ranges; malformed URLs ------------------------------


@pytest.mark.parametrize("spent", [math.nan, math.inf, -math.inf])
def test_check_budget_fails_closed_on_spend_that_is_not_a_finite_amount(spent: float) -> None:
    from agentfire.guard import check_budget
    from agentfire.providers.budget import Caps

    assert check_budget(spent, Caps("agent")) is not None
    assert check_budget(spent, Caps("agent", hard_usd=1.0, freeze_usd=0.5)) is not None
    assert check_budget(0.1, Caps("agent", hard_usd=1.0, freeze_usd=0.5)) is None


@pytest.mark.parametrize("field,value", [
    ("timeout_seconds", ".inf"), ("timeout_seconds", "0"), ("timeout_seconds", "-1"),
    ("timeout_seconds", ".nan"),
])
def test_infinite_zero_or_negative_timeouts_are_config_errors(ops: Path, cli, field: str, value: str) -> None:
    (ops / "runbook.yaml").write_text(
        "version: 1\nagent: {name: a, flag: agent.enabled}\n"
        "regions:\n  u: {kind: unleash, url: 'http://127.0.0.1:1', environment: production, "
        f"token_env: UNLEASH_T, {field}: {value}}}\n")
    r = cli("status")
    assert r.exit_code == 2, r
    assert "timeout_seconds" in r.stderr


@pytest.mark.parametrize("value", [".inf", ".nan", "0", "-5"])
def test_kill_deadline_in_runbook_is_range_checked(ops: Path, cli, value: str) -> None:
    (ops / "runbook.yaml").write_text(
        "version: 1\nagent: {name: a, flag: agent.enabled}\n"
        "regions:\n  l: {kind: flagd, path: l.json, create: true}\n"
        f"kill: {{deadline_seconds: {value}}}\n")
    r = cli("status")
    assert r.exit_code == 2, r
    assert "deadline_seconds" in r.stderr


@pytest.mark.parametrize("value", ["inf", "nan", "1e9"])
def test_kill_deadline_option_is_range_checked(sandbox: Path, cli, value: str) -> None:
    r = cli("--incident", "inc-d", "--new", "kill", "--yes", "--deadline", value)
    assert r.exit_code == 2, r
    assert "deadline" in r.stderr
    assert not (sandbox / ".agentfire/incidents/inc-d.jsonl").exists()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:notaport/0", "redis://127.0.0.1:99999/0",
                                 "redis://127.0.0.1:6379/notadb", "redis://[::1/0"])
def test_malformed_redis_url_is_one_line(ops: Path, cli, url: str) -> None:
    runbook(ops, budget={"kind": "redis", "url": url})
    for args in (("status",), ("--incident", "inc-u", "--new", "freeze", "--to", "0.4"), ("doctor",)):
        r = cli(*args)
        assert r.exit_code in (1, 2), (args, r)
        assert "Traceback" not in r.stderr
        assert "redis" in (r.stderr + r.stdout)
    f = cli("--incident", "inc-u", "freeze", "--to", "0.4")
    assert f.exit_code == 2 and len(f.stderr.strip().splitlines()) == 1, f


@pytest.mark.parametrize("url", ["http://[::1", "ftp://langfuse.example", "http://127.0.0.1:notaport",
                                 "not a url"])
def test_malformed_langfuse_url_is_one_line(ops: Path, url: str) -> None:
    runbook(ops, traces={"kind": "langfuse", "base_url": url})
    r = run_agentfire("triage", "tr-1", cwd=ops, env={"AGENTFIRE_CONFIG": str(ops / "runbook.yaml"),
                                                      "LANGFUSE_PUBLIC_KEY": "pk-x", "LANGFUSE_SECRET_KEY": "sk-x"})
    assert r.exit_code == 2, r
    assert "Traceback" not in r.stderr and "base_url" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# --- item 21: a Redis store without persistence; a freeze gone from the store -----------------


def test_doctor_warns_when_redis_has_no_persistence(ops: Path, cli, redis_server) -> None:  # noqa: F811
    runbook(ops, budget={"kind": "redis", "url": redis_server.url, "key_prefix": "af-doc:"})
    r = cli("doctor", "--json")
    rows = [c for c in r.json()["checks"] if c["area"] == "budget"]
    assert rows and rows[0]["ok"] is True
    assert rows[0].get("warning") is True and "persistence" in rows[0]["detail"], rows
    t = cli("doctor")
    assert "WARN" in t.stdout and "persistence" in t.stdout


def test_status_shows_a_freeze_that_is_gone_from_the_store(ops: Path, cli, redis_server) -> None:  # noqa: F811
    import redis

    prefix = f"af-gone-{time.monotonic_ns()}:"
    runbook(ops, budget={"kind": "redis", "url": redis_server.url, "key_prefix": prefix})
    assert cli("--incident", "inc-frz", "--new", "freeze", "--to", "0.40").exit_code == 0
    ok = cli("status", "--json")
    assert ok.exit_code == 0, ok
    # the store restarts without persistence: the freeze is silently gone
    client = redis.Redis.from_url(redis_server.url)
    client.delete(*client.keys(prefix + "*"))
    s = cli("status", "--json")
    assert s.exit_code == 1, s
    gone = s.json()["budget"]["missing_freezes"]
    assert [(g["incident"], g["scope"]) for g in gone] == [("inc-frz", "support-agent")]
    t = cli("status")
    assert "inc-frz" in (t.stdout + t.stderr) and "gone" in (t.stdout + t.stderr).lower()
    # a freeze set again is not missing; nor is one that was lifted
    assert cli("--incident", "inc-frz", "freeze", "--to", "0.40").exit_code == 0
    assert cli("status", "--json").exit_code == 0
    assert cli("--incident", "inc-frz", "freeze", "--lift").exit_code == 0
    client.delete(*client.keys(prefix + "*"))
    assert cli("status", "--json").exit_code == 0
