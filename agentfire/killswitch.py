"""Minute one: the kill switch, across every region at once.

Per region, concurrently: snapshot the live state, turn the flag off, read it back, classify.
Nothing is reported CONFIRMED without a read-back (DESIGN.md rule 1); an overall deadline means one
hung region cannot hang the command, and the regions that did finish are still reported. The
journal records each region's "before", so `undo` turns back on exactly what this incident turned
off.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from agentfire import providers
from agentfire.runbook import Runbook
from agentfire.errors import AgentfireError, ConfigError, StateFileError, UsageError
from agentfire.secrets import MissingSecret
from agentfire.journal import Journal
from agentfire.providers.flags import (
    PROGRESS, FlagError, FlagProvider, Outcome, RegionProgress, WriteResult, in_thread,
)

ProgressHook = Callable[[str, str], None]  # (region, phase) for a live display


@dataclass
class RegionResult:
    region: str
    provider: str
    outcome: Outcome
    before: bool | None = None
    after: bool | None = None
    latency_ms: int = 0
    detail: str = ""
    wrote: bool = False  # a write was sent (so an undo has something to restore)
    # the flag evaluated as an agent evaluates it (OpenFeature provider, agent context), after a
    # kill: {"on": bool | None, "detail": str, "seconds": float}; None when not evaluated
    agent_view: dict[str, Any] | None = None
    agents_see: str | None = None  # how fast agents see the change (provider's propagation)
    agents_see_s: float | None = None  # ... as a bound in seconds, when the provider has one

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["outcome"] = self.outcome.value
        d.pop("wrote")
        return d


@dataclass
class FlipResult:
    incident: str
    flag: str
    action: str  # "kill" or "undo"
    regions: list[RegionResult]
    dry_run: bool = False
    fallback: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    journal_error: str | None = None  # the flips happened but could not be journaled
    interrupted: bool = False  # Ctrl-C stopped it; what finished is reported and journaled
    live: dict[str, bool | None] | None = None  # undo: regions this incident turned off, read now

    @property
    def all_restored(self) -> bool:
        """undo: every region this incident turned off reads ON now (a live read), and no
        targeted region failed."""
        if not self.ok:
            return False
        if self.live is None:
            return True
        return all(v is True for v in self.live.values())

    @property
    def ok(self) -> bool:
        return all(r.outcome.ok for r in self.regions)

    @property
    def all_off(self) -> bool:
        return (
            not self.dry_run
            and self.action == "kill"
            and all(r.outcome in (Outcome.CONFIRMED, Outcome.ALREADY_OFF) for r in self.regions)
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "incident": self.incident,
            "flag": self.flag,
            "regions": [r.to_json() for r in self.regions],
        }
        if self.action == "kill":
            out["all_off"] = self.all_off
        else:
            out["all_restored"] = self.all_restored
            if self.live is not None:
                out["live"] = self.live
        out["dry_run"] = self.dry_run
        if self.interrupted:
            out["interrupted"] = True
        out["fallback"] = self.fallback
        out["warnings"] = self.warnings
        return out


@dataclass
class RegionStatus:
    region: str
    provider: str
    on: bool | None
    detail: str = ""


# env variables only agents need (their SDK key, backend token): the on-call's kill does not
# require them; when set, the read-back also evaluates the flag with them
AGENT_SIDE_ENV = frozenset({"client_token_env", "sdk_key_env"})


def check_env(runbook: Runbook, names: list[str]) -> None:
    """Every env variable the targeted regions name is set: a ConfigError before anything is
    asked, opened or journaled (a half-started kill is worse than a clear refusal)."""
    missing = [
        f"${value} is not set ({field} of region {name})"
        for name in names
        for field, value in runbook.regions[name].model_dump().items()
        if field.endswith("_env") and field not in AGENT_SIDE_ENV and isinstance(value, str)
        and not os.environ.get(value)
    ]
    if missing:
        raise ConfigError("environment variable " + "; ".join(missing))


def build_providers(runbook: Runbook, names: list[str]) -> dict[str, FlagProvider]:
    return {n: providers.build("flags", runbook.regions[n], runbook) for n in names}


AgentCheck = Callable[[str], Any]  # region -> awaitable AgentView (the flag as agents see it)


def _agent_checker(runbook: Runbook, deadline_s: float, *, on_this_thread: bool = False) -> AgentCheck:
    """The read-back as an agent evaluates the flag: a fresh OpenFeature provider for the region
    (agentfire.agentside), for the region's agent context, until it says off or the kill's
    deadline is near (a polling source sees the change at its next fetch)."""
    ends = time.monotonic() + deadline_s

    async def check(name: str) -> Any:
        from agentfire import agentside

        budget = max(0.5, ends - time.monotonic() - 0.5)
        if on_this_thread:  # _flip_files: already the region's own daemon thread
            return agentside.agent_view(runbook, name, timeout_s=budget, want_on=False)
        # a daemon thread (in_thread): an agent-side read that hangs cannot hold the command
        return await in_thread(agentside.agent_view, runbook, name, timeout_s=budget, want_on=False)

    return check


def _apply_agent_view(res: RegionResult, view: Any) -> None:
    res.agent_view = {"on": view.on, "detail": view.detail, "seconds": round(view.seconds, 3)}
    if view.on is True:
        res.outcome = Outcome.MISMATCH
        res.after = True
        res.detail = (f"the API reads off, but an agent evaluating the flag is served ON "
                      f"({view.detail}); {res.detail}").strip("; ")


def build_each(runbook: Runbook, names: list[str]) -> tuple[dict[str, FlagProvider], dict[str, FlagError]]:
    """Build every region's provider; a region that cannot be built (its token's variable unset,
    a path naming an unset variable) is that region's failure, never the others': a missing
    credential is an AUTH row while the other regions are killed."""
    built: dict[str, FlagProvider] = {}
    failed: dict[str, FlagError] = {}
    for n in names:
        try:
            built[n] = providers.build("flags", runbook.regions[n], runbook)
        except MissingSecret as exc:
            failed[n] = FlagError(Outcome.AUTH, f"{exc}; nothing was sent to this region")
        except AgentfireError as exc:
            failed[n] = FlagError(Outcome.ERROR, f"{exc}; nothing was sent to this region")
    return built, failed


async def _flip_region(
    name: str, provider: FlagProvider, flag: str, *, want_on: bool, comment: str,
    dry_run: bool, progress: dict[str, RegionResult], marks: dict[str, RegionProgress],
    hook: ProgressHook | None, agent_check: AgentCheck | None = None,
) -> RegionResult:
    res = progress[name]
    started = time.monotonic()
    PROGRESS.set(marks[name])  # this task's context: seen by the provider (and its thread)
    try:
        if hook:
            hook(name, "reading")
        res.before = await provider.read(flag)
        if res.before == want_on:
            res.outcome = Outcome.ALREADY_ON if want_on else Outcome.ALREADY_OFF
            res.after = res.before
            res.detail = "no change needed"
            if agent_check is not None and not want_on and not dry_run:
                if hook:
                    hook(name, "evaluating as an agent")
                _apply_agent_view(res, await agent_check(name))
            return res
        if hook:
            hook(name, "writing")
        wrote: WriteResult = await provider.write(flag, want_on, comment=comment, dry_run=dry_run)
        if dry_run:
            res.outcome = Outcome.DRY_RUN
            res.after = res.before
            res.detail = wrote.detail or f"would turn {'on' if want_on else 'off'}"
            return res
        if wrote.pending:
            res.outcome = Outcome.PENDING_APPROVAL
            res.detail = wrote.detail
            res.after = await _try_read(provider, flag)
            return res
        if hook:
            hook(name, "reading back")
        res.after = await provider.read(flag)
        if res.after == want_on:
            res.outcome = Outcome.CONFIRMED
            res.detail = wrote.detail
            if agent_check is not None and not want_on:
                if hook:
                    hook(name, "evaluating as an agent")
                _apply_agent_view(res, await agent_check(name))
        else:
            res.outcome = Outcome.MISMATCH
            note = getattr(provider, "served_notes", {}).get(flag)
            res.detail = (f"wrote, but read back {'on' if res.after else 'off'}"
                          f"{f' ({note})' if note else ''}; {wrote.detail}").strip("; ")
    except FlagError as exc:
        res.outcome = exc.outcome
        res.detail = exc.detail
    # (asyncio.CancelledError is a BaseException: it passes through to the waiting _flip_all)
    except Exception as exc:  # a provider bug must not hide the other regions' results
        res.outcome = Outcome.ERROR
        res.detail = f"{type(exc).__name__}: {exc}"
    finally:
        res.wrote = marks[name].sent and not dry_run
        res.latency_ms = int((time.monotonic() - started) * 1000)
        if hook:
            hook(name, "done")
    return res


async def _try_read(provider: FlagProvider, flag: str) -> bool | None:
    try:
        return await provider.read(flag)
    except FlagError:
        return None


def _start_rows(provs: dict[str, FlagProvider], failed: dict[str, FlagError], deadline_s: float) -> tuple[
        list[str], dict[str, str], dict[str, RegionResult], float, dict[str, RegionProgress]]:
    """What _flip_all and _flip_files start from: the regions in order, their kinds, a TIMEOUT
    row for each (a region that failed before the flip says why), the start and each region's
    deadline mark."""
    order = list(dict.fromkeys([*provs, *failed]))
    kinds = {n: p.kind for n, p in provs.items()}
    progress = {n: RegionResult(region=n, provider=kinds.get(n, "?"), outcome=Outcome.TIMEOUT)
                for n in order}
    for n, exc in failed.items():
        progress[n].outcome, progress[n].detail = exc.outcome, exc.detail
    started = time.monotonic()
    return order, kinds, progress, started, {n: RegionProgress(deadline=started + deadline_s) for n in provs}


def _unfinished(r: RegionResult, mark: Any, started: float, deadline_s: float, interrupted: bool,
                dry_run: bool) -> None:
    """A region that did not finish by the deadline (or by Ctrl-C): TIMEOUT or INTERRUPTED,
    saying what it was doing and whether a write was sent."""
    r.outcome = Outcome.INTERRUPTED if interrupted else Outcome.TIMEOUT
    r.latency_ms = int((time.monotonic() - started) * 1000)
    r.wrote = mark.sent and not dry_run
    why = ("interrupted (Ctrl-C) after " + f"{r.latency_ms / 1000:.1f}s" if interrupted
           else f"no answer within the {deadline_s:g}s deadline")
    r.detail = (
        why + (f", while {mark.doing}" if mark.doing else "")
        + ("; a write was sent and is not confirmed" if r.wrote else "; no write was sent")
    )


async def _flip_all(
    provs: dict[str, FlagProvider], flag: str, *, want_on: dict[str, bool], comment: str,
    dry_run: bool, deadline_s: float, hook: ProgressHook | None,
    agent_check: AgentCheck | None = None,
    failed: dict[str, FlagError] | None = None,
) -> tuple[list[RegionResult], bool]:
    """Flip every region concurrently within `deadline_s`. Returns (results, interrupted).

    Whatever a region does (a file that blocks, a lock held elsewhere, a hung server), the
    command returns at the deadline; Ctrl-C (SIGINT cancels this task) stops the waiting too.
    Either way every region that finished keeps its result, so it is reported and journaled,
    and the others say what they were doing and whether a write was sent."""
    import asyncio

    order, kinds, progress, started, marks = _start_rows(provs, failed or {}, deadline_s)
    # HTTP providers' retries stop before the deadline (each task copies this context); _http is
    # loaded only if an HTTP provider was built, so a flagd-only kill never imports httpx
    http = sys.modules.get("agentfire._http")
    if http is not None:
        http.DEADLINE.set(started + deadline_s)
    tasks = {
        asyncio.create_task(
            _flip_region(n, p, flag, want_on=want_on[n], comment=comment, dry_run=dry_run,
                         progress=progress, marks=marks, hook=hook, agent_check=agent_check)
        ): n
        for n, p in provs.items()
    }
    interrupted = False
    try:
        try:
            if tasks:
                await asyncio.wait(tasks, timeout=deadline_s)
        except asyncio.CancelledError:  # Ctrl-C: stop waiting, report what finished
            interrupted = True
            me = asyncio.current_task()
            if me is not None:
                me.uncancel()
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            marks[tasks[t]].gave_up.set()
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for t in pending:
            n = tasks[t]
            _unfinished(progress[n], marks[n], started, deadline_s, interrupted, dry_run)
    finally:
        closing = asyncio.gather(*(p.aclose() for p in provs.values()), return_exceptions=True)
        try:
            await asyncio.wait_for(closing, 2.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
    return [progress[n] for n in order], interrupted


class _FileNow:
    """A flagd file provider whose async methods never suspend (no event loop needed): each
    call is the blocking file I/O itself, made on the region's own daemon thread (_flip_files)."""

    def __init__(self, provider: Any):
        self._p = provider
        self.kind, self.target = provider.kind, provider.target

    async def read(self, flag: str) -> bool:
        from agentfire.providers.flags.flagd import _flag_errors

        return _flag_errors(self._p.read_sync, flag)

    async def write(self, flag: str, on: bool, *, comment: str, dry_run: bool) -> WriteResult:
        from agentfire.providers.flags.flagd import _flag_errors

        return _flag_errors(self._p.write_sync, flag, on, comment=comment, dry_run=dry_run)


def _only_files(provs: dict[str, FlagProvider]) -> bool:
    """Every region a flagd file (exactly that class: a provider built on it may well await)."""
    from agentfire.providers.flags.flagd import FlagdFileProvider

    return bool(provs) and all(type(p) is FlagdFileProvider for p in provs.values())


def _flip_files(
    provs: dict[str, FlagProvider], flag: str, *, want_on: dict[str, bool], comment: str,
    dry_run: bool, deadline_s: float, hook: ProgressHook | None,
    agent_check: AgentCheck | None = None,
    failed: dict[str, FlagError] | None = None,
) -> tuple[list[RegionResult], bool]:
    """_flip_all for flagd files without asyncio (its import and loop: ~30 ms of a kill): each
    region's _flip_region runs to its end on its own daemon thread, as in_thread runs each of
    its file operations. The same deadline (a region still busy at it is TIMEOUT, saying what it
    was doing and whether a write was sent; `gave_up` stops its late write), Ctrl-C the same
    (INTERRUPTED rows, what finished kept), and a late thread never changes a reported row."""
    import copy
    import threading

    order, kinds, progress, started, marks = _start_rows(provs, failed or {}, deadline_s)
    working = {n: RegionResult(region=n, provider=kinds[n], outcome=Outcome.TIMEOUT) for n in provs}
    finished: dict[str, RegionResult] = {}

    def run(n: str, p: FlagProvider) -> None:
        coro = _flip_region(n, _FileNow(p), flag, want_on=want_on[n], comment=comment, dry_run=dry_run,
                            progress=working, marks=marks, hook=hook, agent_check=agent_check)
        try:
            coro.send(None)
        except StopIteration as done:
            finished[n] = done.value
        else:  # cannot happen: nothing in it suspends
            coro.close()

    threads = [threading.Thread(target=run, args=(n, p), name="agentfire-blocking-io", daemon=True)
               for n, p in provs.items()]
    interrupted = False
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, started + deadline_s - time.monotonic()))
    except KeyboardInterrupt:  # Ctrl-C: stop waiting, report what finished
        interrupted = True
    done = dict(finished)  # what finished by now; a later answer is not reported
    for n in provs:
        if n in done:
            progress[n] = done[n]
            continue
        marks[n].gave_up.set()
        r = copy.copy(working[n])  # as far as it got (the read before a hung write)
        _unfinished(r, marks[n], started, deadline_s, interrupted, dry_run)
        progress[n] = r
    return [progress[n] for n in order], interrupted


def flip_regions(runbook: Runbook, names: list[str], *, on: bool, comment: str) -> list[RegionResult]:
    """Set the flag in `names` with read-back, unjournaled: for callers that journal it their
    own way (a gameday arming the kill switch)."""
    import asyncio

    provs, failed = build_each(runbook, names)
    results, _ = asyncio.run(_flip_all(provs, runbook.agent.flag, want_on={n: on for n in names},
                                       comment=comment, dry_run=False, failed=failed,
                                       deadline_s=runbook.model.kill.deadline_seconds, hook=None))
    return results


def _fallback_info(runbook: Runbook) -> tuple[dict[str, Any] | None, list[str]]:
    from agentfire.fallbacks import load_fallback

    fb = load_fallback(runbook)
    if fb is None or not fb.approved:
        why = "no fallback is configured" if fb is None else fb.problem
        return (fb.to_json() if fb else None), [
            f"NO APPROVED FALLBACK: {why}. Users will get whatever the agent's code does when "
            "the flag is off; write one in fallbacks/ and have it approved."
        ]
    return fb.to_json(), []


MAX_DEADLINE_S = 3600.0


def check_deadline(deadline_s: float | None, runbook: Runbook) -> float:
    """The overall deadline: the given one (a finite number of seconds in (0, 3600]) or the
    runbook's. NaN passes every comparison and infinity never ends: both are usage errors."""
    if deadline_s is None:
        return runbook.model.kill.deadline_seconds
    if not (isinstance(deadline_s, (int, float)) and math.isfinite(deadline_s)
            and 0 < deadline_s <= MAX_DEADLINE_S):
        raise UsageError(f"--deadline: {deadline_s!r} is not a number of seconds in (0, {MAX_DEADLINE_S:g}]")
    return float(deadline_s)


def kill(
    runbook: Runbook, journal: Journal, *, region_spec: str = "all", actor: str,
    reason: str = "", dry_run: bool = False, deadline_s: float | None = None,
    hook: ProgressHook | None = None,
) -> FlipResult:
    names = runbook.select_regions(region_spec)
    deadline_s = check_deadline(deadline_s, runbook)
    flag = runbook.agent.flag
    provs, failed = build_each(runbook, names)
    comment = f"agentfire kill ({journal.incident}) by {actor}" + (f": {reason}" if reason else "")
    started = time.monotonic()
    if _only_files(provs):  # no event loop (issue 15)
        results, interrupted = _flip_files(
            provs, flag, want_on={n: False for n in names}, comment=comment, dry_run=dry_run,
            deadline_s=deadline_s, hook=hook, failed=failed,
            agent_check=None if dry_run else _agent_checker(runbook, deadline_s, on_this_thread=True))
    else:
        import asyncio

        results, interrupted = asyncio.run(
            _flip_all(provs, flag, want_on={n: False for n in names}, comment=comment,
                      dry_run=dry_run, deadline_s=deadline_s, hook=hook, failed=failed,
                      agent_check=None if dry_run else _agent_checker(runbook, deadline_s))
        )
    _agents_see(runbook, results)
    fallback, warnings = _fallback_info(runbook)
    result = FlipResult(journal.incident, flag, "kill", results, dry_run, fallback, warnings,
                        interrupted=interrupted)
    if not dry_run:
        _journal(result, journal, "kill", actor=actor, flag=flag, reason=reason,
                 regions=[{**r.to_json(), "wrote": r.wrote} for r in results],
                 outcome="interrupted" if interrupted else "all_off" if result.all_off else "incomplete",
                 duration_ms=int((time.monotonic() - started) * 1000))
    return result


def _agents_see(runbook: Runbook, results: list[RegionResult]) -> None:
    """How fast agents see the change in each region (the provider's propagation), for the
    on-call: a polling SDK keeps serving the old value until its next fetch."""
    from agentfire import agentside

    for r in results:
        r.agents_see, r.agents_see_s = agentside.propagation(runbook.regions[r.region], runbook)


def agents_see_line(results: list[RegionResult]) -> str:
    """'agents see this within ~N s: us-east LaunchDarkly streaming; eu-west Unleash polls every 15 s'."""
    shown = [r for r in results if r.agents_see and r.outcome.value in ("CONFIRMED", "ALREADY_OFF", "ALREADY_ON")]
    if not shown:
        return ""
    bounds = [r.agents_see_s for r in shown]
    within = "?" if any(b is None for b in bounds) else f"{max(b for b in bounds if b is not None):g}"
    return f"agents see this within ~{within} s: " + "; ".join(f"{r.region}: {r.agents_see}" for r in shown)


def _journal(result: FlipResult, journal: Journal, action: str, **fields: Any) -> None:
    """Journal a flip that already happened. A journal that cannot be written must not hide
    what was flipped (the engineer still gets the per-region report): it becomes a loud
    warning and `journal_error`, which the CLI turns into exit 1."""
    try:
        journal.append(action, **fields)
    except (StateFileError, OSError) as exc:
        result.journal_error = str(exc)
        result.warnings.append(
            f"JOURNAL NOT WRITTEN ({exc}): the flips above happened but are not recorded, "
            f"so `kill --undo` for {journal.incident} will not know about them"
        )


def _kill_events(journal: Journal) -> list[tuple[str, int, str, dict[str, Any]]]:
    """(ts, position, action, region row) for every region row of every kill and undo, in time
    order (ts; the journal's order breaks ties): two on-calls killing at once journal in the
    order they finished, not the order they wrote."""
    events = []
    for pos, e in enumerate(journal.iter_entries()):
        if e.get("action") in ("kill", "kill.undo"):
            for r in e.get("regions") or []:
                events.append((str(e.get("ts")), pos, e["action"], r))
    events.sort(key=lambda ev: (ev[0], ev[1]))
    return events


def _turned_off_row(r: dict[str, Any]) -> bool:
    """A kill row that turned the region off: it read the region on and sent a write."""
    return r.get("before") is True and bool(r.get("wrote"))


def regions_to_restore(journal: Journal) -> dict[str, str]:
    """Regions this incident turned off and has not restored since (region -> when), from the
    journaled snapshots.

    A region is restored if ANY kill of this incident read it on and sent a write, whatever an
    earlier kill found (a first kill that could not read it, a second on-call's kill that found
    it already off); a region only ever found off stays off. A confirmed undo later in time
    removes it; a kill after that undo adds it again.
    """
    turned_off: dict[str, str] = {}
    for ts, _pos, action, r in _kill_events(journal):
        name = r.get("region")
        if action == "kill" and _turned_off_row(r):
            turned_off[name] = ts
        elif action == "kill.undo" and r.get("outcome") in ("CONFIRMED", "ALREADY_ON"):
            turned_off.pop(name, None)
    return turned_off


def ever_turned_off(journal: Journal) -> set[str]:
    """Every region any kill of this incident turned off (restored since or not)."""
    return {r.get("region") for _ts, _pos, action, r in _kill_events(journal)
            if action == "kill" and _turned_off_row(r)}


def latest_incident_to_undo(journal_dir: Any) -> str:
    """For a bare `kill --undo`: the most recent incident that turned a region off and has not
    restored it. Refuses (naming the latest incident with a kill) when there is none, rather
    than picking an incident whose kill turned nothing off and answering "all restored"."""
    from agentfire.journal import list_incidents

    latest_kill: str | None = None
    for incident in list_incidents(journal_dir):
        j = Journal(journal_dir, incident)
        if not any(e.get("action") == "kill" for e in j.iter_entries()):
            continue
        latest_kill = latest_kill or incident
        if regions_to_restore(j):
            return incident
    if latest_kill is None:
        raise UsageError("no incident has a kill to undo; pass --incident ID")
    raise UsageError(
        f"no incident has a region left to turn back on: the latest kill (incident {latest_kill}) "
        "turned nothing off that is not already restored; pass --incident ID to undo a "
        "particular incident")


def undo(
    runbook: Runbook, journal: Journal, *, region_spec: str = "all", actor: str,
    reason: str = "", dry_run: bool = False, deadline_s: float | None = None,
    hook: ProgressHook | None = None,
) -> FlipResult:
    if not journal.exists():
        raise UsageError(f"incident {journal.incident} has no journal at {journal.path}")
    names = runbook.select_regions(region_spec)
    to_restore = regions_to_restore(journal)
    ours = ever_turned_off(journal)
    flag = runbook.agent.flag
    # a re-run undo must not claim "this incident did not turn it off" about what it restored
    restored = {r.get("region"): ts for ts, _p, action, r in _kill_events(journal)
                if action == "kill.undo" and r.get("outcome") == "CONFIRMED"}
    skipped = [
        RegionResult(n, runbook.regions[n].kind, Outcome.SKIPPED,
                     detail=f"already restored by this incident's undo at {restored[n]}" if n in restored
                     else "this incident did not turn it off (it was off before, or never written)")
        for n in names if n not in to_restore
    ]
    active = [n for n in names if n in to_restore]
    deadline_s = check_deadline(deadline_s, runbook)
    comment = f"agentfire kill --undo ({journal.incident}) by {actor}" + (f": {reason}" if reason else "")
    started = time.monotonic()
    results: list[RegionResult] = []
    interrupted = False
    if active:
        provs, failed = build_each(runbook, active)
        flip = _flip_files if _only_files(provs) else None  # flagd files: no event loop (issue 15)
        if flip is not None:
            results, interrupted = flip(provs, flag, want_on={n: True for n in active}, comment=comment,
                                        dry_run=dry_run, deadline_s=deadline_s, hook=hook, failed=failed)
        else:
            import asyncio

            results, interrupted = asyncio.run(
                _flip_all(provs, flag, want_on={n: True for n in active}, comment=comment,
                          dry_run=dry_run, deadline_s=deadline_s, hook=hook, failed=failed)
            )
        _agents_see(runbook, results)
    by_name = {r.region: r for r in [*results, *skipped]}
    ordered = [by_name[n] for n in names]
    result = FlipResult(journal.incident, flag, "undo", ordered, dry_run, interrupted=interrupted)
    # all_restored comes from a live read of every region this incident ever turned off, not from
    # what this run did: a region restored earlier and turned off since is not "restored"
    check = [n for n in names if n in ours]
    if check and not dry_run and not interrupted:
        left = max(1.0, deadline_s - (time.monotonic() - started))
        live = {s.region: s for s in status(runbook, region_spec=",".join(check), deadline_s=left)}
        result.live = {n: live[n].on for n in check}
        for n in check:
            r = by_name[n]
            if r.outcome is Outcome.SKIPPED and live[n].on is not True:
                r.detail += f"; but it reads {'OFF' if live[n].on is False else 'UNKNOWN'} now"
    if not dry_run:
        _journal(result, journal, "kill.undo", actor=actor, flag=flag, reason=reason,
                 regions=[{**r.to_json(), "wrote": r.wrote} for r in ordered],
                 live=result.live,
                 outcome="interrupted" if interrupted else "restored" if result.all_restored else "incomplete",
                 duration_ms=int((time.monotonic() - started) * 1000))
    return result


async def _status_all(provs: dict[str, FlagProvider], flag: str, deadline_s: float) -> list[RegionStatus]:
    import asyncio

    started = time.monotonic()

    async def one(name: str, p: FlagProvider) -> RegionStatus:
        PROGRESS.set(RegionProgress(deadline=started + deadline_s))
        try:
            return RegionStatus(name, p.kind, await p.read(flag), p.target)
        except FlagError as exc:
            return RegionStatus(name, p.kind, None, f"{exc.outcome.value}: {exc.detail}")
        except Exception as exc:
            return RegionStatus(name, p.kind, None, f"ERROR: {type(exc).__name__}: {exc}")

    tasks = {asyncio.create_task(one(n, p)): n for n, p in provs.items()}
    try:
        done, pending = await asyncio.wait(tasks, timeout=deadline_s)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        out = {}
        for t, n in tasks.items():
            if t in done:
                out[n] = t.result()
            else:
                out[n] = RegionStatus(n, provs[n].kind, None, f"TIMEOUT: no answer within {deadline_s:g}s")
    finally:
        closing = asyncio.gather(*(p.aclose() for p in provs.values()), return_exceptions=True)
        try:
            await asyncio.wait_for(closing, 2.0)
        except asyncio.TimeoutError:
            pass
    return [out[n] for n in provs]


def _status_files(provs: dict[str, Any], flag: str, deadline_s: float) -> list[RegionStatus]:
    """_status_all for flagd files, without asyncio (its import and loop are a fifth of a
    `status`): each file read on its own daemon thread, as in_thread does under the loop, the
    same rows, and a file that blocks past the deadline is its TIMEOUT row (the thread is left
    behind, as a cancelled in_thread leaves it)."""
    import threading

    from agentfire.providers.flags.flagd import _flag_errors

    started = time.monotonic()
    out: dict[str, RegionStatus] = {}

    def one(name: str, p: Any) -> None:
        PROGRESS.set(RegionProgress(deadline=started + deadline_s))
        try:
            row = RegionStatus(name, p.kind, _flag_errors(p.read_sync, flag), p.target)
        except FlagError as exc:
            row = RegionStatus(name, p.kind, None, f"{exc.outcome.value}: {exc.detail}")
        except Exception as exc:
            row = RegionStatus(name, p.kind, None, f"ERROR: {type(exc).__name__}: {exc}")
        out[name] = row

    threads = [threading.Thread(target=one, args=(n, p), name="agentfire-blocking-io", daemon=True)
               for n, p in provs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, started + deadline_s - time.monotonic()))
    done = dict(out)  # what answered by the deadline; a late answer is not reported
    return [done.get(n) or RegionStatus(n, p.kind, None, f"TIMEOUT: no answer within {deadline_s:g}s")
            for n, p in provs.items()]


def status(runbook: Runbook, *, region_spec: str = "all", deadline_s: float | None = None) -> list[RegionStatus]:
    """Every region's live flag, each on its own: one that cannot be built (a token unset) or
    read is an UNKNOWN row, never the end of the others."""
    names = runbook.select_regions(region_spec)
    provs, failed = build_each(runbook, names)
    deadline = deadline_s or runbook.model.kill.deadline_seconds
    from agentfire.providers.flags.flagd import FlagdFileProvider

    # flagd files only (the sandbox, a local drill): read on threads, no event loop; exactly this
    # class, so a provider built on it with its own async read goes through _status_all
    if provs and all(type(p) is FlagdFileProvider for p in provs.values()):
        read = _status_files(provs, runbook.agent.flag, deadline)
    elif provs:
        import asyncio  # here: status over flagd files runs without an event loop (issue 15)

        read = asyncio.run(_status_all(provs, runbook.agent.flag, deadline))
    else:
        read = []
    by_name = {s.region: s for s in read}
    for n, exc in failed.items():
        by_name[n] = RegionStatus(n, runbook.regions[n].kind, None, f"{exc.outcome.value}: {exc.detail}")
    return [by_name[n] for n in names]


async def _probe_all(provs: dict[str, FlagProvider], flag: str, deadline_s: float) -> dict[str, tuple[bool, str]]:
    import asyncio

    async def one(p: FlagProvider) -> tuple[bool, str]:
        try:
            return True, await asyncio.wait_for(p.probe(flag), deadline_s)
        except FlagError as exc:
            return False, f"{exc.outcome.value}: {exc.detail}"
        except asyncio.TimeoutError:
            return False, f"TIMEOUT: no answer within {deadline_s:g}s"
        except AgentfireError as exc:
            return False, str(exc)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"

    try:
        results = await asyncio.gather(*(one(p) for p in provs.values()))
    finally:
        await asyncio.gather(*(p.aclose() for p in provs.values()), return_exceptions=True)
    return dict(zip(provs, results))


def probe(runbook: Runbook, names: list[str], deadline_s: float = 10.0) -> dict[str, tuple[bool, str]]:
    # a region that cannot even be built (a missing token) is one failed row, not a crash
    import asyncio

    provs: dict[str, FlagProvider] = {}
    failed: dict[str, tuple[bool, str]] = {}
    for n in names:
        try:
            provs[n] = providers.build("flags", runbook.regions[n], runbook)
        except AgentfireError as exc:
            failed[n] = (False, str(exc))
    probed = asyncio.run(_probe_all(provs, runbook.agent.flag, deadline_s)) if provs else {}
    return {n: failed[n] if n in failed else probed[n] for n in names}

