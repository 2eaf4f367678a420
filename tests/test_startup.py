"""Start-up: what a short command must not import, and the cache of runbooks validated before.

No timings here (bench/startup_bench.py measures them): these fail when a heavy module comes back
at start-up, or when the cache answers differently from the validator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

# never needed to start, nor by status, kill or undo over flagd regions with a SQLite budget
HEAVY = ("pydantic", "pydantic_core", "grpc", "google.protobuf", "duckdb", "langfuse", "opentelemetry",
         "httpx", "httpcore", "redis", "yaml")

RICH_RUNBOOK = """\
version: 1
agent: {name: support-agent, flag: agent.enabled, fallback: fallbacks/support-agent.md}
regions:
  us-east: {kind: flagd, path: .agentfire/flags/us-east.flagd.json, create: true, watch_interval_ms: 150}
  eu-west:
    kind: unleash
    url: https://unleash.internal
    environment: production
    token_env: UNLEASH_ADMIN_TOKEN
    client_token_env: UNLEASH_BACKEND_TOKEN
  ap-south:
    kind: launchdarkly
    project: support
    environment: production
    sdk_key_env: LD_SDK_KEY
    agent_context: {targetingKey: support-agent, tier: pro, beta: true, weight: 1.5}
  sa-east:
    kind: flagd
    path: $HOME/flags/sa-east.json
    openfeature_provider: {provider: "tests.fakes.memory_openfeature:provider", options: {flags: {a: 1}},
                           options_env: {key: AF_KEY}}
budget: {kind: redis, url_env: REDIS_URL}
traces: {kind: langfuse}
evals: {path: evals/regressions.jsonl}
triage: {loop_min_repeats: 4}
prices: {"gpt-4o-mini": {input_per_million: 0.15, output_per_million: 0.6}}
kill: {deadline_seconds: 12.5}
gameday: {regions: [us-east, ap-south], scope: drill-scope}
policies:
  - {name: auth first, before: [update_*], require: [get_user_details]}
  - {never: [delete_user*], severity: high}
watch:
  routes:
    - {kind: slack, url_env: SLACK_WEBHOOK_URL}
    - {kind: webhook, url: "https://hooks.example.org/agentfire", token_env: HOOK_TOKEN}
steps:
  - {id: kill, title: Kill it, command: "agentfire kill --region all --yes", target_seconds: 60}
"""


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("AGENTFIRE_CACHE_DIR", str(d))
    return d


def fields(value: Any) -> Any:
    """Every validated field, recursively, whatever holds it (a pydantic model or a Section)."""
    from pydantic import BaseModel

    from agentfire.runbook import Section

    if isinstance(value, BaseModel):
        return (type(value).__name__, {n: fields(getattr(value, n)) for n in type(value).model_fields})
    if isinstance(value, Section):
        return (value._model, {n: fields(getattr(value, n)) for n in value._fields})
    if isinstance(value, dict):
        return {k: fields(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fields(v) for v in value]
    return (type(value).__name__, value)


@pytest.mark.parametrize("text", ["sandbox", RICH_RUNBOOK], ids=["sandbox", "every-provider-kind"])
def test_a_runbook_validated_before_reads_as_the_validator_read_it(
        tmp_path: Path, cache_dir: Path, text: str) -> None:
    from pydantic import BaseModel

    from agentfire.config import load_runbook
    from agentfire.runbook import Section, load_runbook_validated_before

    path = tmp_path / "runbook.yaml"
    path.write_text((REPO / "runbook.yaml").read_text() if text == "sandbox" else text)
    want = load_runbook(path)
    first = load_runbook_validated_before(path)  # validated, then kept
    assert isinstance(first.model, BaseModel) and len(list(cache_dir.glob("*.json"))) == 1
    again = load_runbook_validated_before(path)  # from the cache
    assert isinstance(again.model, Section) and isinstance(next(iter(again.regions.values())), Section)
    for rb in (first, again):
        assert rb.path == want.path and rb.env_names == want.env_names
        assert fields(rb.model) == fields(want.model)
        assert fields(rb.regions) == fields(want.regions)
        assert (fields(rb.budget), fields(rb.traces)) == (fields(want.budget), fields(want.traces))
        assert [r.model_dump() for r in rb.regions.values()] == [r.model_dump() for r in want.regions.values()]
        assert rb.journal_dir == want.journal_dir and rb.select_regions("all") == want.select_regions("all")
        assert (rb.agent.flag, rb.model.kill.deadline_seconds) == (want.agent.flag, want.model.kill.deadline_seconds)
        drill, want_drill = rb.for_drill(), want.for_drill()
        assert list(drill.regions) == list(want_drill.regions) and drill.drill_scope == want_drill.drill_scope
    with pytest.raises(AttributeError):
        again.agent.flag = "other"  # read-only, as the frozen models are


def test_a_changed_runbook_is_validated_again_and_an_invalid_one_never_kept(
        tmp_path: Path, cache_dir: Path) -> None:
    from agentfire.config import load_runbook
    from agentfire.errors import ConfigError
    from agentfire.runbook import Section, load_runbook_validated_before

    path = tmp_path / "runbook.yaml"
    text = (REPO / "runbook.yaml").read_text()
    path.write_text(text)
    load_runbook_validated_before(path)
    assert isinstance(load_runbook_validated_before(path).model, Section)
    path.write_text(text.replace("deadline_seconds: 20", "deadline_seconds: 7"))
    changed = load_runbook_validated_before(path)
    assert not isinstance(changed.model, Section) and changed.model.kill.deadline_seconds == 7
    assert load_runbook_validated_before(path).model.kill.deadline_seconds == 7
    path.write_text(text.replace("deadline_seconds: 20", "deadline_secnds: 20"))  # a typo
    with pytest.raises(ConfigError) as cached_path:
        load_runbook_validated_before(path)
    with pytest.raises(ConfigError) as validator:
        load_runbook(path)
    assert str(cached_path.value) == str(validator.value) and "deadline_secnds" in str(validator.value)
    assert len(list(cache_dir.glob("*.json"))) == 2  # the two valid versions only


def test_the_cache_is_keyed_by_the_code_that_validated_and_survives_a_bad_entry(
        tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agentfire
    from agentfire import runbook
    from agentfire.runbook import Section, load_runbook_validated_before

    path = tmp_path / "runbook.yaml"
    path.write_text((REPO / "runbook.yaml").read_text())
    load_runbook_validated_before(path)
    key = runbook._key(path.read_bytes())
    monkeypatch.setattr(agentfire, "__version__", agentfire.__version__ + ".post1")
    assert runbook._key(path.read_bytes()) != key
    assert not isinstance(load_runbook_validated_before(path).model, Section)  # another agentfire
    monkeypatch.undo()
    monkeypatch.setenv("AGENTFIRE_CACHE_DIR", str(cache_dir))
    assert isinstance(load_runbook_validated_before(path).model, Section)
    for entry in cache_dir.glob("*.json"):
        entry.write_text('{"key": "' + key + '", "runbook": {"model": ')  # torn
    rb = load_runbook_validated_before(path)
    assert not isinstance(rb.model, Section) and rb.agent.flag == "agent.enabled"


def test_a_value_json_would_change_is_validated_each_time(tmp_path: Path, cache_dir: Path) -> None:
    import datetime

    from agentfire.runbook import load_runbook_validated_before

    path = tmp_path / "runbook.yaml"
    path.write_text((REPO / "runbook.yaml").read_text().replace(
        "    create: true                 # sandbox only: created on first use with the agent on\n",
        "    create: true\n    agent_context: {targetingKey: a, since: 2026-11-02}\n", 1))
    rb = load_runbook_validated_before(path)
    assert rb.regions["us-east"].agent_context["since"] == datetime.date(2026, 11, 2)
    assert list(cache_dir.glob("*.json")) == []  # a YAML date would come back a string
    assert load_runbook_validated_before(path).regions["us-east"].agent_context["since"] == datetime.date(2026, 11, 2)


# --- what a start imports -----------------------------------------------------------------------


def _modules_after(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, set[str]]:
    code = (
        "import runpy, sys\n"
        "sys.argv = ['agentfire', *sys.argv[1:]]\n"
        "code = 0\n"
        "try:\n"
        "    runpy.run_module('agentfire', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    code = e.code or 0\n"
        "print('\\nMODULES', code, ' '.join(m for m, v in sys.modules.items() if v is not None))\n"
    )
    p = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=120)
    line = [l for l in p.stdout.splitlines() if l.startswith("MODULES ")][-1].split()
    return int(line[1]), set(line[2:])


def _heavy(modules: set[str], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY if h not in allowed))


def test_import_agentfire_cli_imports_nothing_heavy() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", "import sys, agentfire.cli; print(' '.join(m for m, v in sys.modules.items() if v))"],
        env=env, capture_output=True, text=True, check=True).stdout.split()
    assert _heavy(set(out)) == []
    assert not [m for m in out if m.startswith("openfeature")]


def test_status_kill_and_undo_import_nothing_heavy_once_the_runbook_validated(
        sandbox: Path, cache_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code, first = _modules_after(["--json", "status"], sandbox, env)
    assert code == 0 and "pydantic" in first  # validated once, then kept
    code, mods = _modules_after(["--json", "status"], sandbox, env)
    assert code == 0 and _heavy(mods) == [] and "agentfire.config" not in mods
    assert not [m for m in mods if m.startswith("openfeature")]

    code, mods = _modules_after(["--json", "kill", "--yes"], sandbox, env)
    assert code == 0 and _heavy(mods) == [] and "agentfire.config" not in mods  # the fallback header: no yaml
    # the read-back evaluated with flagd's evaluator, not through the gRPC-importing provider module
    assert "openfeature.contrib.tools.flagd.core" in mods
    assert not [m for m in mods if m.startswith(("grpc", "google", "openfeature.contrib.provider"))]
    status = json.loads(subprocess.run([sys.executable, "-m", "agentfire", "--json", "status"], cwd=sandbox,
                                       env=env, capture_output=True, text=True).stdout)
    assert [r["on"] for r in status["regions"]] == [False, False, False]

    code, mods = _modules_after(["--json", "kill", "--undo", "--yes"], sandbox, env)
    assert code == 0 and _heavy(mods) == [] and "agentfire.config" not in mods


def test_help_imports_nothing_heavy(sandbox: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code, mods = _modules_after(["--help"], sandbox, env)
    assert code == 0 and _heavy(mods) == [] and "agentfire.config" not in mods


# --- Rich: only for a terminal (or AGENTFIRE_FORCE_TTY) -----------------------------------------


def _piped_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("AGENTFIRE_FORCE_TTY", "FORCE_COLOR", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return env


def _rich(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m == "rich" or m.startswith("rich."))


def test_status_kill_and_undo_piped_or_json_never_import_rich(sandbox: Path, cache_dir: Path) -> None:
    env = _piped_env()
    _modules_after(["--json", "status"], sandbox, env)  # validates the runbook once
    for argv in (["--json", "status"], ["status"]):
        code, mods = _modules_after(argv, sandbox, env)
        assert code == 0 and _rich(mods) == [], argv
        # flagd files are read on threads (the deadline test: test_kill_regions_safety's FIFO)
        assert "asyncio" not in mods, argv
    for argv in (["kill", "--yes", "--reason", "piped"], ["kill", "--undo", "--yes"], ["--json", "kill", "--yes"],
                 ["--json", "kill", "--undo", "--yes"], ["kill", "--region", "nowhere", "--yes"]):
        code, mods = _modules_after(argv, sandbox, env)
        assert code == (2 if "nowhere" in argv else 0) and _rich(mods) == [], argv
        # flagd files flipped on threads (deadline and Ctrl-C: test_kill_regions_safety)
        assert "asyncio" not in mods, argv
    # the command modules of the other minutes are not imported to run kill
    assert not [m for m in mods if m.startswith("agentfire.cli.") and m.split(".")[2] in ("triage", "blast", "freeze")]
    # a terminal layout (forced in a pipe) is still Rich's table
    env["AGENTFIRE_FORCE_TTY"] = "1"
    code, mods = _modules_after(["kill", "--yes"], sandbox, env)
    assert code == 0 and "rich.table" in mods


def test_the_piped_kill_and_status_write_what_rich_would(sandbox: Path, cache_dir: Path) -> None:
    """The rows and stderr lines written without Rich are, character for character, what
    print_table's piped rows and the Rich err console write (AGENTFIRE_FORCE_TTY off)."""
    import io

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from agentfire.cli import _app, _output

    awkward = ["tab\there", "cr\rhere", "bell\x07 ff\x0c vt\x0b bs\x08", "line\nbreak", "[bold]not markup[/]",
               "  padded  ", "é 中文 ✓", "", "esc \x1b[31m"]
    table = Table()
    for _ in range(3):
        table.add_column("c")
    rows = [[a, a[::-1], "x" + a] for a in awkward]
    for row in rows:
        table.add_row(*(Text(c) for c in row))
    out = io.StringIO()
    real = sys.stdout
    sys.stdout = out
    try:
        _output.write_rows(rows)
    finally:
        sys.stdout = real
    assert out.getvalue() == "\n".join(_output.tsv_lines(table)) + "\n"

    err = io.StringIO()
    rich_err = io.StringIO()
    console = Console(file=rich_err, highlight=False, soft_wrap=True)
    real = sys.stderr
    sys.stderr = err
    try:
        for a in awkward:
            if "\t" in a:
                continue  # tabs go through Rich (it expands them by cell width)
            _app.err_line(lambda: Text.assemble(("next: ", "bold"), (a, "cyan")), "next: " + a)
            console.print(Text.assemble(("next: ", "bold"), (a, "cyan")))
    finally:
        sys.stderr = real
    assert err.getvalue() == rich_err.getvalue()


@pytest.mark.parametrize("env, plain", [({}, True), ({"FORCE_COLOR": "1"}, False), ({"FORCE_COLOR": ""}, True),
                                        ({"TTY_COMPATIBLE": "1"}, False), ({"TTY_COMPATIBLE": "0"}, True)])
def test_plain_stream_is_richs_own_terminal_rule(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                 plain: bool) -> None:
    import io

    from rich.console import Console

    from agentfire.cli._app import plain_stream

    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    f = io.StringIO()
    assert plain_stream(f) is plain
    assert Console(file=f).is_terminal is (not plain)


def test_the_fallback_headers_simple_reader_is_yamls_answer_or_none() -> None:
    """parse_fallback reads the simplest `key: value` headers without importing yaml: for each
    header it accepts, the answer is yaml.safe_load's (types too); anything else goes to YAML."""
    import datetime

    import yaml

    from agentfire.fallbacks import parse_fallback, simple_header

    values = ["Dana Reyes (Head of Support)", "2026-11-02", "2026-13-02", "2026-02-30", "2026-1-2", "yes", "No",
              "on", "OFF", "null", "~", "", "x", "x ", "a: b", "a #b", "O'Brien", "A/B team", "12", "1.5",
              "Legal, EMEA", "J.-P. Dupont", "v1.2", "(x)", "José", "a  b", "a\tb", "-x", "x-", "y", ".inf",
              "[x]", "{x}", "x,y", "@x", "a\"b", "&a", "*a", "!x", "|", ">", "x\r"]
    keys = ["approved_by", "approved_on", "on", "yes", "a", "_x", "x1", "1x", "a-b", "null", "y"]
    accepted = 0
    for key in keys:
        for value in values:
            for sep in (": ", ":   ", ":", ":\t"):
                text = "\n" + key + sep + value
                mine = simple_header(text)
                if mine is None:
                    continue
                accepted += 1
                want = yaml.safe_load(text)
                assert mine == want and [type(v) for v in mine.values()] == [type(v) for v in want.values()], text
    assert accepted > 50
    for text in ("\n", "\n\na: b\n\nc: d\n", "\na: b\na: c"):
        assert simple_header(text) == (yaml.safe_load(text) or {})
    for text in (" x\na: b", "\na: b\n  c: d", "\na: b\n- c", "\n# comment\na: b", "\na: 2026-02-30"):
        assert simple_header(text) is None, text
    fb = parse_fallback(REPO / "fallbacks" / "support-agent.md")
    assert simple_header(fb.path.read_text().split("\n---", 1)[0][3:]) == {
        "approved_by": fb.approved_by, "approved_on": datetime.date.fromisoformat(fb.approved_on or "")}
    assert fb.approved
