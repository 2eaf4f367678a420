"""Bad input: each gets one clear line on stderr, the right exit code, no traceback, and loses nothing.

Config and usage errors exit 2 and change nothing on disk (byte for byte). Runtime failures
(a corrupt or unwritable flag file) exit 1, leave the flag files untouched and journal what
happened. The config cases run both in-process (CliRunner) and as real subprocesses; stderr is
checked at a narrow terminal width so a wrapped error line would show.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, CliResult, run_agentfire

NARROW = {"COLUMNS": "60"}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def error_lines(r: CliResult) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("agentfire: error:")]


def assert_one_error(r: CliResult, code: int, *needles: str) -> str:
    """Exit `code`, no traceback, exactly one error line, containing every needle."""
    assert r.exit_code == code, r
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r
    lines = error_lines(r)
    assert len(lines) == 1, r
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def assert_config_error(r: CliResult, *needles: str) -> str:
    """A usage/config error: exit 2, and stderr is that one line and nothing else."""
    line = assert_one_error(r, 2, *needles)
    assert r.stderr.strip() == line, r
    assert r.stdout == "", r
    return line


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def write_variant(sandbox: Path, name: str, old: str, new: str) -> Path:
    text = (sandbox / "runbook.yaml").read_text()
    assert old in text, old
    path = sandbox / name
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.fixture(params=["in-process", "subprocess"])
def run(request, cli, sandbox: Path):
    """Both ways of running the CLI, with the same result shape."""
    if request.param == "in-process":
        return lambda *args: cli(*args, env=NARROW)
    return lambda *args: run_agentfire(*args, cwd=sandbox, env=NARROW)


# --- runbook.yaml ----------------------------------------------------------------------------


def test_broken_yaml_names_file_and_line(sandbox: Path, run) -> None:
    bad = sandbox / "broken.yaml"
    bad.write_text("version: 1\nagent:\n  name: a\n  flag: [agent.enabled\nregions: {}\n")
    before = snapshot(sandbox)
    line = assert_config_error(run("--config", str(bad), "kill", "--yes"), str(bad), "not valid YAML")
    assert f"{bad}:" in line and line.split(f"{bad}:")[1].split(":")[0].isdigit()
    assert snapshot(sandbox) == before


@pytest.mark.parametrize(
    "old, new, typo, field, valid",
    [
        ("kill:\n", "kil:\n", "kil:", "kil", ["agent", "regions", "kill", "journal"]),
        ("  flag: agent.enabled", "  flag: agent.enabled\n  owner: team-x", "owner:", "agent.owner",
         ["name", "flag", "fallback"]),
        ("    create: true                 # sandbox only: created on first use with the agent on",
         "    create: true\n    pth: x", "pth:", "regions.us-east.pth",
         ["kind", "path", "off_variant", "on_variant", "create"]),
    ],
    ids=["top-level", "in-agent", "in-region"],
)
def test_unknown_key_names_file_line_field_and_valid_keys(
    sandbox: Path, run, old: str, new: str, typo: str, field: str, valid: list[str]
) -> None:
    cfg = write_variant(sandbox, "typo.yaml", old, new)
    before = snapshot(sandbox)
    line = assert_config_error(
        run("--config", str(cfg), "kill", "--yes"),
        f"{cfg}:{line_of(cfg, typo)}: {field}: unknown key", "valid keys:",
    )
    for key in valid:
        assert key in line.split("valid keys:")[1]
    assert snapshot(sandbox) == before


def test_wrong_type(sandbox: Path, run) -> None:
    cfg = write_variant(sandbox, "type.yaml", "  deadline_seconds: 20", "  deadline_seconds: soon")
    before = snapshot(sandbox)
    assert_config_error(
        run("--config", str(cfg), "status"),
        f"{cfg}:{line_of(cfg, 'deadline_seconds')}: kill.deadline_seconds:", "number", "'soon'",
    )
    assert snapshot(sandbox) == before


def test_unknown_region_kind(sandbox: Path, run) -> None:
    cfg = write_variant(sandbox, "kind.yaml", "kind: flagd", "kind: flagdd")
    before = snapshot(sandbox)
    assert_config_error(
        run("--config", str(cfg), "kill", "--yes"),
        f"{cfg}:", "regions.us-east.kind", "'flagdd'", "valid kinds: flagd, unleash, launchdarkly",
    )
    assert snapshot(sandbox) == before


def test_unknown_region_name(sandbox: Path, run) -> None:
    before = snapshot(sandbox)
    assert_config_error(run("kill", "--region", "us-east,mars", "--yes"),
                        "unknown region 'mars'", "us-east, eu-west, ap-south")
    assert snapshot(sandbox) == before


def test_missing_config_file(sandbox: Path, run) -> None:
    before = snapshot(sandbox)
    assert_config_error(run("--config", "nope/runbook.yaml", "kill", "--yes"),
                        "config file not found: nope/runbook.yaml")
    assert snapshot(sandbox) == before


def test_no_config_anywhere(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**NARROW, "AGENTFIRE_CONFIG": ""}
    r = run_agentfire("status", cwd=empty, env=env)
    assert_config_error(r, "no runbook.yaml in", "--config PATH")
    assert list(empty.iterdir()) == []


def test_config_env_points_nowhere(sandbox: Path) -> None:
    r = run_agentfire("status", cwd=sandbox, env={**NARROW, "AGENTFIRE_CONFIG": str(sandbox / "gone.yaml")})
    assert_config_error(r, "config file not found", "gone.yaml", "$AGENTFIRE_CONFIG")


def test_invalid_incident_id(sandbox: Path, run) -> None:
    before = snapshot(sandbox)
    assert_config_error(run("--incident", "../../etc/x", "--new", "kill", "--yes"), "invalid incident id")
    assert snapshot(sandbox) == before


# --- environment variables -------------------------------------------------------------------


UNLEASH_RUNBOOK = """\
version: 1
agent: {name: a, flag: agent.enabled, fallback: fallbacks/support-agent.md}
regions:
  us-east: {kind: flagd, path: .agentfire/flags/us-east.flagd.json, create: true}
  eu: {kind: unleash, url: "http://127.0.0.1:9", environment: production, token_env: AGENTFIRE_TEST_NO_SUCH_TOKEN}
"""


def test_missing_env_variable_is_that_regions_row_and_the_others_are_done(sandbox: Path) -> None:
    """Issue 12 item 8: a region whose token variable is unset is that region's AUTH row; the
    other regions are still killed (exit 1), journaled, and `status` reads every region it can."""
    cfg = sandbox / "unleash.yaml"
    cfg.write_text(UNLEASH_RUNBOOK)
    os.environ.pop("AGENTFIRE_TEST_NO_SUCH_TOKEN", None)
    r = run_agentfire("--config", str(cfg), "--incident", "inc-env", "--new", "kill", "--yes", "--json",
                      cwd=sandbox, env={**NARROW})
    assert r.exit_code == 1, r
    assert "Traceback" not in r.stderr
    rows = {x["region"]: x for x in json.loads(r.stdout)["regions"]}
    assert rows["us-east"]["outcome"] == "CONFIRMED"
    assert rows["eu"]["outcome"] == "AUTH"
    assert "$AGENTFIRE_TEST_NO_SUCH_TOKEN is not set" in rows["eu"]["detail"]
    assert (sandbox / ".agentfire/incidents/inc-env.jsonl").exists()
    s = run_agentfire("--config", str(cfg), "status", "--json", cwd=sandbox, env={**NARROW})
    assert s.exit_code == 1, s
    live = {x["region"]: x for x in json.loads(s.stdout)["regions"]}
    assert live["us-east"]["on"] is False
    assert live["eu"]["on"] is None and "$AGENTFIRE_TEST_NO_SUCH_TOKEN" in live["eu"]["detail"]


def test_doctor_reports_a_missing_env_variable_as_a_row(sandbox: Path, cli) -> None:
    cfg = sandbox / "unleash.yaml"
    cfg.write_text(UNLEASH_RUNBOOK)
    r = cli("--config", str(cfg), "doctor", "--json")
    assert r.exit_code == 1, r
    rows = {(c["area"], c["name"]): c for c in r.json()["checks"]}
    assert rows[("env", "$AGENTFIRE_TEST_NO_SUCH_TOKEN")]["ok"] is False
    assert rows[("flags", "eu (unleash)")]["ok"] is False
    assert "AGENTFIRE_TEST_NO_SUCH_TOKEN" in rows[("flags", "eu (unleash)")]["detail"]
    assert rows[("flags", "us-east (flagd)")]["ok"] is True


# --- flag files ------------------------------------------------------------------------------


def journal_entries(sandbox: Path, incident: str) -> list[dict]:
    path = sandbox / f".agentfire/incidents/{incident}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_flag_files_untouched(sandbox: Path, before: dict[str, bytes]) -> None:
    after = snapshot(sandbox)
    for name, data in before.items():
        assert after.get(name) == data, f"{name} changed"
    new = [n for n in after if n not in before]
    assert all(n.startswith(".agentfire/incidents/") for n in new), new


def test_corrupt_flag_file_kill_and_status(sandbox: Path) -> None:
    assert run_agentfire("status", cwd=sandbox).exit_code == 0  # creates the files, agent on
    bad = sandbox / ".agentfire/flags/eu-west.flagd.json"
    bad.write_bytes(b'{"flags": {"agent.enabled": {"state": "ENA')
    before = snapshot(sandbox)

    r = run_agentfire("--incident", "inc-corrupt", "--new", "kill", "--region", "eu-west", "--yes", "--json",
                      cwd=sandbox, env=NARROW)
    assert_one_error(r, 1, "NOT confirmed off", "eu-west=ERROR")
    detail = json.loads(r.stdout)["regions"][0]["detail"]
    assert "not valid JSON" in detail and "left untouched" in detail
    assert_flag_files_untouched(sandbox, before)
    kill = [e for e in journal_entries(sandbox, "inc-corrupt") if e["action"] == "kill"][0]
    assert kill["regions"][0]["outcome"] == "ERROR" and kill["outcome"] == "incomplete"

    s = run_agentfire("status", "--json", cwd=sandbox, env=NARROW)
    assert s.exit_code == 1 and "Traceback" not in s.stderr
    assert {x["region"]: x["on"] for x in json.loads(s.stdout)["regions"]}["eu-west"] is None
    assert_flag_files_untouched(sandbox, before)


def test_flag_file_whose_directory_is_a_file(sandbox: Path) -> None:
    cfg = sandbox / "blocked.yaml"
    cfg.write_text(UNLEASH_RUNBOOK.split("regions:")[0]
                   + "regions:\n  us-east: {kind: flagd, path: blocker/us-east.flagd.json, create: true}\n")
    (sandbox / "blocker").write_bytes(b"a file, not a directory\n")
    before = snapshot(sandbox)
    r = run_agentfire("--config", str(cfg), "--incident", "inc-blocked", "--new", "kill", "--yes", "--json",
                      cwd=sandbox, env=NARROW)
    assert_one_error(r, 1, "us-east=ERROR")
    region = json.loads(r.stdout)["regions"][0]
    assert region["outcome"] == "ERROR" and "blocker/us-east.flagd.json" in region["detail"]
    assert "Not a directory" in region["detail"]
    assert_flag_files_untouched(sandbox, before)


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    ro = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$1" "$1"', "sh", str(REPO)],
                        capture_output=True)
    return ro.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -rm and bind mounts (a private, read-only view)")
def test_read_only_flag_directory(sandbox: Path) -> None:
    # tests run as root, so chmod cannot make a directory unwritable: a read-only bind mount,
    # private to the agentfire process (a mount namespace), really refuses the write
    assert run_agentfire("status", cwd=sandbox).exit_code == 0
    flags = sandbox / ".agentfire/flags"
    before = snapshot(sandbox)
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", **NARROW)
    p = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$1" "$1" && shift && exec "$@"', "sh",
         str(flags), sys.executable, "-m", "agentfire", "--incident", "inc-ro", "--new", "kill", "--yes", "--json"],
        cwd=sandbox, env=env, capture_output=True, text=True, timeout=60,
    )
    r = CliResult(p.returncode, p.stdout, p.stderr)
    assert_one_error(r, 1, "NOT confirmed off")
    for region in json.loads(r.stdout)["regions"]:
        assert region["outcome"] == "ERROR" and "not writable" in region["detail"], region
        assert "Read-only file system" in region["detail"]
    assert_flag_files_untouched(sandbox, before)
    assert {e["outcome"] for e in journal_entries(sandbox, "inc-ro") if e["action"] == "kill"} == {"incomplete"}


def test_unwritable_journal_still_reports_the_kill(sandbox: Path) -> None:
    cfg = write_variant(sandbox, "nojournal.yaml", "  dir: .agentfire/incidents", "  dir: blocker/incidents")
    (sandbox / "blocker").write_bytes(b"a file\n")
    r = run_agentfire("--config", str(cfg), "--incident", "inc-nj", "--new", "kill", "--region", "us-east", "--yes",
                      cwd=sandbox)
    # the flip happened: the engineer sees it, is told loudly it is not journaled, and exit is 1
    assert_one_error(r, 1, "journal could not be written", "blocker/incidents")
    assert "CONFIRMED" in r.stdout and "JOURNAL NOT WRITTEN" in r.stderr
    assert (sandbox / "blocker").read_bytes() == b"a file\n"


# --- the CLI itself --------------------------------------------------------------------------


def test_version_and_python_dash_m(sandbox: Path) -> None:
    from agentfire import __version__

    r = run_agentfire("--version", cwd=sandbox)
    assert r.exit_code == 0 and r.stdout.strip() == f"agentfire {__version__}"
    r = run_agentfire("--help", cwd=sandbox)
    assert r.exit_code == 0 and "Usage: agentfire" in r.stdout and "kill" in r.stdout


def command_names() -> list[str]:
    """Every command path, sub-commands of groups included ("golden save")."""
    import click
    from typer.main import get_command

    from agentfire.cli import app

    def walk(group: click.Group, prefix: tuple[str, ...]) -> list[str]:
        out = []
        for name, cmd in group.commands.items():
            out.append(" ".join(prefix + (name,)))
            if isinstance(cmd, click.Group):
                out.extend(walk(cmd, prefix + (name,)))
        return out

    return sorted(walk(get_command(app), ()))  # type: ignore[arg-type]


@pytest.mark.parametrize("command", command_names())
def test_every_command_help_has_an_example(cli, command: str) -> None:
    r = cli(*command.split(), "--help")
    assert r.exit_code == 0, r
    assert "Example:" in r.stdout and "agentfire " in r.stdout.split("Example:")[1]


def test_unknown_command_and_option_are_usage_errors(sandbox: Path) -> None:
    for args in (["klil"], ["kill", "--regoin", "all"]):
        r = run_agentfire(*args, cwd=sandbox)
        assert r.exit_code == 2 and "Traceback" not in r.stderr, r
