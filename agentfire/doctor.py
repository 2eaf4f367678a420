"""`agentfire doctor`: is this runbook ready for 03:00?

Validates runbook.yaml, resolves every environment variable it names, and probes every provider
read-only for reachability and auth. Each check is a row; nothing is written anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from agentfire.errors import ConfigError


@dataclass(frozen=True)
class Check:
    area: str
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"area": self.area, "name": self.name, "ok": self.ok, "detail": self.detail}


# family -> probe(runbook) -> (ok, detail); the budget and trace layers register theirs here.
FAMILY_PROBES: dict[str, Callable[[Any], tuple[bool, str]]] = {
    "budget": lambda rb: __import__("agentfire.budget", fromlist=["probe"]).probe(rb),
    "traces": lambda rb: __import__("agentfire.providers.traces", fromlist=["doctor_probe"]).doctor_probe(rb),
}


def run_checks(config: str | None) -> list[Check]:
    from agentfire import killswitch
    from agentfire.config import load_runbook
    from agentfire.fallbacks import load_fallback

    checks: list[Check] = []
    try:
        rb = load_runbook(config)
    except ConfigError as exc:
        return [Check("config", "runbook.yaml", False, str(exc))]
    checks.append(Check("config", str(rb.path), True,
                        f"valid: agent {rb.agent.name}, flag {rb.agent.flag}, {len(rb.regions)} regions"))
    for name in rb.env_names:
        present = bool(os.environ.get(name))
        checks.append(Check("env", f"${name}", present, "set" if present else "NOT SET"))
    fb = load_fallback(rb)
    if fb is None:
        checks.append(Check("fallback", "-", False, "no agent.fallback configured"))
    else:
        checks.append(Check("fallback", str(fb.path), fb.approved,
                            f"approved by {fb.approved_by} on {fb.approved_on}" if fb.approved else fb.problem))
    probes = killswitch.probe(rb, list(rb.regions))
    for region, (ok, detail) in probes.items():
        checks.append(Check("flags", f"{region} ({rb.regions[region].kind})", ok, detail))
    for family, probe in FAMILY_PROBES.items():
        try:
            ok, detail = probe(rb)
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        checks.append(Check(family, getattr(rb, family).kind, ok, detail))
    return checks
