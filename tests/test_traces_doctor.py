"""`agentfire doctor` probes the configured trace store read-only."""

from __future__ import annotations

from pathlib import Path


def _traces_check(cli) -> dict:
    r = cli("doctor", "--json")
    return [c for c in r.json()["checks"] if c["area"] == "traces"][0]


def test_doctor_on_a_fresh_sandbox_does_not_seed_the_files_store(sandbox: Path, cli) -> None:
    check = _traces_check(cli)
    assert check["ok"] is True and check["name"] == "files"
    assert "first use seeds the sandbox scenario 'wrong_recipient'" in check["detail"]
    assert not (sandbox / ".agentfire/traces").exists()  # doctor writes nothing


def test_doctor_reports_a_missing_unseeded_files_store(sandbox: Path, cli) -> None:
    text = (sandbox / "runbook.yaml").read_text()
    (sandbox / "runbook.yaml").write_text(text.replace("seed_scenario: wrong_recipient", "seed_scenario: null"))
    check = _traces_check(cli)
    assert check["ok"] is False and "does not exist" in check["detail"]


def test_doctor_counts_the_files_of_a_seeded_store(sandbox: Path, cli) -> None:
    from agentfire.sandbox import seed_store

    seed_store(sandbox / ".agentfire/traces", scenario="papered_error", traces=20)
    check = _traces_check(cli)
    assert check["ok"] is True and check["detail"].endswith(": 1 file(s)")
