"""Runs the scripted agents of tests/conformance/agents/ with the frameworks venv
(scripts/install-frameworks.sh) and collects what their real instrumentations wrote.

- FRAMEWORKS: name -> (script, argv, store) where store is "phoenix" or "langfuse".
- `run_agents(names, phoenix_url=, langfuse=)`: every agent at once (subprocesses), each into its
  own Phoenix project (or the Langfuse fake); returns {name: [report per run]}.
- `phoenix_spans(url, project, trace_ids)`: the raw REST spans (what PhoenixTraceStore reads).

`python -m tests.conformance.harness record` (from the repository root, with a Phoenix at
$PHOENIX_URL) rewrites the recorded fixtures in tests/fixtures/frameworks/ that the fast unit tests
of the mapping read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

AGENTS_DIR = Path(__file__).parent / "agents"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "frameworks"
SERVERS_DIR = Path(os.environ.get("AGENTFIRE_SERVERS_DIR", Path.home() / ".cache" / "agentfire" / "servers"))
FRAMEWORKS_PYTHON = SERVERS_DIR / "frameworks-venv" / "bin" / "python"

FRAMEWORKS: dict[str, tuple[str, list[str], str]] = {
    "langgraph": ("langgraph_agent.py", ["openinference"], "phoenix"),
    "openai_agents": ("openai_agents_agent.py", ["sensitive"], "phoenix"),
    "openai_agents_redacted": ("openai_agents_agent.py", ["redacted"], "phoenix"),
    "pydantic_ai": ("pydantic_ai_agent.py", [], "phoenix"),
    "smolagents": ("smolagents_agent.py", [], "phoenix"),
    "langgraph_langfuse": ("langgraph_agent.py", ["langfuse"], "langfuse"),
}
PHOENIX_FRAMEWORKS = [n for n, (_, _, store) in FRAMEWORKS.items() if store == "phoenix"]


def installed() -> bool:
    return FRAMEWORKS_PYTHON.exists()


def project_of(name: str, tag: str = "") -> str:
    return f"conformance-{name}{tag}"


def run_agents(names: list[str], *, phoenix_url: str | None = None, langfuse: Any = None,
               tag: str = "", timeout_s: float = 300.0) -> dict[str, list[dict[str, Any]]]:
    procs: dict[str, subprocess.Popen] = {}
    for name in names:
        script, argv, store = FRAMEWORKS[name]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LANGFUSE_", "OPENAI_"))}
        env.update({"PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1", "OPENAI_API_KEY": "sk-not-used",
                    "OPENAI_AGENTS_DISABLE_TRACING": "0"})
        if store == "phoenix":
            assert phoenix_url
            env.update({"AGENTFIRE_OTLP_ENDPOINT": f"{phoenix_url}/v1/traces", "AGENTFIRE_PROJECT": project_of(name, tag)})
        else:
            assert langfuse is not None
            env.update({"LANGFUSE_PUBLIC_KEY": langfuse.public_key, "LANGFUSE_SECRET_KEY": langfuse.secret_key,
                        "LANGFUSE_BASE_URL": langfuse.base_url, "LANGFUSE_HOST": langfuse.base_url,
                        "LANGFUSE_TRACING_ENVIRONMENT": "production"})
        procs[name] = subprocess.Popen([str(FRAMEWORKS_PYTHON), script, *argv], cwd=AGENTS_DIR, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + timeout_s
    for name, p in procs.items():
        try:
            stdout, stderr = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
            raise RuntimeError(f"{name}: the scripted agent did not finish in {timeout_s:g} s: {stderr[-2000:]}")
        if p.returncode != 0:
            raise RuntimeError(f"{name}: the scripted agent failed ({p.returncode}): {stderr[-3000:]}")
        reports = []
        for line in stdout.splitlines():
            if line.startswith('{"run"'):
                reports.append(json.loads(line))
        out[name] = reports
    return out


def phoenix_spans(url: str, project: str, trace_ids: list[str]) -> list[dict[str, Any]]:
    import httpx

    spans: list[dict[str, Any]] = []
    cursor = None
    with httpx.Client(base_url=url, timeout=30) as c:
        while True:
            params: list[tuple[str, Any]] = [("limit", 1000)] + [("trace_id", t) for t in trace_ids]
            if cursor:
                params.append(("cursor", cursor))
            r = c.get(f"/v1/projects/{project}/spans", params=params)
            if r.status_code == 404:
                return []
            r.raise_for_status()
            body = r.json()
            spans.extend(body["data"])
            cursor = body.get("next_cursor")
            if not cursor:
                return spans


def wait_phoenix(url: str, project: str, trace_ids: list[str], *, settle_s: float = 1.5,
                 timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Ingestion is asynchronous: poll until every trace has its root span and the count is stable."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        spans = phoenix_spans(url, project, trace_ids)
        roots = {s["context"]["trace_id"] for s in spans if s.get("parent_id") is None}
        if len(spans) != last:
            last, stable_since = len(spans), time.monotonic()
        elif roots >= set(trace_ids) and time.monotonic() - stable_since >= settle_s:
            return spans
        time.sleep(0.3)
    raise TimeoutError(f"{project}: spans of {len(trace_ids)} traces not all readable after {timeout_s:g} s")


def record(phoenix_url: str) -> None:
    """Regenerate tests/fixtures/frameworks/<name>.json: {"reports": [...], "spans"|"rows": [...]}."""
    sys.path.insert(0, str(Path(__file__).parents[2]))
    from tests.fakes.langfuse import FakeLangfuse

    FIXTURES.mkdir(parents=True, exist_ok=True)
    tag = f"-rec{int(time.time())}"
    with FakeLangfuse() as fake:
        reports = run_agents(list(FRAMEWORKS), phoenix_url=phoenix_url, langfuse=fake, tag=tag)
        for name, reps in reports.items():
            tids = [t for r in reps for t in r["trace_ids"]]
            if FRAMEWORKS[name][2] == "phoenix":
                doc = {"store": "phoenix", "reports": reps, "spans": wait_phoenix(phoenix_url, project_of(name, tag), tids)}
            else:
                time.sleep(0.5)
                rows = [r for _, r in fake._sorted() if r["traceId"] in tids]
                doc = {"store": "langfuse", "reports": reps, "rows": rows}
            (FIXTURES / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
            print(f"{name}: {len(reps)} runs", file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:] == ["record"]:
        record(os.environ["PHOENIX_URL"])
    else:
        print(__doc__)
