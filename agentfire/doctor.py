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
    warning: bool = False  # ok, but something an on-call should fix before 03:00

    def to_json(self) -> dict[str, Any]:
        return {"area": self.area, "name": self.name, "ok": self.ok, "detail": self.detail,
                "warning": self.warning}


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
    # the walk's own pre-flight check: a step whose variable nothing (or only a later step)
    # provides would stop `runbook --auto` half-way, after kill and freeze ran
    from agentfire.walk import plan, plan_problems

    steps = plan(rb)
    problem = plan_problems(steps, {"trace_id": "(the alert's)"})
    checks.append(Check("steps", f"{len(steps)} runbook steps", problem is None,
                        problem or "every step's variables are known before it runs"))
    fb = load_fallback(rb)
    if fb is None:
        checks.append(Check("fallback", "-", False, "no agent.fallback configured"))
    else:
        checks.append(Check("fallback", str(fb.path), fb.approved,
                            f"approved by {fb.approved_by} on {fb.approved_on}" if fb.approved else fb.problem))
    probes = killswitch.probe(rb, list(rb.regions))
    for region, (ok, detail) in probes.items():
        checks.append(Check("flags", f"{region} ({rb.regions[region].kind})", ok, detail))
    checks.extend(agent_checks(rb))
    for family, probe in FAMILY_PROBES.items():
        try:
            ok, detail = probe(rb)
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        checks.append(Check(family, getattr(rb, family).kind, ok, detail,
                            warning=ok and detail.startswith("WARNING:")))
    return checks


def agent_checks(rb: Any) -> list[Check]:
    """Per region: can an agent evaluate the flag with the credentials and provider it is given
    (SDK key, backend token, flag file, the configured OpenFeature provider), and does what it is
    served agree with what the admin API reads? A bogus or swapped agent token passes every admin
    check while the agents are offline, or still running after a CONFIRMED kill."""
    from concurrent.futures import ThreadPoolExecutor

    from agentfire import agentside, killswitch

    names = list(rb.regions)
    try:
        admin = {s.region: s.on for s in killswitch.status(rb)}
    except Exception:  # noqa: BLE001 - the flags rows above already say why
        admin = {}

    def one(name: str) -> Check:
        section = rb.regions[name]
        view = agentside.agent_view(rb, name, timeout_s=float(getattr(section, "init_timeout_seconds", 5.0)))
        label = f"{name} (agent view)"
        if view.on is None and section.kind == "flagd" and getattr(section, "create", False) \
                and not rb.resolve_path(section.path).exists():
            return Check("agents", label, True, f"{rb.resolve_path(section.path)} will be created on first "
                                                "use; agents are off until it exists")
        if view.on is None:
            return Check("agents", label, False,
                         f"agents cannot evaluate {rb.agent.flag}: {view.detail} (they fail closed: off)")
        said = "on" if view.on else "off"
        want = admin.get(name)
        if want is None:
            return Check("agents", label, True, f"agents are served {said} ({view.detail}); admin view unreadable")
        if want != view.on:
            return Check("agents", label, False,
                         f"agents are served {said}, but the admin API reads {'on' if want else 'off'}: "
                         f"the agents' credentials or source point elsewhere ({view.detail})")
        return Check("agents", label, True, f"agents are served {said}, as the admin API reads ({view.detail})")

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
        return list(pool.map(one, names))
