"""The first ten minutes of a new user (issue 14): what a drill leaves behind and how to reset it,
report and gameday score telling the same time to kill, sandbox outputs out of git, and the
README's first screen."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, run_agentfire


def test_drill_says_what_it_left_and_the_reset_commands_work(sandbox: Path) -> None:
    # --keep: the drill leaves its state (by default it restores it, #12 item 13)
    r = run_agentfire("gameday", "run", "wrong_recipient", "--auto", "--seed", "5", "--traces", "60",
                      "--keep", cwd=sandbox, timeout=300)
    assert r.exit_code == 0, r
    left = next(line for line in r.stderr.splitlines() if line.startswith("the drill left: "))
    incident = re.search(r"incident (inc-\S+) is open", left).group(1)
    assert "the agent is OFF in ap-south, eu-west, us-east" in left
    assert "spend is frozen" in left and re.search(r"case \S+ is in evals/regressions.gameday.jsonl", left)
    resets = [line[len("reset: "):] for line in r.stderr.splitlines() if line.startswith("reset: ")]
    assert resets == [f"agentfire --incident {incident} kill --undo --yes",
                      f"agentfire --incident {incident} freeze --lift --yes",
                      f"agentfire incident close {incident}"]
    for command in resets:
        done = run_agentfire(*shlex.split(command)[1:], cwd=sandbox)
        assert done.exit_code == 0, (command, done)
    status = run_agentfire("status", "--json", cwd=sandbox).json()
    assert all(region["on"] is True for region in status["regions"])
    assert status["budget"]["scopes"][0]["effective"]["admission"] == "open"

    # report and gameday score tell the same time for each minute (the first confirmed kill,
    # although blast sent the walk back to minute one and kill ran twice)
    report = run_agentfire("report", incident, "--json", cwd=sandbox).json()
    score = run_agentfire("gameday", "score", incident, "--json", cwd=sandbox).json()
    kill_runs = [s for s in report["timeline"] if s["action"] == "kill"]
    assert len(kill_runs) >= 2
    by_step = {s["step"]: s["done_at_s"] for s in report["steps"]}
    for t in score["timing"]:
        assert by_step[t["minute"]] == pytest.approx(t["seconds"], abs=0.051), t["minute"]


def test_sandbox_outputs_do_not_dirty_the_git_tree(tmp_path: Path) -> None:
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    repo = tmp_path / "clone"
    repo.mkdir()
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    for p in ("evals/regressions.jsonl", "golden/refund.json", ".agentfire/traces/x.jsonl"):
        (repo / p).parent.mkdir(parents=True, exist_ok=True)
        (repo / p).write_text("{}\n")
    out = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "?? .gitignore"


def test_readme_first_screen_names_python_the_venv_and_true_commands() -> None:
    text = (REPO / "README.md").read_text()
    first = text.split("\n---", 1)[0]
    assert "Python 3.11" in first
    assert "python3 -m venv .venv" in first and ". .venv/bin/activate" in first
    assert "pip install -e ." in first and "agentfire gameday run wrong_recipient --auto" in first
    assert "bash scripts/test.sh" in first and (REPO / "scripts/test.sh").exists()
    # the quickstart installs only what the sandbox needs: the providers' SDKs are extras
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("langfuse", "opentelemetry", "redis", "arize-phoenix"):
        assert heavy not in base, heavy
    extras = project["optional-dependencies"]
    assert any(d.startswith("redis") for d in extras["redis"])
    # named where it is configured: runbook.yaml's budget section, and the store's own error
    budget_line = next(line for line in (REPO / "runbook.yaml").read_text().splitlines()
                       if line.startswith("  kind: sqlite"))
    assert "agentfire[redis]" in budget_line
    assert "agentfire[redis]" in (REPO / "agentfire/providers/budget/redis.py").read_text()
    assert "pip install -e '.[redis]'" in first
