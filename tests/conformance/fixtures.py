"""The recorded fixtures (tests/fixtures/frameworks/<framework>.json, written by
`python -m tests.conformance.harness record`) read back into Trajectories, the way each store does."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentfire.trajectory import Trajectory, from_observations

FIXTURES = Path(__file__).parent.parent / "fixtures" / "frameworks"
AS_OF = datetime(2026, 12, 1, tzinfo=timezone.utc)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def trajectories(name: str) -> dict[str, Trajectory]:
    """{run key: Trajectory} for one framework's recorded traces."""
    from agentfire.providers.traces.phoenix import _link_parents

    doc = load(name)
    out = {}
    for rep in doc["reports"]:
        (tid,) = rep["trace_ids"]
        if doc["store"] == "phoenix":
            rows = _link_parents([s for s in doc["spans"] if s["context"]["trace_id"] == tid])
        else:
            rows = [r for r in doc["rows"] if r["traceId"] == tid]
        out[rep["run"]] = from_observations(tid, rows, as_of=AS_OF, source=f"{doc['store']}:fixture")
    return out
