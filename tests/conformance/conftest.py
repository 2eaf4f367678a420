"""Session fixtures of the trace-conformance suite: every framework's scripted agent is run once
per session (all at once, as subprocesses of the frameworks venv), into one real Phoenix (one
project per framework) and one Langfuse fake (OTLP ingestion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.conformance import harness
from tests.conftest import require_server
from tests.servers.phoenix import phoenix_server  # noqa: F401  (the session fixture)


@dataclass
class Conformance:
    phoenix_url: str
    langfuse: Any
    reports: dict[str, list[dict[str, Any]]]  # framework -> one report per run
    tag: str

    def project(self, name: str) -> str:
        return harness.project_of(name, self.tag)

    def trace_id(self, name: str, run: str) -> str:
        (tid,) = next(r["trace_ids"] for r in self.reports[name] if r["run"] == run)
        return tid

    def traces(self, name: str) -> dict[str, dict[str, Any]]:
        """The runbook `traces:` section that reads this framework's store."""
        if harness.FRAMEWORKS[name][2] == "phoenix":
            return {"kind": "phoenix", "url": self.phoenix_url, "project": self.project(name)}
        return {"kind": "langfuse", "base_url": self.langfuse.base_url}

    @property
    def env(self) -> dict[str, str]:
        return {"LANGFUSE_PUBLIC_KEY": self.langfuse.public_key, "LANGFUSE_SECRET_KEY": self.langfuse.secret_key}


@pytest.fixture(scope="session")
def conformance(phoenix_server, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    import time
    import uuid

    from tests.fakes.langfuse import FakeLangfuse

    require_server("the agent frameworks", harness.installed(), "run scripts/install-frameworks.sh")
    tag = f"-{uuid.uuid4().hex[:6]}"
    fake = FakeLangfuse().start()
    try:
        reports = harness.run_agents(list(harness.FRAMEWORKS), phoenix_url=phoenix_server.url, langfuse=fake, tag=tag)
        for name, reps in reports.items():
            tids = [t for r in reps for t in r["trace_ids"]]
            if harness.FRAMEWORKS[name][2] == "phoenix":
                harness.wait_phoenix(phoenix_server.url, harness.project_of(name, tag), tids)
            else:
                deadline = time.monotonic() + 60
                while {r["traceId"] for _, r in fake._sorted()} < set(tids):
                    assert time.monotonic() < deadline, "the Langfuse SDK's export did not arrive"
                    time.sleep(0.2)
        yield Conformance(phoenix_server.url, fake, reports, tag)
        assert not fake.validation_errors, fake.validation_errors
    finally:
        fake.stop()
