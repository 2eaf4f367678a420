"""The agent's side: what an agent process imports before it acts.

    from agentfire import guard

    decision = guard.agent_enabled()          # reads runbook.yaml the way the CLI does
    if not decision:
        return decision.fallback               # the approved message for users

Fails closed: if the flag cannot be read (file corrupt, server down, config broken), the agent is
off and the fallback is served.

Spend caps, checked *before* each model call (checking after means the call that put you over is
already paid for):

    caps = guard.load_caps()                  # cached at most 1 s; never raises
    stop = guard.check_budget(spent_usd, caps, starting=(calls_so_far == 0))
    if stop:                                  # "hard_cap" | "freeze" | "frozen" | "unreadable"
        ...                                   # no model call; caps.error says why if unreadable
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfire.providers.budget import Caps


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
        # a provider may offer a narrower reader for agents (Unleash: the client API with a
        # backend token, so an agent never holds an admin token)
        provider = providers.build_agent_reader("flags", rb.regions[name], rb)

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


# --- spend caps -------------------------------------------------------------------------------

MAX_CACHE_AGE_S = 1.0  # the guard never acts on caps older than this
HARD_CAP, FREEZE, FROZEN, UNREADABLE = "hard_cap", "freeze", "frozen", "unreadable"

# (config, scope) -> (monotonic time fetched, Caps); failures are cached too, so a down store is
# asked at most once per interval per process (and refuses meanwhile).
_CAPS_CACHE: dict[tuple[str | None, str | None], tuple[float, "Caps"]] = {}
# config -> (runbook, budget store), built on the first miss; a child process builds its own
_STORES: dict[str | None, tuple[Any, Any]] = {}


def forget_caps() -> None:
    """Drop cached caps and store connections (done automatically in a forked child)."""
    _CAPS_CACHE.clear()
    _STORES.clear()  # a connection (sqlite, redis socket) must not be shared with the parent


os.register_at_fork(after_in_child=forget_caps)


def check_budget(spent_usd: float, caps: "Caps", *, starting: bool = False,
                 now: float | None = None) -> str | None:
    """Before a model call: None (go ahead) or why not.

    "hard_cap": spend reached the hard cap: stop the trajectory now.
    "freeze": spend reached the freeze cap: no further model call (finish without the model).
    "frozen": `starting` a new trajectory while admission is frozen: do not start it.
    "unreadable": the caps could not be read (`caps.error` says why): no model call.
    """
    if caps.error is not None:
        return UNREADABLE
    if caps.expires_at is None:
        hard, frz, admission = caps.hard_usd, caps.freeze_usd, caps.admission
    else:
        eff = caps.effective(time.time() if now is None else now)
        hard, frz, admission = eff.hard_usd, eff.freeze_usd, eff.admission
    if hard is not None and spent_usd >= hard:
        return HARD_CAP
    if frz is not None and spent_usd >= frz:
        return FREEZE
    if starting and admission == "frozen":
        return FROZEN
    return None


def load_caps(scope: str | None = None, *, config: str | None = None, runbook: Any = None,
              max_age_s: float = MAX_CACHE_AGE_S) -> "Caps":
    """The scope's caps (default: the agent's name) through a per-process cache at most
    `max_age_s` (<= 1 s) old. Never raises: when the store cannot be read or holds garbage, the
    result has `error` set and check_budget refuses."""
    key = (config, scope)
    hit = _CAPS_CACHE.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] <= min(max_age_s, MAX_CACHE_AGE_S):
        return hit[1]
    caps = _fetch_caps(scope, config, runbook)
    _CAPS_CACHE[key] = (now, caps)  # stamped with the time *before* the read: never older
    return caps


def _fetch_caps(scope: str | None, config: str | None, runbook: Any) -> "Caps":
    from agentfire.providers.budget import Caps

    try:
        built = _STORES.get(config)
        if built is None:
            from agentfire import providers
            from agentfire.config import load_runbook

            rb = runbook or load_runbook(config)
            built = _STORES[config] = (rb, providers.build("budget", rb.budget, rb))
        rb, store = built
        return store.read(scope or rb.agent.name)
    except Exception as exc:  # fail closed on anything at all
        from agentfire.errors import AgentfireError

        why = str(exc) if isinstance(exc, AgentfireError) else f"{type(exc).__name__}: {exc}"
        return Caps(scope or "?", error=f"spend caps unreadable ({why}): failing closed")


@dataclass(frozen=True)
class BudgetDecision:
    allowed: bool
    verdict: str | None  # None, or what check_budget said
    reason: str
    caps: "Caps"

    def __bool__(self) -> bool:
        return self.allowed


def budget_allows(spent_usd: float, *, starting: bool = False, scope: str | None = None,
                  config: str | None = None) -> BudgetDecision:
    """load_caps + check_budget with a sentence for the logs: `if not d: stop(d.reason)`."""
    caps = load_caps(scope, config=config)
    now = time.time()  # one instant for the verdict and its reason (an expiry may pass between)
    verdict = check_budget(spent_usd, caps, starting=starting, now=now)
    if verdict is None:
        return BudgetDecision(True, None, "within caps", caps)
    if verdict == UNREADABLE:
        reason = caps.error or "caps unreadable"
    else:
        eff = caps.effective(now)
        if verdict == HARD_CAP:
            reason = f"spent ${spent_usd:.4f} reached the hard cap ${eff.hard_usd:.4f}"
        elif verdict == FREEZE:
            reason = f"spent ${spent_usd:.4f} reached the freeze cap ${eff.freeze_usd:.4f}"
        else:
            reason = f"admission for scope {caps.scope!r} is frozen: no new trajectory"
    return BudgetDecision(False, verdict, reason, caps)
