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
    r = run_agentfire("--config", str(cfg), "--incident", "inc-nj", "freeze", "--to", "0.5", "--yes", "--json",
                      cwd=sandbox)
    assert_one_error(r, 1, "journal could not be written", "blocker/incidents")
    doc = json.loads(r.stdout)
    assert doc["outcome"] == "CONFIRMED" and doc["after"]["freeze_usd"] == 0.5
    assert "JOURNAL NOT WRITTEN" in r.stderr and "admission=open" in r.stderr
