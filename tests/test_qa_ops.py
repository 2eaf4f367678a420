"""On-call QA of the operational commands: each test is a bug found by trying to break them."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_agentfire
from tests.test_bad_input import assert_one_error, write_variant


@pytest.mark.parametrize("flag", ["--window", "--for"])
def test_freeze_absurd_duration_is_a_usage_error(sandbox, cli, flag):
    # 999999999999d overflowed datetime: a traceback (--window) or a blank OSError, exit 1 (--for)
    r = cli("freeze", "--to", "1", flag, "999999999999d", "--dry-run", "--json")
    assert_one_error(r, 2, flag, "too long")
    assert r.stdout == ""


def test_unwritable_journal_still_reports_the_freeze(sandbox):
    # the caps were written but the journal was not: it used to be one bare error line (reads as
    # "nothing changed") with nothing on stdout; now the change is shown, loudly flagged, exit 1
    cfg = write_variant(sandbox, "nojournal.yaml", "  dir: .agentfire/incidents", "  dir: blocker/incidents")
    (sandbox / "blocker").write_bytes(b"a file\n")
    r = run_agentfire("--config", str(cfg), "--incident", "inc-nj", "--new", "freeze", "--to", "0.5", "--yes", "--json",
                      cwd=sandbox)
    assert_one_error(r, 1, "journal could not be written", "blocker/incidents")
    doc = json.loads(r.stdout)
    assert doc["outcome"] == "CONFIRMED" and doc["after"]["freeze_usd"] == 0.5
    assert "JOURNAL NOT WRITTEN" in r.stderr and "admission=open" in r.stderr


@pytest.mark.parametrize("content, needle", [
    (b"steps: 5\n", "steps must be a mapping"),                       # was an AttributeError traceback
    (b"\xff\xfe trace_id: x\n", "cannot read answers file"),         # was a UnicodeDecodeError traceback
    (b"trace_id: [1, 2]\n", "trace_id must be one trace id"),         # was run as triage '[1, 2]'
    (b"variables: {region: {a: 1}}\n", "variables must be a mapping"),
    (b"steps: {freez: skip}\n", "unknown step id(s) freez"),           # the typo used to run freeze
])
def test_runbook_malformed_answers_file_is_a_usage_error_that_runs_nothing(sandbox, cli, content, needle):
    (sandbox / "answers.yaml").write_bytes(content)
    r = cli("--incident", "inc-ans", "--new", "runbook", "--auto", "--answers", "answers.yaml", "--json")
    assert_one_error(r, 2, needle)
    assert r.stdout == ""
    assert not (sandbox / ".agentfire" / "incidents" / "inc-ans.jsonl").exists()  # nothing ran


def _runbook_with_freeze_command(sandbox, name: str, command: str, step_id: str = "freeze"):
    cfg = write_variant(sandbox, name, '  - id: freeze\n', f'  - id: {step_id}\n')
    text = cfg.read_text()
    old = 'command: "agentfire freeze --to p50 --window 1h"'
    assert old in text
    cfg.write_text(text.replace(old, f"command: {json.dumps(command)}"))
    return cfg


@pytest.mark.parametrize("template, needle", [
    ("agentfire freeze --to {", "not a valid command template"),   # was a ValueError traceback after kill ran
    ("agentfire triage {trace_id!r}", "is not a plain {name}"),
    ("agentfire triage {0}", "is not a plain {name}"),
])
def test_runbook_step_template_is_checked_with_the_config(sandbox, cli, template, needle):
    cfg = _runbook_with_freeze_command(sandbox, "tpl.yaml", template)
    r = cli("--config", str(cfg), "--incident", "inc-tpl", "--new", "runbook", "--auto", "--trace", "tr-1", "--json")
    assert_one_error(r, 2, "tpl.yaml:", "steps.1.command", needle)
    assert not (sandbox / ".agentfire" / "incidents" / "inc-tpl.jsonl").exists()  # kill did not run


def test_runbook_duplicate_step_id_is_a_config_error(sandbox, cli):
    # two steps with id kill: the second (the freeze command) never ran and the report said "ok"
    cfg = _runbook_with_freeze_command(sandbox, "dup.yaml", "agentfire freeze --to p50", step_id="kill")
    r = cli("--config", str(cfg), "--incident", "inc-dup", "--new", "runbook", "--auto", "--trace", "tr-1", "--json")
    assert_one_error(r, 2, "dup.yaml:", "'kill' is used twice")


def test_runbook_unknown_variable_says_nothing_provides_it(sandbox, cli):
    cfg = _runbook_with_freeze_command(sandbox, "unk.yaml", "agentfire freeze --to {budget_level}")
    r = cli("--config", str(cfg), "--incident", "inc-unk", "--new", "runbook", "--auto", "--trace", "tr-1", "--json")
    assert_one_error(r, 2, "{budget_level}", "no step provides", "--answers")


def test_report_markdown_neutralises_control_characters(sandbox, cli):
    # a reason or an actor with an ESC reached the terminal raw through `report` (markdown on stdout)
    r = cli("--actor", "dana\x1b[31m", "--incident", "inc-esc", "--new", "kill", "--region", "us-east", "--yes",
            "--reason", "why\x1b]0;pwned\x07")
    assert r.exit_code == 0, r
    md = cli("report", "inc-esc")
    assert md.exit_code == 0, md
    assert "\x1b" not in md.stdout and "\x07" not in md.stdout
    assert "\\\\x1b" in md.stdout  # shown, escaped for markdown


def test_second_undo_says_already_restored(sandbox, cli):
    # a re-run undo said "this incident did not turn it off (it was off before...)": false, and
    # an on-call re-running the runbook would go looking for who turned it off
    assert cli("--incident", "inc-u2", "--new", "kill", "--region", "all", "--yes").exit_code == 0
    assert cli("--incident", "inc-u2", "kill", "--undo", "--yes").exit_code == 0
    again = cli("--incident", "inc-u2", "kill", "--undo", "--yes", "--json")
    assert again.exit_code == 0, again
    for region in again.json()["regions"]:
        assert region["outcome"] == "SKIPPED" and "already restored by this incident's undo" in region["detail"]


def test_oserror_without_a_filename_is_one_readable_line(sandbox, cli, monkeypatch):
    # an OSError with no filename printed "agentfire: error: : Value too large for defined data type"
    import errno

    from agentfire import killswitch

    def overflow(*_a, **_k):
        raise OSError(errno.EOVERFLOW, "Value too large for defined data type")

    monkeypatch.setattr(killswitch, "status", overflow)
    r = cli("status")
    assert_one_error(r, 1, "error: Value too large")


def test_config_pointing_at_a_directory_says_so(sandbox, cli):
    # it said "config file not found: ." about a directory that plainly exists
    r = cli("--config", str(sandbox), "status")
    assert_one_error(r, 2, "is a directory", "runbook.yaml")


def test_garbage_incident_from_the_environment_is_named(sandbox, cli):
    # "invalid incident id 'bad id!'" with no --incident on the command line: where did it come from?
    r = cli("kill", "--region", "all", "--yes", env={"AGENTFIRE_INCIDENT": "bad id!"})
    assert_one_error(r, 2, "'bad id!'", "$AGENTFIRE_INCIDENT")
    assert cli("--incident", "bad id!", "--new", "kill", "--region", "all", "--yes").exit_code == 2


def test_region_all_mixed_with_names_is_explained(sandbox, cli):
    # "unknown region 'all' ... (or use 'all')" told the engineer to do what they had just done
    r = cli("kill", "--region", "all,us-east", "--yes")
    assert_one_error(r, 2, "'all' stands alone")


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf"])
def test_runbook_step_timeout_out_of_range_is_a_usage_error_before_any_step(sandbox, cli, value):
    # 0/-5 "failed" the kill step at once (journaled); nan and inf were tracebacks mid-step
    r = cli("--incident", "inc-st", "--new", "runbook", "--auto", "--trace", "tr-1", "--step-timeout", value, "--json")
    assert r.exit_code == 2, r
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (sandbox / ".agentfire" / "incidents" / "inc-st.jsonl").exists()


@pytest.mark.parametrize("line", [
    '{"action": "kill"}',                                                    # no ts
    '{"ts": "garbage", "action": "freeze"}',                                 # ts not a time
    '{"ts": "2026-11-24T01:00:00Z", "action": "kill", "regions": "x"}',     # regions not a list
    '{"ts": "2026-11-24T01:00:00Z", "action": "kill", "regions": [null]}',
])
@pytest.mark.parametrize("command", [("report", "inc-hand"), ("--incident", "inc-hand", "kill", "--undo", "--yes")])
def test_hand_edited_journal_line_is_one_error_naming_the_line(sandbox, cli, line, command):
    # the corrupt-line error invites fixing a journal by hand; a valid-JSON line of the wrong
    # shape was a KeyError / ValueError / AttributeError traceback in report and kill --undo
    journal = sandbox / ".agentfire" / "incidents" / "inc-hand.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(line + "\n")
    r = cli(*command)
    assert_one_error(r, 1, "inc-hand.jsonl:1", "not a journal entry")
    assert journal.read_text() == line + "\n"


def test_flagd_unknown_default_variant_is_not_already_off(sandbox, cli):
    # a defaultVariant naming no variant (a typo) was read as off: status said off and kill
    # answered ALREADY_OFF without writing, while flagd serves the callers' own default
    path = sandbox / ".agentfire" / "flags" / "us-east.flagd.json"
    assert cli("status", "--region", "us-east").exit_code == 0  # creates the file, agent on
    doc = json.loads(path.read_text())
    doc["flags"]["agent.enabled"]["defaultVariant"] = "of"
    path.write_text(json.dumps(doc))
    assert cli("status", "--region", "us-east", "--json").json()["regions"][0]["on"] is True
    r = cli("--incident", "inc-dv", "--new", "kill", "--region", "us-east", "--yes", "--json")
    assert r.exit_code == 0, r
    assert r.json()["regions"][0]["outcome"] == "CONFIRMED"
    assert json.loads(path.read_text())["flags"]["agent.enabled"]["defaultVariant"] == "off"


def test_status_exits_1_when_the_spend_caps_cannot_be_read(sandbox, cli):
    # the caps section said the store was unreadable, in red, and status still exited 0
    cfg = write_variant(sandbox, "budgetdir.yaml", "path: .agentfire/budget.sqlite", "path: .agentfire")
    r = cli("--config", str(cfg), "status", "--json")
    assert r.exit_code == 1, r
    doc = r.json()
    assert "error" in doc["budget"] and all(reg["on"] is not None for reg in doc["regions"])
