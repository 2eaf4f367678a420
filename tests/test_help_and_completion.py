"""Help that reads the same everywhere, and shell completion of values (issue 14)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REPO, run_agentfire

CLICK_INTERNALS = re.compile(r"<(int|float) range>|<str>|<int>|<float>|<path>|\{[A-Za-z_]+\}")


def test_help_has_one_metavar_style_and_no_click_internals() -> None:
    doc = (REPO / "docs/cli.md").read_text()
    usage_and_options = [line for line in doc.splitlines()
                         if line.startswith("Usage:") or line.lstrip().startswith(("-", "TRACE_ID", "INCIDENT", "SCENARIO"))]
    bad = [line for line in usage_and_options if CLICK_INTERNALS.search(line)]
    assert not bad, bad
    assert "Usage: agentfire triage [OPTIONS] TRACE_ID\n" in doc  # not typer 0.29's {TRACE_ID}
    assert "Usage: agentfire gameday score [OPTIONS] [INCIDENT]\n" in doc
    assert "-n, --last N " in doc and "--incident INCIDENT" in doc


def test_gameday_help_names_every_scenario_and_freeze_every_level(cli) -> None:
    from agentfire.budget import PERCENTILES
    from agentfire.sandbox import scenarios

    for sub in ("run", "start"):
        text = " ".join(cli("gameday", sub, "--help").stdout.split())
        for name in scenarios():
            assert name in text, (sub, name)
    text = " ".join(cli("freeze", "--help").stdout.split())
    for level in PERCENTILES:
        assert level in text, level
    assert "USD" in text


def _complete(root: Path, words: str) -> list[str]:
    parts = words.split(" ")
    r = run_agentfire(cwd=root, env={"_AGENTFIRE_COMPLETE": "complete_bash", "COMP_WORDS": words,
                                     "COMP_CWORD": str(len(parts) - 1)})
    assert r.exit_code == 0, r
    return [line for line in r.stdout.splitlines() if line]


def test_shell_completion_of_values(sandbox: Path, cli) -> None:
    assert _complete(sandbox, "agentfire kill --region ") == ["all", "us-east", "eu-west", "ap-south"]
    assert _complete(sandbox, "agentfire status --region us-east,") == ["us-east,eu-west", "us-east,ap-south"]
    assert _complete(sandbox, "agentfire gameday run ") == ["wrong_recipient", "destructive_sql", "runaway_loop",
                                                              "papered_error", "all"] or \
        set(_complete(sandbox, "agentfire gameday run ")) >= {"wrong_recipient", "papered_error"}
    assert _complete(sandbox, "agentfire gameday run dest") == ["destructive_sql"]

    seeded = cli("sandbox", "seed", "--scenario", "wrong_recipient", "--json").json()["scenarios"][0]
    newest = cli("traces", "--since", "1d", "--json").json()["traces"][0]["trace_id"]
    offered = _complete(sandbox, "agentfire triage ")
    assert offered[0] == newest and len(offered) == 40
    one = seeded["examples"][0]
    assert _complete(sandbox, f"agentfire capture {one[:10]}") == [one]
    assert one in _complete(sandbox, f"agentfire blast --like {one[:6]}")

    cli("--incident", "inc-20261130-000000-abcd", "--new", "kill", "--yes")
    assert _complete(sandbox, "agentfire --incident inc-2026113") == ["inc-20261130-000000-abcd"]
    assert _complete(sandbox, "agentfire report ") == ["inc-20261130-000000-abcd"]

    assert cli("golden", "save", newest, "--class", "refund_request").exit_code == 0
    assert _complete(sandbox, "agentfire triage x --golden ref") == ["refund_request"]
