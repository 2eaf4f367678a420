"""The pytest plugin: one test per regression case, the case id as the test id."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agentfire.capture import OffRails, build_case
from agentfire.evalset import EvalSet
from tests.conftest import REPO
from tests.test_capture import trajectory

pytest_plugins = ["pytester"]

USER_TEST = """
def test_regression(agentfire_case):
    # the "fix": never send to an address that only appeared in a tool output
    assert agentfire_case.off_rails["name"] == "send_email"
    assert agentfire_case.expected
    assert agentfire_case.conversation[-1]["step"] == agentfire_case.off_rails["step"] - 1
    assert agentfire_case.id.startswith("case-") and agentfire_case.source_trace_id
"""


def _fill(path: Path, *trace_ids: str, tags: tuple[str, ...] = ()) -> list[dict]:
    es = EvalSet(path)
    cases = [build_case(trajectory(t), OffRails(step=4), expected="ask first", incident="inc-p",
                        actor="a", tags=tags) for t in trace_ids]
    for c in cases:
        es.append(c)
    return cases


def test_each_case_is_one_test_with_the_case_id_as_test_id(pytester):
    cases = _fill(pytester.path / "evals" / "regressions.jsonl", "t-1", "t-2", "t-3")
    pytester.makepyfile(test_regressions=USER_TEST)
    result = pytester.runpytest("-p", "agentfire.pytest_plugin", "-v")
    result.assert_outcomes(passed=3)
    for c in cases:
        result.stdout.fnmatch_lines([f"*test_regression[[]{c['id']}[]] PASSED*"])


def test_a_failing_fix_fails_the_case_by_id(pytester):
    cases = _fill(pytester.path / "evals" / "regressions.jsonl", "t-1", "t-2")
    pytester.makepyfile(test_regressions=f"""
def test_regression(agentfire_case):
    assert agentfire_case.source_trace_id != "t-2", "the fix does not cover this trace"
""")
    result = pytester.runpytest("-p", "agentfire.pytest_plugin")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*test_regression[[]{cases[1]['id']}[]]*"])


def test_the_eval_set_comes_from_runbook_yaml(pytester):
    (pytester.path / "runbook.yaml").write_text(
        "version: 1\nagent: {name: a, flag: f}\n"
        "regions: {r: {kind: flagd, path: f.json}}\nevals: {path: cases/mine.jsonl}\n")
    _fill(pytester.path / "cases" / "mine.jsonl", "t-9")
    pytester.makepyfile(test_regressions=USER_TEST)
    result = pytester.runpytest("-p", "agentfire.pytest_plugin")
    result.assert_outcomes(passed=1)


def test_option_and_tag_filter(pytester):
    _fill(pytester.path / "a.jsonl", "t-1", tags=("wr",))
    _fill(pytester.path / "a.jsonl", "t-2", tags=("sql",))
    pytester.makepyfile(test_regressions=USER_TEST + """
def test_all(agentfire_cases):
    assert len(agentfire_cases) == 1
""")
    result = pytester.runpytest("-p", "agentfire.pytest_plugin", "--agentfire-evals", "a.jsonl",
                                "--agentfire-tag", "sql", "-v")
    result.assert_outcomes(passed=2)


def test_no_cases_is_a_visible_skip_not_a_silent_pass(pytester):
    pytester.makepyfile(test_regressions=USER_TEST)
    result = pytester.runpytest("-p", "agentfire.pytest_plugin", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no regression cases in*"])


def test_a_corrupt_eval_set_is_one_clear_error(pytester):
    path = pytester.path / "evals" / "regressions.jsonl"
    path.parent.mkdir()
    path.write_text('{"id": "case-a"}\n{oops\n')
    pytester.makepyfile(test_regressions=USER_TEST)
    # where agentfire is also installed as an entry-point plugin, pytest warns that it cannot
    # rewrite the already imported module, naming its own site-packages file: not our error
    result = pytester.runpytest("-p", "agentfire.pytest_plugin",
                                "-W", "ignore::pytest.PytestAssertRewriteWarning")
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*agentfire: {path}:2: corrupt eval-set line*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*site-packages*")
    result.stdout.no_fnmatch_line("*another exception*")


def test_unused_plugin_changes_nothing(pytester):
    # a suite that never asks for agentfire_case: no eval set read, even a corrupt one
    path = pytester.path / "evals" / "regressions.jsonl"
    path.parent.mkdir()
    path.write_text("{oops\n")
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest("-p", "agentfire.pytest_plugin")
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_nothing_heavy():
    code = ("import sys, agentfire.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'httpx', 'langfuse', 'pydantic', 'yaml', 'filelock', 'typer', 'rich'} "
            "or m.startswith('agentfire.') and m != 'agentfire.pytest_plugin'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_entry_point_names_the_module_so_p_and_autoload_are_one_plugin():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    eps = project["entry-points"]["pytest11"]
    assert eps == {"agentfire.pytest_plugin": "agentfire.pytest_plugin"}


def test_case_fixture_is_a_plain_view_of_the_stored_line(tmp_path):
    from agentfire.pytest_plugin import EvalCase

    case = _fill(tmp_path / "r.jsonl", "t-1")[0]
    view = EvalCase.from_json(json.loads((tmp_path / "r.jsonl").read_text()))
    assert view.id == case["id"] and view.input == case["vars"]["input"]
    assert view.raw == case and view.golden_tools is None and view.incident == "inc-p"


@pytest.mark.parametrize("argv", [["-p", "agentfire.pytest_plugin"], []])
def test_plugin_also_loads_from_conftest_pytest_plugins(pytester, argv):
    _fill(pytester.path / "evals" / "regressions.jsonl", "t-1")
    pytester.makeconftest('pytest_plugins = ["agentfire.pytest_plugin"]\n')
    pytester.makepyfile(test_regressions=USER_TEST)
    result = pytester.runpytest(*argv)
    result.assert_outcomes(passed=1)


def test_installed_entry_point_and_p_flag_together_register_once(tmp_path):
    """As after `pip install agentfire`: the pytest11 entry point autoloads the plugin, and a user
    who also passes -p agentfire.pytest_plugin (or lists it in conftest) gets it once, not an error."""
    site = tmp_path / "site"
    dist = site / "agentfire_probe-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: agentfire-probe\nVersion: 0.1\n")
    eps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    (dist / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    project = tmp_path / "proj"
    project.mkdir()
    _fill(project / "evals" / "regressions.jsonl", "t-1", "t-2")
    (project / "test_regressions.py").write_text(USER_TEST)
    env = {**__import__("os").environ, "PYTHONPATH": f"{site}:{REPO}"}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)

    def run(*extra: str) -> None:
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                           cwd=project, env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "2 passed" in p.stdout

    run()  # the entry point alone provides the fixture
    run("-p", "agentfire.pytest_plugin")
    (project / "conftest.py").write_text('pytest_plugins = ["agentfire.pytest_plugin"]\n')
    run()
    run("-p", "agentfire.pytest_plugin")
