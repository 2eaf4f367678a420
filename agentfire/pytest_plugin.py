"""pytest plugin: run a test once per regression case in the eval set.

    def test_regression(agentfire_case):
        reply = my_agent.run(agentfire_case.input, history=agentfire_case.conversation)
        assert agentfire_case.off_rails["name"] not in reply.tool_calls

Each case becomes one test whose id is the case id (`test_regression[case-3f2a...]`), so "the
suite runs green against the fix" is one pytest run. Loaded automatically through the `pytest11`
entry point when agentfire is installed, or with `-p agentfire.pytest_plugin`.

The eval set: `--agentfire-evals PATH`, else the `agentfire_evals` ini option, else runbook.yaml's
`evals.path` (found like the CLI finds it: $AGENTFIRE_CONFIG, else the nearest runbook.yaml from
the rootdir), else `evals/regressions.jsonl`. Nothing is read and nothing but the standard library
is imported until a test asks for `agentfire_case` or `agentfire_cases`: the plugin costs nothing
in a suite that does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FIXTURE = "agentfire_case"


@dataclass(frozen=True)
class EvalCase:
    """One regression case, as a test sees it. `raw` is the whole line as stored."""

    id: str
    input: Any
    conversation: list[Any]
    expected: str | None
    golden_tools: list[str] | None
    off_rails: dict[str, Any]
    source_trace_id: str | None
    incident: str | None
    tags: list[str]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "EvalCase":
        vars_ = doc.get("vars") if isinstance(doc.get("vars"), dict) else {}
        return cls(
            id=doc["id"],
            input=vars_.get("input"),
            conversation=list(vars_.get("conversation") or []),
            expected=doc.get("expected"),
            golden_tools=doc.get("golden_tools"),
            off_rails=dict(doc.get("off_rails") or {}),
            source_trace_id=doc.get("source_trace_id"),
            incident=doc.get("incident"),
            tags=list(doc.get("tags") or []),
            raw=doc,
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentfire", "agentfire regression cases")
    group.addoption("--agentfire-evals", metavar="PATH", default=None,
                    help="eval set (JSON lines) for the agentfire_case fixture "
                         "(default: runbook.yaml evals.path, else evals/regressions.jsonl)")
    group.addoption("--agentfire-tag", metavar="TAG", action="append", default=[],
                    help="only cases with this tag (repeatable)")
    parser.addini("agentfire_evals", "eval set for the agentfire_case fixture", default="")


def _evals_path(config: pytest.Config) -> Path:
    import os

    explicit = config.getoption("--agentfire-evals") or config.getini("agentfire_evals")
    root = Path(str(config.rootpath))
    if explicit:
        p = Path(os.path.expanduser(str(explicit)))
        return p if p.is_absolute() else Path(str(config.invocation_params.dir)) / p
    from agentfire.config import find_config, load_runbook
    from agentfire.errors import ConfigError

    try:
        cfg = find_config(cwd=root)
    except ConfigError:
        return root / "evals/regressions.jsonl"
    runbook = load_runbook(cfg)
    return runbook.resolve_path(runbook.model.evals.path)


def _load(config: pytest.Config) -> tuple[Path, list[EvalCase]]:
    cached = getattr(config, "_agentfire_cases", None)
    if cached is not None:
        return cached
    from agentfire.errors import AgentfireError
    from agentfire.evalset import EvalSet

    problem = None
    try:
        path = _evals_path(config)
        cases = [EvalCase.from_json(doc) for doc in EvalSet(path).cases()]
    except AgentfireError as exc:
        problem = str(exc)
    if problem is not None:
        # one clear line, not a traceback: the eval set or runbook.yaml is broken
        pytest.fail(f"agentfire: {problem}", pytrace=False)
    tags = set(config.getoption("--agentfire-tag") or [])
    if tags:
        cases = [c for c in cases if tags & set(c.tags)]
    config._agentfire_cases = (path, cases)  # type: ignore[attr-defined]
    return path, cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if FIXTURE not in metafunc.fixturenames:
        return
    path, cases = _load(metafunc.config)
    if not cases:
        metafunc.parametrize(FIXTURE, [pytest.param(None, marks=pytest.mark.skip(
            reason=f"no regression cases in {path} (agentfire capture adds them)"))],
            ids=["no-cases"])
        return
    metafunc.parametrize(FIXTURE, cases, ids=[c.id for c in cases])


@pytest.fixture
def agentfire_cases(request: pytest.FixtureRequest) -> list[EvalCase]:
    """Every regression case at once (for a test that loops itself)."""
    return list(_load(request.config)[1])

