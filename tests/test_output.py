"""Output that fits the terminal and the pipe (issue 14): tab-separated rows without box drawing
when piped, identifiers whole at 80 columns on a real pseudo-terminal, --wide, next: lines."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BOX = set("─│┌┐└┘├┤┬┴┼━┃┏┓┗┛┡┩╇╈╭╮╯╰═║")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b\]8;[^\x1b]*\x1b\\")
INCIDENT = "inc-20261130-050000-abcd"


def spawn(sandbox: Path, *args: str, columns: int = 80, env_extra: dict[str, str] | None = None):
    pexpect = pytest.importorskip("pexpect")
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS=str(columns), TERM="xterm")
    env.pop("CI", None)
    env.pop("NO_COLOR", None)
    env.pop("AGENTFIRE_FORCE_TTY", None)
    env.update(env_extra or {})
    return pexpect.spawn(sys.executable, ["-m", "agentfire", *args], cwd=str(sandbox), env=env,
                         encoding="utf-8", timeout=90, dimensions=(200, columns))


def run_pty(sandbox: Path, *args: str, columns: int = 80) -> tuple[int, str]:
    pexpect = pytest.importorskip("pexpect")
    child = spawn(sandbox, *args, columns=columns)
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, ANSI.sub("", child.before.replace("\r", ""))


@pytest.fixture
def seeded(sandbox: Path, cli) -> Path:
    r = cli("sandbox", "seed", "--scenario", "wrong_recipient")
    assert r.exit_code == 0, r
    assert cli("--incident", INCIDENT, "--new", "kill", "--yes").exit_code == 0
    return sandbox


def test_piped_output_is_tab_separated_rows_without_box_drawing(seeded: Path, cli, monkeypatch) -> None:
    monkeypatch.delenv("AGENTFIRE_FORCE_TTY")
    r = cli("incident", "list")
    assert r.exit_code == 0, r
    assert not BOX & set(r.stdout), r.stdout
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert rows and rows[0][0] == INCIDENT and rows[0][1] == "OPEN"  # `| cut -f1` gives the id

    r = cli("kill", "--dry-run")
    assert not BOX & set(r.stdout)
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == ["us-east", "eu-west", "ap-south"]

    hits = cli("blast", "--tool", "send_email", "--since", "30d", "--json").json()["hits"]
    r = cli("blast", "--tool", "send_email", "--since", "30d")
    assert not BOX & set(r.stdout)
    lines = r.stdout.splitlines()
    assert "trajectories\t" + str(len(hits)) in lines
    traced = [line.split("\t")[0] for line in lines if line.count("\t") >= 5]
    assert traced == [h["trace_id"] for h in hits[:20]]
    # nothing padded: no field starts or ends with a space
    assert all(f == f.strip() for line in lines for f in line.split("\t"))


def test_force_tty_keeps_the_table_in_a_pipe(seeded: Path, cli) -> None:
    r = cli("incident", "list")  # AGENTFIRE_FORCE_TTY=1 from the sandbox fixture
    assert BOX & set(r.stdout) and "incidents in" in r.stdout


def test_ids_are_never_cut_or_folded_at_80_columns(seeded: Path, cli) -> None:
    hits = cli("blast", "--tool", "send_email", "--since", "30d", "--json").json()["hits"]
    code, out = run_pty(seeded, "blast", "--tool", "send_email", "--since", "30d")
    assert code == 0, out
    for h in hits[:20]:
        assert h["trace_id"] in out and h["user_id"] in out, out
    # the narrow layout keeps every line inside the terminal's width
    assert max(len(line) for line in out.splitlines() if h["trace_id"] in line) <= 80

    code, out = run_pty(seeded, "incident", "list")
    assert code == 0 and INCIDENT in out, out
    assert "inc-2026…" not in out and "…" not in "".join(line for line in out.splitlines() if "inc-" in line)


def test_wide_shows_every_column_at_80_columns(seeded: Path) -> None:
    _, narrow = run_pty(seeded, "blast", "--tool", "send_email", "--since", "30d")
    _, wide = run_pty(seeded, "--wide", "blast", "--tool", "send_email", "--since", "30d")
    assert "arguments" not in narrow  # left out so the ids fit
    assert "arguments" in wide and "hit at (UTC)" in wide


def test_records_layout_when_even_the_narrow_table_cannot_fit(seeded: Path) -> None:
    # 40 columns: a trace id (32) and a user id cannot share a line: one block per hit
    hits_code, out = run_pty(seeded, "blast", "--tool", "send_email", "--since", "30d", columns=40)
    assert hits_code == 0
    blocks = [line for line in out.splitlines() if line.startswith("trace ")]
    assert len(blocks) == 20
    assert all(re.fullmatch(r"trace\s+[0-9a-f]{32}\s*", b) for b in blocks), blocks[:3]


def test_triage_last_n_always_shows_the_verdict_step_and_candidates(seeded: Path, cli, monkeypatch) -> None:
    import json

    truth = json.loads((seeded / ".agentfire/traces/wrong_recipient.truth.json").read_text())
    tid = truth["examples"][0]
    doc = cli("triage", tid, "--json").json()
    v = doc["verdict"]
    wanted = {v["step_index"], v.get("call_step_index")} | {c["step_index"] for c in v.get("candidates") or []}
    wanted.discard(None)
    newest = max(s["index"] for s in doc["steps"])
    assert min(wanted) < newest  # the verdict is not simply the last step
    monkeypatch.delenv("AGENTFIRE_FORCE_TTY")
    r = cli("triage", tid, "--last", "1")
    assert r.exit_code == 0, r
    indexes = {int(line.split("\t")[0]) for line in r.stdout.splitlines()
               if line.split("\t")[0].isdigit() and line.count("\t") >= 6}
    assert indexes == wanted | {newest}


def test_report_is_rendered_on_a_terminal_and_markdown_in_a_pipe(seeded: Path, cli) -> None:
    piped = cli("report", INCIDENT)
    assert piped.exit_code == 0 and "## Timeline" in piped.stdout and "|---|" in piped.stdout
    code, shown = run_pty(seeded, "report", INCIDENT)
    assert code == 0 and "Timeline" in shown
    assert "## Timeline" not in shown and "|---|" not in shown  # rendered, not raw markup


def test_freeze_shows_its_plan_before_asking(seeded: Path, cli) -> None:
    pexpect = pytest.importorskip("pexpect")
    child = spawn(seeded, "--incident", INCIDENT, "--new", "freeze", "--to", "p50")
    child.expect(r"\? \[y/N\]")
    before = ANSI.sub("", child.before.replace("\r", ""))
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    # the plan came first: the distribution, the in-flight trajectories over the new cap, the caps
    plan = cli("freeze", "--to", "p50", "--dry-run", "--json").json()
    assert "cost per trajectory" in before and "p50" in before and "running over new cap" in before
    for row in plan["in_flight_over_cap_ids"][:3]:
        assert f"over cap, still running: {row['trace_id']}" in before
    assert "plan: freeze scope support-agent" in before and "nothing changed yet" in " ".join(before.split())
    assert f"freeze spend at ${plan['wanted']['freeze_usd']:.4f} (p50" in " ".join(before.split())
    # and "n" changed nothing
    assert cli("status", "--json").json()["budget"]["scopes"][0]["effective"]["admission"] == "open"
