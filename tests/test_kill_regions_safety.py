"""Issue 12, items 8, 9, 11 and 12: every region stands alone, within the deadline; undo restores
what this incident turned off; a dry run that cannot read a region says so.

Faults are real: a LaunchDarkly region whose token is unset (the contract fake), a flagd file that
blocks on open (a FIFO stands in for a hung network mount), a flag file whose lock another process
holds, SIGINT to a running kill.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, interruptible, run_agentfire
from tests.fakes.launchdarkly import LaunchDarklyFake, launchdarkly_fake  # noqa: F401

FLAG = "agent.enabled"
TOKEN = "api-5e1f-regions-secret-token"


def journal(root: Path, incident: str) -> list[dict[str, Any]]:
    path = root / ".agentfire/incidents" / f"{incident}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def flagd_on(path: Path) -> bool:
    return json.loads(path.read_text())["flags"][FLAG]["defaultVariant"] == "on"


def write_runbook(root: Path, regions: dict[str, Any], deadline: float = 20) -> Path:
    doc = {
        "version": 1,
        "agent": {"name": "support-agent", "flag": FLAG, "fallback": "fallbacks/support-agent.md"},
        "regions": regions,
        "kill": {"deadline_seconds": deadline, "max_retries": 1, "retry_cap_seconds": 1},
        "journal": {"dir": ".agentfire/incidents"},
    }
    (root / "runbook.yaml").write_text(json.dumps(doc, indent=2))
    return root / "runbook.yaml"


def flagd(name: str) -> dict[str, Any]:
    return {"kind": "flagd", "path": f".agentfire/flags/{name}.flagd.json", "create": True}


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


# --- item 8: one region's missing credential is that region's row ----------------------------


def test_missing_credential_is_that_regions_auth_row_while_others_are_killed(
        ops: Path, cli, launchdarkly_fake: LaunchDarklyFake, monkeypatch: pytest.MonkeyPatch) -> None:
    launchdarkly_fake.tokens = {TOKEN}
    write_runbook(ops, {
        "ld-prod": {"kind": "launchdarkly", "base_url": launchdarkly_fake.url, "project": "default",
                    "environment": "production", "token_env": "LD_ACCESS_TOKEN"},
        "ld-eu": {"kind": "launchdarkly", "base_url": launchdarkly_fake.url, "project": "default",
                  "environment": "eu", "token_env": "LD_EU_TOKEN"},
        "local": flagd("local"),
    })
    monkeypatch.delenv("LD_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("LD_EU_TOKEN", TOKEN)
    r = cli("--incident", "inc-cred", "--new", "kill", "--yes", "--json")
    assert r.exit_code == 1, r
    rows = {x["region"]: x for x in r.json()["regions"]}
    assert rows["ld-prod"]["outcome"] == "AUTH" and "$LD_ACCESS_TOKEN" in rows["ld-prod"]["detail"]
    assert rows["ld-eu"]["outcome"] == "CONFIRMED" and rows["local"]["outcome"] == "CONFIRMED"
    assert launchdarkly_fake.is_on(FLAG, "eu") is False and launchdarkly_fake.is_on(FLAG, "production") is True
    assert flagd_on(ops / ".agentfire/flags/local.flagd.json") is False
    kills = [e for e in journal(ops, "inc-cred") if e["action"] == "kill"]
    assert {x["region"]: x["outcome"] for x in kills[0]["regions"]} == \
        {"ld-prod": "AUTH", "ld-eu": "CONFIRMED", "local": "CONFIRMED"}
    # status reads every region it can, and names the one it cannot
    s = cli("status", "--json")
    assert s.exit_code == 1, s
    live = {x["region"]: x for x in s.json()["regions"]}
    assert live["ld-eu"]["on"] is False and live["local"]["on"] is False
    assert live["ld-prod"]["on"] is None and "$LD_ACCESS_TOKEN" in live["ld-prod"]["detail"]
    # undo restores what the kill turned off; the region it never touched is skipped
    u = cli("--incident", "inc-cred", "kill", "--undo", "--yes", "--json")
    assert u.exit_code == 0, u
    assert {x["region"]: x["outcome"] for x in u.json()["regions"]} == \
        {"ld-prod": "SKIPPED", "ld-eu": "CONFIRMED", "local": "CONFIRMED"}
    assert launchdarkly_fake.is_on(FLAG, "eu") is True


# --- item 9: the deadline holds whatever a region does ---------------------------------------


def _fifo_ops(ops: Path) -> Path:
    write_runbook(ops, {"healthy": flagd("healthy"), "hung": flagd("hung"), "other": flagd("other")})
    fifo = ops / ".agentfire/flags/hung.flagd.json"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    return fifo


def _release(fifo: Path) -> None:
    """Unblock a reader stuck opening the FIFO (if any), so no thread outlives the test."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def test_kill_deadline_holds_when_a_flag_file_blocks(ops: Path) -> None:
    fifo = _fifo_ops(ops)
    try:
        started = time.monotonic()
        r = run_agentfire("--incident", "inc-fifo", "--new", "kill", "--yes", "--deadline", "2", "--json",
                          cwd=ops, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        _release(fifo)
    assert r.exit_code == 1, r
    # bounded by the deadline, not by the blocked read (it used to run until killed)
    assert elapsed < 15, elapsed
    rows = {x["region"]: x for x in r.json()["regions"]}
    assert rows["healthy"]["outcome"] == "CONFIRMED" and rows["other"]["outcome"] == "CONFIRMED"
    assert rows["hung"]["outcome"] == "TIMEOUT"
    assert "a write was sent" not in rows["hung"]["detail"]
    assert "no write was sent" in rows["hung"]["detail"] and "reading" in rows["hung"]["detail"]
    kills = [e for e in journal(ops, "inc-fifo") if e["action"] == "kill"]
    assert {x["region"]: x["outcome"] for x in kills[0]["regions"]} == \
        {"healthy": "CONFIRMED", "hung": "TIMEOUT", "other": "CONFIRMED"}
    assert not any(x["wrote"] for x in kills[0]["regions"] if x["region"] == "hung")


def test_status_and_guard_are_bounded_when_a_flag_file_blocks(ops: Path) -> None:
    fifo = _fifo_ops(ops)
    code = ("import time, agentfire.guard as g; t = time.monotonic(); "
            "d = g.agent_enabled('hung', timeout_s=1.0); "
            "print(int(bool(d)), round(time.monotonic() - t, 1), d.reason)")
    try:
        s = run_agentfire("status", "--json", cwd=ops, timeout=60,
                          env={"AGENTFIRE_CONFIG": str(ops / "runbook.yaml")})
        env = dict(os.environ, PYTHONPATH=str(REPO), AGENTFIRE_CONFIG=str(ops / "runbook.yaml"))
        started = time.monotonic()
        g = subprocess.run([sys.executable, "-c", code], cwd=ops, env=env, capture_output=True,
                           text=True, timeout=60)
        guard_elapsed = time.monotonic() - started
    finally:
        _release(fifo)
    assert s.exit_code == 1, s
    live = {x["region"]: x for x in s.json()["regions"]}
    assert live["healthy"]["on"] is True and live["hung"]["on"] is None
    assert "TIMEOUT" in live["hung"]["detail"]
    assert g.returncode == 0, g.stderr
    assert g.stdout.startswith("0 "), g.stdout  # fails closed
    assert guard_elapsed < 15, guard_elapsed


LOCK_HOLDER = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1] + ".lock")
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_lock_held_by_another_process_gets_the_remaining_deadline(ops: Path) -> None:
    write_runbook(ops, {"healthy": flagd("healthy"), "locked": flagd("locked")})
    assert run_agentfire("status", cwd=ops).exit_code == 0  # creates both files, agent on
    locked_file = ops / ".agentfire/flags/locked.flagd.json"
    before = locked_file.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(locked_file)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        r = run_agentfire("--incident", "inc-lock", "--new", "kill", "--yes", "--deadline", "2", "--json",
                          cwd=ops, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert r.exit_code == 1, r
    assert elapsed < 9, elapsed  # the lock's own 10 s timeout no longer decides
    rows = {x["region"]: x for x in r.json()["regions"]}
    assert rows["healthy"]["outcome"] == "CONFIRMED"
    assert rows["locked"]["outcome"] in ("TIMEOUT", "ERROR")
    assert "a write was sent" not in rows["locked"]["detail"]
    assert "lock" in rows["locked"]["detail"]
    assert locked_file.read_bytes() == before  # nothing written after the deadline either
    kills = [e for e in journal(ops, "inc-lock") if e["action"] == "kill"]
    assert {x["region"]: x["wrote"] for x in kills[0]["regions"]} == {"healthy": True, "locked": False}


def test_ctrl_c_stops_the_kill_and_journals_what_happened(ops: Path) -> None:
    fifo = _fifo_ops(ops)
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", COLUMNS="200",
               AGENTFIRE_CONFIG=str(ops / "runbook.yaml"))
    env.pop("AGENTFIRE_INCIDENT", None)
    p = subprocess.Popen([sys.executable, "-m", "agentfire", "--incident", "inc-int", "--new", "kill", "--yes",
                          "--deadline", "60", "--json"], cwd=ops, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    try:
        # wait until the healthy regions are off (the hung one is stuck opening its FIFO)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            try:
                if not flagd_on(ops / ".agentfire/flags/healthy.flagd.json") and \
                        not flagd_on(ops / ".agentfire/flags/other.flagd.json"):
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        time.sleep(4)  # let them finish their read-back (and the agent-side evaluation)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        _release(fifo)
    assert p.returncode == 130, (p.returncode, out, err)
    assert "Traceback" not in err, err
    kills = [e for e in journal(ops, "inc-int") if e["action"] == "kill"]
    assert len(kills) == 1
    rows = {x["region"]: x for x in kills[0]["regions"]}
    assert rows["hung"]["outcome"] == "INTERRUPTED" and rows["hung"]["wrote"] is False
    assert "no write was sent" in rows["hung"]["detail"]
    for name in ("healthy", "other"):
        # finished (CONFIRMED), or, on a machine too slow to finish in 4 s, journaled as written
        # but not confirmed, so that undo restores it
        row = rows[name]
        assert row["wrote"] is True, row
        assert row["outcome"] == "CONFIRMED" or (
            row["outcome"] == "INTERRUPTED" and "a write was sent" in row["detail"]), row
    assert kills[0]["outcome"] == "interrupted"
    assert "INTERRUPTED" in out or "INTERRUPTED" in err


# --- item 11: undo restores a region if ANY kill of this incident turned it off ---------------


def test_undo_restores_a_region_a_retried_kill_turned_off(sandbox: Path, cli) -> None:
    cli("status")
    eu = sandbox / ".agentfire/flags/eu-west.flagd.json"
    good = eu.read_text()
    eu.write_text("{ not json")  # first kill cannot read eu-west
    r1 = cli("--incident", "inc-r", "--new", "kill", "--yes", "--json")
    assert r1.exit_code == 1
    eu.write_text(good)
    r2 = cli("--incident", "inc-r", "kill", "--yes", "--json")  # the retry turns it off
    assert {x["region"]: x["outcome"] for x in r2.json()["regions"]}["eu-west"] == "CONFIRMED"
    u = cli("--incident", "inc-r", "kill", "--undo", "--yes", "--json")
    assert u.exit_code == 0, u
    assert {x["region"]: x["outcome"] for x in u.json()["regions"]}["eu-west"] == "CONFIRMED"
    assert u.json()["all_restored"] is True
    assert flagd_on(eu) is True


def test_undo_orders_kills_by_time_not_journal_order(sandbox: Path, cli) -> None:
    """Two on-calls kill at once: the one that found the region already off journals first."""
    cli("status")
    assert cli("--incident", "inc-two", "--new", "kill", "--region", "us-east", "--yes").exit_code == 0
    assert cli("--incident", "inc-two", "kill", "--region", "us-east", "--yes").exit_code == 0
    path = sandbox / ".agentfire/incidents/inc-two.jsonl"
    lines = path.read_text().splitlines()
    kinds = [json.loads(l)["action"] for l in lines]
    i, j = [n for n, k in enumerate(kinds) if k == "kill"]
    lines[i], lines[j] = lines[j], lines[i]  # the ALREADY_OFF entry landed first
    path.write_text("\n".join(lines) + "\n")
    u = cli("--incident", "inc-two", "kill", "--undo", "--region", "us-east", "--yes", "--json")
    assert u.exit_code == 0, u
    assert u.json()["regions"][0]["outcome"] == "CONFIRMED"
    assert flagd_on(sandbox / ".agentfire/flags/us-east.flagd.json") is True


def test_bare_undo_picks_the_latest_incident_that_turned_a_region_off(sandbox: Path, cli) -> None:
    cli("status")
    assert cli("--incident", "inc-1-real", "--new", "kill", "--yes").exit_code == 0
    time.sleep(0.05)
    # a second incident's kill finds everything already off: it turned nothing off
    assert cli("--incident", "inc-2-late", "--new", "kill", "--yes").exit_code == 0
    u = cli("kill", "--undo", "--yes", "--json")
    assert u.exit_code == 0, u
    assert u.json()["incident"] == "inc-1-real"
    assert "inc-1-real" in u.stderr
    assert {x["outcome"] for x in u.json()["regions"]} == {"CONFIRMED"}
    assert all(flagd_on(sandbox / f".agentfire/flags/{r}.flagd.json") for r in ("us-east", "eu-west", "ap-south"))
    # nothing left to restore anywhere: refuse, naming the latest incident with a kill
    again = cli("kill", "--undo", "--yes", "--json")
    assert again.exit_code == 2, again
    assert "inc-1-real" in again.stderr or "inc-2-late" in again.stderr


def test_all_restored_is_a_live_read(sandbox: Path, cli) -> None:
    cli("status")
    assert cli("--incident", "inc-live", "--new", "kill", "--yes").exit_code == 0
    assert cli("--incident", "inc-live", "kill", "--undo", "--yes").exit_code == 0
    # afterwards something turns us-east off again by hand
    p = sandbox / ".agentfire/flags/us-east.flagd.json"
    doc = json.loads(p.read_text())
    doc["flags"][FLAG]["defaultVariant"] = "off"
    p.write_text(json.dumps(doc))
    u = cli("--incident", "inc-live", "kill", "--undo", "--yes", "--json")
    assert u.json()["all_restored"] is False, u
    assert u.exit_code == 1


# --- item 12: a dry run that cannot read a region, and the fallback line ----------------------


def test_dry_run_exits_1_when_a_region_cannot_be_read(sandbox: Path, cli) -> None:
    cli("status")
    (sandbox / ".agentfire/flags/eu-west.flagd.json").write_text("{ not json")
    r = cli("kill", "--dry-run", "--json")
    assert r.exit_code == 1, r
    assert {x["region"]: x["outcome"] for x in r.json()["regions"]}["eu-west"] == "ERROR"
    d = cli("kill", "--dry-run")
    assert "now see the approved fallback" not in d.stderr


def test_fallback_line_names_only_confirmed_regions(sandbox: Path, cli) -> None:
    cli("status")
    (sandbox / ".agentfire/flags/eu-west.flagd.json").write_text("{ not json")
    r = cli("--incident", "inc-fb", "--new", "kill", "--yes")
    assert r.exit_code == 1
    line = [l for l in r.stderr.splitlines() if "approved fallback" in l]
    assert line, r.stderr
    assert "us-east" in line[0] and "ap-south" in line[0] and "eu-west" not in line[0]
