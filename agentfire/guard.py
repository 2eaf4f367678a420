"""The agent's side: what an agent process imports before it acts.

    from agentfire import guard

    decision = guard.agent_enabled(context={"targetingKey": user_id})
    if not decision:
        return decision.fallback               # the approved message for users

The flag is evaluated in memory through the region's OpenFeature provider (flagd file, the
LaunchDarkly server SDK with an SDK key, the Unleash client with a backend token, or any provider
runbook.yaml names), created once per process and reused: microseconds per call in steady state.
Fails closed: if the flag cannot be evaluated (provider not ready, file corrupt, source failing
longer than max_stale_seconds, unknown flag, a non-boolean value, config broken), the agent is off
and the fallback is served. Agents never hold an admin or write token.

Spend caps, checked *before* each model call (checking after means the call that put you over is
already paid for):

    caps = guard.load_caps()                  # cached at most 1 s; never raises
    stop = guard.check_budget(spent_usd, caps, starting=(calls_so_far == 0))
    if stop:                                  # "hard_cap" | "freeze" | "frozen" | "unreadable"
        ...                                   # no model call; caps.error says why if unreadable
"""

from __future__ import annotations

import math
import os
import threading
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

    def __post_init__(self) -> None:
        # reasons go to the agent's logs: a provider's error text may echo a key we sent
        from agentfire.secrets import redact

        object.__setattr__(self, "reason", redact(self.reason))

    def __bool__(self) -> bool:
        return self.enabled


class _Region:
    """One region's agent-side state in this process: the OpenFeature source and the fallback."""

    __slots__ = ("source", "fallback", "approved", "error")

    def __init__(self, source: Any, fallback: str | None, approved: bool, error: str | None = None):
        self.source = source
        self.fallback = fallback
        self.approved = approved
        self.error = error


# (config argument, $AGENTFIRE_CONFIG, cwd when neither) -> (runbook path, its stat signature,
# runbook, {region: _Region}, [last checked]); rebuilt only when runbook.yaml changes (checked
# with one stat at most once a second)
_AGENTS: dict[tuple[Any, ...], tuple[Any, Any, Any, dict[str, _Region], list[float]]] = {}
_AGENTS_LOCK = threading.Lock()
_OFF = "kill switch is off"
RUNBOOK_RECHECK_S = 1.0  # a changed runbook.yaml is picked up within this long


def _sig(path: Any) -> Any:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def forget_agents() -> None:
    """Close every agent-side provider and forget it (done automatically in a forked child:
    a provider's threads and sockets do not survive a fork)."""
    with _AGENTS_LOCK:
        entries = list(_AGENTS.values())
        _AGENTS.clear()
    for _path, _sig_, _rb, regions, _checked in entries:
        for reg in regions.values():
            if reg.source is not None:
                reg.source.close()


def _forget_agents_in_child() -> None:
    _AGENTS.clear()  # the parent's providers (and their threads) are not ours to close


def agent_enabled(
    region: str | None = None, *, context: Any = None, config: str | None = None,
    runbook: Any = None, timeout_s: float | None = None,
    fallback_path: str | os.PathLike[str] | None = None,
) -> AgentDecision:
    """Whether the agent may act in `region` (default: the first region of runbook.yaml), for
    `context` (a dict with `targetingKey` and attributes, or an OpenFeature EvaluationContext;
    default: the region's `agent_context`).

    Evaluated in memory through the region's OpenFeature provider, created once per process and
    reused (flagd file, LaunchDarkly server SDK, Unleash client, or the provider runbook.yaml
    names), with default off: anything but a boolean True (an error, a provider not ready yet, an
    unknown flag, a non-boolean value) is off, with the reason. The first call waits at most the
    region's `init_timeout_seconds` (or `timeout_s`) for the provider; later calls never wait.

    `fallback_path`: the approved fallback the agent ships with, served when runbook.yaml itself
    cannot be read (otherwise the runbook's agent.fallback is served).
    """
    try:
        key = (config, None if config else os.environ.get("AGENTFIRE_CONFIG"),
               None if config or runbook is not None or os.environ.get("AGENTFIRE_CONFIG") else os.getcwd(),
               id(runbook) if runbook is not None else None)
        entry = _AGENTS.get(key)
        if entry is None:
            entry = _load_agent(key, config, runbook)
        elif runbook is None:
            now = time.monotonic()
            if now - entry[4][0] >= RUNBOOK_RECHECK_S:  # runbook.yaml changed? (one stat a second)
                entry[4][0] = now
                if _sig(entry[0]) != entry[1]:
                    entry = _load_agent(key, config, runbook)
        rb = entry[2]
        regions = entry[3]
        name = region or next(iter(rb.regions))
        reg = regions.get(name)
        if reg is None:
            reg = _region(entry, name, timeout_s)
        if reg.error is not None:
            return AgentDecision(False, reg.error, reg.fallback, reg.approved)
        verdict = reg.source.evaluate(context)
        if verdict.on:
            return AgentDecision(True, "flag on")
        reason = verdict.reason if not verdict.error else f"{verdict.reason}: failing closed"
        return AgentDecision(False, _OFF if reason.startswith(_OFF) else reason, reg.fallback, reg.approved)
    except Exception as exc:  # fail closed on anything at all
        fallback, approved = _shipped_fallback(fallback_path) if fallback_path is not None else (None, False)
        from agentfire.errors import AgentfireError

        why = str(exc) if isinstance(exc, AgentfireError) else f"{type(exc).__name__}: {exc}"
        return AgentDecision(False, f"flag unreadable ({why}): failing closed", fallback, approved)


def _ctx(context: Any) -> Any:
    from agentfire.agentside import _context

    return _context(context)


def _shipped_fallback(path: Any) -> tuple[str | None, bool]:
    try:
        from pathlib import Path

        from agentfire.fallbacks import parse_fallback

        shipped = parse_fallback(Path(path))
        return (shipped.text or None), shipped.approved
    except Exception:  # noqa: BLE001
        return None, False


def _load_agent(key: tuple[Any, ...], config: Any, runbook: Any) -> Any:
    from agentfire.config import load_runbook

    with _AGENTS_LOCK:
        old = _AGENTS.pop(key, None)
    if old is not None:  # runbook.yaml changed: its regions' providers are rebuilt
        for reg in old[3].values():
            if reg.source is not None:
                reg.source.close()
    rb = runbook or load_runbook(config)
    entry = (rb.path, _sig(rb.path), rb, {}, [time.monotonic()])
    with _AGENTS_LOCK:
        _AGENTS[key] = entry
    return entry


def _region(entry: Any, name: str, timeout_s: float | None) -> _Region:
    from agentfire.fallbacks import load_fallback

    rb, regions = entry[2], entry[3]
    fallback, approved = None, False
    try:
        fb = load_fallback(rb)
        if fb is not None:
            fallback, approved = (fb.text or None), fb.approved
    except Exception:  # noqa: BLE001 - no fallback is still off
        pass
    if name not in rb.regions:
        reg = _Region(None, fallback, approved, f"unknown region {name!r}: failing closed")
    else:
        from agentfire import agentside

        try:
            source = agentside.make_source(name, rb.regions[name], rb)
        except Exception as exc:  # noqa: BLE001
            reg = _Region(None, fallback, approved,
                          f"flag unreadable ({agentside._describe(exc)}): failing closed")
        else:
            source.wait_ready(source.init_timeout_s if timeout_s is None else timeout_s)
            reg = _Region(source, fallback, approved)
    with _AGENTS_LOCK:
        regions[name] = reg
    return reg


# --- spend caps -------------------------------------------------------------------------------

MAX_CACHE_AGE_S = 1.0  # the guard never acts on caps older than this
HARD_CAP, FREEZE, FROZEN, UNREADABLE = "hard_cap", "freeze", "frozen", "unreadable"

# (config, scope) -> (monotonic time fetched, Caps); failures are cached too (from when the read
# gave up), so a down or hung store is asked at most once per interval per process, and refuses
# meanwhile: no call pays more than the store's timeout, and at most one per interval does.
_CAPS_CACHE: dict[tuple[str | None, str | None], tuple[float, "Caps"]] = {}
# config -> (runbook, budget store), built on the first miss; a child process builds its own
_STORES: dict[str | None, tuple[Any, Any]] = {}


def forget_caps() -> None:
    """Drop cached caps and store connections (done automatically in a forked child)."""
    _CAPS_CACHE.clear()
    _STORES.clear()  # a connection (sqlite, redis socket) must not be shared with the parent


os.register_at_fork(after_in_child=forget_caps)
os.register_at_fork(after_in_child=_forget_agents_in_child)


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
    if not _finite(spent_usd):
        return HARD_CAP  # NaN compares False with every cap: it would allow every call
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


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(x) and not isinstance(x, bool)
    except TypeError:
        return False


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
    # good caps are stamped with the time *before* the read (never served older than max age);
    # a failure with the time *after* it: a store that answers nothing within its timeout would
    # otherwise be asked again on every call, each call paying the whole timeout
    _CAPS_CACHE[key] = (now if caps.error is None else time.monotonic(), caps)
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
        if verdict == HARD_CAP and not _finite(spent_usd):
            reason = f"spent {spent_usd!r} is not a finite number: failing closed"
        elif verdict == HARD_CAP:
            reason = f"spent ${spent_usd:.4f} reached the hard cap ${eff.hard_usd:.4f}"
        elif verdict == FREEZE:
            reason = f"spent ${spent_usd:.4f} reached the freeze cap ${eff.freeze_usd:.4f}"
        else:
            reason = f"admission for scope {caps.scope!r} is frozen: no new trajectory"
    return BudgetDecision(False, verdict, reason, caps)
