"""The agent's side: what an agent process imports before it acts.

    from agentfire import guard

    decision = guard.agent_enabled()          # reads runbook.yaml the way the CLI does
    if not decision:
        return decision.fallback               # the approved message for users

Fails closed: if the flag cannot be read (file corrupt, server down, config broken), the agent is
off and the fallback is served. Budget checks (`check_budget`) live beside it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AgentDecision:
    enabled: bool
    reason: str
    fallback: str | None = None
    fallback_approved: bool = False

    def __bool__(self) -> bool:
        return self.enabled


def agent_enabled(
    region: str | None = None, *, config: str | None = None, runbook: Any = None,
    timeout_s: float = 2.0, fallback_path: str | os.PathLike[str] | None = None,
) -> AgentDecision:
    """Whether the agent may act in `region` (default: the first region of runbook.yaml).

    `fallback_path`: the approved fallback the agent ships with, served when runbook.yaml itself
    cannot be read (otherwise the runbook's agent.fallback is served).
    """
    fallback: str | None = None
    approved = False
    try:
        from agentfire import providers
        from agentfire.config import load_runbook
        from agentfire.fallbacks import load_fallback, parse_fallback

        if fallback_path is not None:
            from pathlib import Path

            shipped = parse_fallback(Path(fallback_path))
            fallback, approved = (shipped.text or None), shipped.approved
        rb = runbook or load_runbook(config)
        fb = load_fallback(rb)
        if fb is not None:
            fallback, approved = (fb.text or None), fb.approved
        name = region or next(iter(rb.regions))
        if name not in rb.regions:
            return AgentDecision(False, f"unknown region {name!r}: failing closed", fallback, approved)
        provider = providers.build("flags", rb.regions[name], rb)

        async def read() -> bool:
            try:
                return await asyncio.wait_for(provider.read(rb.agent.flag), timeout_s)
            finally:
                await provider.aclose()

        on = asyncio.run(read())
    except Exception as exc:  # fail closed on anything at all
        return AgentDecision(False, f"flag unreadable ({type(exc).__name__}: {exc}): failing closed",
                             fallback, approved)
    if on:
        return AgentDecision(True, "flag on")
    return AgentDecision(False, "kill switch is off", fallback, approved)
