"""Minute two: spend caps that hold (`agentfire freeze`, `freeze --lift`, the caps in `status`).

A freeze reads the per-trajectory cost distribution of the window from the trace store, sets the
scope's freeze cap to the chosen level (a percentile or a USD amount) and admission to frozen,
reads the store back and journals before and after. Every write is compare-and-set on the scope's
version: an on-call whose read is stale gets a clear conflict, never a silent overwrite. `lift`
restores the state journaled before this incident's first freeze.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from agentfire import providers
from agentfire.errors import AgentfireError, NotDoneError, StateFileError, UsageError
from agentfire.journal import Journal, iso, utcnow
from agentfire.providers.budget import (
    BudgetStore, BudgetStoreError, Caps, CapsState, VersionConflict, parse_state,
)

PERCENTILES = {"p50": 50.0, "p75": 75.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
IN_FLIGHT_LISTED = 20  # trace ids named in the report; the count is always complete
MAX_DURATION_S = 3650 * 86400  # ten years: beyond it datetime arithmetic overflows


def parse_duration(text: str, what: str) -> float:
    """'90s', '30m', '1h', '2d' -> seconds."""
    m = _DURATION.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise UsageError(f"{what}: {text!r} is not a duration (like 90s, 30m, 1h, 2d)")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2).lower()]
    if seconds > MAX_DURATION_S:
        raise UsageError(f"{what}: {text!r} is too long (at most 3650d)")
    return seconds


def parse_level(text: str) -> tuple[str, float | None]:
    """--to: 'p50' / 'p75' / 'p90' / ... -> ('p50', None); '0.40' or '$0.40' -> ('usd', 0.4)."""
    t = (text or "").strip().lower()
    if t in PERCENTILES:
        return t, None
    try:
        usd = float(t.lstrip("$"))
    except ValueError:
        raise UsageError(f"--to: {text!r} is neither {', '.join(PERCENTILES)} nor a USD amount") from None
    if not usd >= 0 or usd == float("inf"):
        raise UsageError(f"--to: {text!r} must be a finite amount >= 0")
    return "usd", usd


def percentile(sorted_values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        raise ValueError("no values")
    k = (len(sorted_values) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")


def default_scope(runbook: Any) -> str:
    return getattr(runbook, "drill_scope", None) or runbook.agent.name


def check_scope(scope: str | None, runbook: Any) -> str:
    """--scope NAME (default: the agent's name): letters, digits and . _ : / @ - only."""
    name = scope or default_scope(runbook)
    drill = getattr(runbook, "drill_scope", None)
    if drill and name != drill:
        raise UsageError(f"--scope {name!r}: a drill freezes only its own scope {drill!r} (gameday.scope "
                         "in runbook.yaml); real spend caps are not for drills")
    if not _SCOPE.match(name):
        raise UsageError(f"--scope: {name!r} is not a scope name (letters, digits, '.', '_', ':', '/', '@', '-')")
    return name


def open_store(runbook: Any) -> BudgetStore:
    return providers.build("budget", runbook.budget, runbook)


# --- the cost distribution ------------------------------------------------------------------


@dataclass
class Distribution:
    window_s: float
    start: datetime
    end: datetime
    costs: list[float]  # sorted
    running: list[tuple[str, float]]  # (trace id, cost) of trajectories still running
    source: str
    cost_unknown: int = 0  # trajectories with model steps no one priced (their cost is a lower bound)

    @property
    def n(self) -> int:
        return len(self.costs)

    def pct(self, name: str) -> float | None:
        return round(percentile(self.costs, PERCENTILES[name]), 6) if self.costs else None

    def above(self, cap: float) -> list[tuple[str, float]]:
        """In-flight trajectories whose spend already reached the cap (stopped at their next call)."""
        return sorted((t for t in self.running if t[1] >= cap), key=lambda t: -t[1])

    def to_json(self) -> dict[str, Any]:
        return {
            "window_seconds": self.window_s, "start": iso(self.start), "end": iso(self.end),
            "source": self.source, "n": self.n, "running": len(self.running),
            "p50": self.pct("p50"), "p75": self.pct("p75"), "p90": self.pct("p90"),
            "max": round(self.costs[-1], 6) if self.costs else None,
            "cost_unknown": self.cost_unknown,
        }


def cost_distribution(runbook: Any, window_s: float, now: datetime | None = None) -> Distribution:
    """Per-trajectory cost of every trajectory that started in the window (any status)."""
    import asyncio  # here, not at import: `agentfire status` reads the caps without an event loop

    end = now or utcnow()
    start = end - timedelta(seconds=window_s)
    store = providers.build("traces", runbook.traces, runbook)

    async def read() -> Any:
        try:
            # the files store answers with one DuckDB aggregate over the window (no parse of every
            # trajectory, no object per trajectory); remote stores list the window's trajectories
            if hasattr(store, "cost_summary"):
                return await asyncio.to_thread(store.cost_summary, start, end)
            return await store.list_trajectories(start, end)
        finally:
            await store.aclose()

    rows = asyncio.run(read())
    if not isinstance(rows, list):  # the aggregate's summary
        return Distribution(window_s, start, end, rows.costs, rows.running, f"{store.kind}:{store.target}",
                            rows.unknown)
    costs = sorted(float(r.cost_usd or 0.0) for r in rows)
    running = [(r.trace_id, float(r.cost_usd or 0.0)) for r in rows if r.status == "running"]
    unknown = sum(1 for r in rows if not getattr(r, "cost_known", True))
    return Distribution(window_s, start, end, costs, running, f"{store.kind}:{store.target}", unknown)


# --- freeze and lift ------------------------------------------------------------------------


@dataclass
class CapsChange:
    """What one freeze or lift did to one scope."""

    incident: str
    action: str  # "freeze" or "lift"
    scope: str
    store: str
    before: Caps
    wanted: Caps
    after: Caps | None = None  # the read-back (None: dry run)
    distribution: Distribution | None = None
    level: str = ""  # how the freeze cap was chosen: "p50 of 1h", "usd"
    in_flight_over: list[tuple[str, float]] = field(default_factory=list)
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    journal_error: str | None = None  # the caps were written but the journal could not be

    @property
    def confirmed(self) -> bool:
        """The read-back shows exactly what was written (never true for a dry run)."""
        a, w = self.after, self.wanted
        return (
            a is not None and not self.dry_run and a.version == w.version and a.state == w.state
            and a.expires_at == w.expires_at and a.prior == w.prior
        )

    @property
    def outcome(self) -> str:
        if self.dry_run:
            return "DRY_RUN"
        return "CONFIRMED" if self.confirmed else "MISMATCH"

    def to_json(self) -> dict[str, Any]:
        now = time.time()
        return {
            "incident": self.incident, "action": self.action, "scope": self.scope,
            "store": self.store, "outcome": self.outcome, "confirmed": self.confirmed,
            "dry_run": self.dry_run, "level": self.level,
            "distribution": self.distribution.to_json() if self.distribution else None,
            "in_flight_over_cap": len(self.in_flight_over),
            "in_flight_over_cap_ids": [
                {"trace_id": t, "cost_usd": round(c, 6)} for t, c in self.in_flight_over[:IN_FLIGHT_LISTED]
            ],
            "before": self.before.to_json(now),
            "wanted": self.wanted.to_json(now),
            "after": self.after.to_json(now) if self.after else None,
            "warnings": self.warnings,
        }


def _conflict_detail(store: BudgetStore, exc: VersionConflict) -> str:
    try:
        now_caps = store.read(exc.scope)
    except BudgetStoreError as err:
        return f"{exc} (and the new state could not be read: {err})"
    s = now_caps.state
    return (
        f"{exc}. It was changed by {now_caps.updated_by or '?'} at {now_caps.updated_at or '?'} to "
        f"freeze={_usd(s.freeze_usd)} hard={_usd(s.hard_usd)} admission={s.admission}. "
        "Re-run to act on the new state (`agentfire status` shows it)."
    )


def _usd(v: float | None) -> str:
    return "none" if v is None else f"${v:.4f}".rstrip("0").rstrip(".")


def _write(store: BudgetStore, change: CapsChange, journal: Journal, actor: str,
           extra: dict[str, Any], started: float) -> CapsChange:
    """Compare-and-set, read back, journal (also the conflicts: they are things that happened)."""
    try:
        new_version = store.compare_and_set(change.wanted, change.before.version)
    except VersionConflict as exc:
        detail = _conflict_detail(store, exc)
        journal.append(
            change.action, actor=actor, scope=change.scope, store=change.store,
            before=change.before.to_json(time.time()), wanted=change.wanted.to_json(), after=None,
            outcome="VERSION_CONFLICT", detail=detail,
            duration_ms=int((time.monotonic() - started) * 1000), **extra,
        )
        raise NotDoneError(detail) from None
    change.wanted = replace(change.wanted, version=new_version)
    try:
        change.after = store.read(change.scope)
    except BudgetStoreError as exc:
        change.warnings.append(f"written (version {new_version}) but the read-back failed: {exc}")
    try:
        journal.append(
            change.action, actor=actor, scope=change.scope, store=change.store,
            before=change.before.to_json(time.time()), wanted=change.wanted.to_json(),
            after=change.after.to_json() if change.after else None,
            outcome=change.outcome, duration_ms=int((time.monotonic() - started) * 1000), **extra,
        )
    except (StateFileError, OSError) as exc:
        # the caps ARE written: say so (and what was before) rather than a bare error that
        # reads as "nothing happened"; the CLI turns journal_error into exit 1
        change.journal_error = str(exc)
        change.warnings.append(
            f"JOURNAL NOT WRITTEN ({exc}): the {change.action} above happened but is not recorded, "
            f"so `freeze --lift` for {journal.incident} will not know about it; the caps before were "
            f"freeze={_usd(change.before.state.freeze_usd)} hard={_usd(change.before.state.hard_usd)} "
            f"admission={change.before.state.admission}"
        )
    return change


def freeze(
    runbook: Any, journal: Journal, *, actor: str, scope: str | None = None, to: str = "p50",
    window_s: float = 3600.0, refuse_new: bool = True, hard_usd: float | None = None,
    for_s: float | None = None, dry_run: bool = False, reason: str = "",
    store: BudgetStore | None = None,
) -> CapsChange:
    started = time.monotonic()
    scope = check_scope(scope, runbook)
    kind, usd = parse_level(to)
    if hard_usd is not None and not (hard_usd >= 0 and hard_usd != float("inf")):
        raise UsageError(f"--hard: {hard_usd!r} must be a finite amount >= 0")
    own = store is None
    store = store or open_store(runbook)
    try:
        before = store.read(scope)  # first: a store that is down fails before the trace scan
        dist: Distribution | None = None
        warnings: list[str] = []
        try:
            dist = cost_distribution(runbook, window_s)
        except (AgentfireError, OSError) as exc:
            if kind != "usd":
                raise NotDoneError(f"cannot compute the {kind} ({exc}); pass --to USD to freeze anyway") from None
            warnings.append(f"no cost distribution (the trace store failed: {exc}); freezing to the given USD")
        if kind != "usd":
            assert dist is not None
            if dist.n == 0:
                raise NotDoneError(
                    f"no trajectories started in the last {_human(window_s)} in {dist.source}: "
                    f"no {kind} to freeze to; widen --window or pass --to USD"
                )
            if dist.cost_unknown == dist.n:
                raise NotDoneError(
                    f"the cost of the {dist.n} trajectories in {dist.source} is unknown: the store computed "
                    "none and runbook.yaml has no `prices:` for their models (USD per million input/output "
                    "tokens); add them, or pass --to USD"
                )
            if dist.cost_unknown:
                warnings.append(f"cost unknown for {dist.cost_unknown} of {dist.n} trajectories (no price for "
                                "their model: runbook.yaml `prices:`); counted at what is known")
            usd = dist.pct(kind)
            level = f"{kind} of the last {_human(window_s)}"
        else:
            level = "usd"
        assert usd is not None
        now = time.time()
        # what an expiry returns to: the pre-incident state when a timed freeze is still on
        if before.expires_at is not None and not before.expired(now):
            base = before.prior or CapsState()
        else:
            base = before.effective(now)
        state = CapsState(
            hard_usd=hard_usd if hard_usd is not None else base.hard_usd,
            freeze_usd=usd, admission="frozen" if refuse_new else "open",
        )
        wanted = Caps(
            scope=scope, hard_usd=state.hard_usd, freeze_usd=state.freeze_usd, admission=state.admission,
            expires_at=(now + for_s) if for_s else None, prior=base if for_s else None,
            version=before.version + 1, updated_by=actor, updated_at=iso(utcnow()),
            note=f"freeze ({journal.incident})" + (f": {reason}" if reason else ""),
        )
        change = CapsChange(
            journal.incident, "freeze", scope, f"{store.kind}:{store.target}", before, wanted,
            distribution=dist, level=level, in_flight_over=dist.above(usd) if dist else [],
            dry_run=dry_run, warnings=warnings,
        )
        if state.hard_usd is not None and state.hard_usd < usd:
            change.warnings.append(
                f"the hard cap {_usd(state.hard_usd)} is below the freeze cap {_usd(usd)}: "
                "trajectories stop at the hard cap first")
        if dry_run:
            return change
        extra = {"level": level, "distribution": dist.to_json() if dist else None, "reason": reason,
                 "in_flight_over_cap": len(change.in_flight_over)}
        return _write(store, change, journal, actor, extra, started)
    finally:
        if own:
            store.close()


def freezes_to_lift(journal: Journal, scope: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the first freeze since the last lift, the last one) for scope in this incident's journal."""
    first = last = None
    for e in journal.iter_entries():
        if e.get("scope") != scope:
            continue
        if e.get("action") == "freeze" and e.get("outcome") in ("CONFIRMED", "MISMATCH"):
            first = first or e
            last = e
        elif e.get("action") == "freeze.lift" and e.get("outcome") == "CONFIRMED":
            first = last = None
    return (first, last) if first and last else None


def lift(
    runbook: Any, journal: Journal, *, actor: str, scope: str | None = None, force: bool = False,
    dry_run: bool = False, store: BudgetStore | None = None,
) -> CapsChange:
    """Restore what this incident's first freeze found (its journaled before), compare-and-set."""
    started = time.monotonic()
    scope = check_scope(scope, runbook)
    if not journal.exists():
        raise UsageError(f"incident {journal.incident} has no journal at {journal.path}")
    found = freezes_to_lift(journal, scope)
    if found is None:
        lifted = [e["ts"] for e in journal.iter_entries() if e.get("action") == "freeze.lift"
                  and e.get("scope") == scope and e.get("outcome") == "CONFIRMED"]
        already = f" (already lifted at {lifted[-1]})" if lifted else ""
        raise NotDoneError(f"incident {journal.incident} has no freeze of scope {scope!r} to lift{already}")
    first, last = found
    restore = _journaled_state(first.get("before") or {}, f"{journal.path}: freeze at {first.get('ts')}: before")
    own = store is None
    store = store or open_store(runbook)
    try:
        before = store.read(scope)
        ours = (last.get("after") or {}).get("version")
        if before.version != ours and not force:
            raise NotDoneError(
                f"scope {scope!r} changed since this incident's freeze (version {ours} -> "
                f"{before.version}, by {before.updated_by or '?'} at {before.updated_at or '?'}); "
                "nothing was written. Check `agentfire status`, then lift with --force to restore "
                f"freeze={_usd(restore.freeze_usd)} hard={_usd(restore.hard_usd)} admission={restore.admission} anyway"
            )
        wanted = Caps(
            scope=scope, hard_usd=restore.hard_usd, freeze_usd=restore.freeze_usd,
            admission=restore.admission, version=before.version + 1, updated_by=actor,
            updated_at=iso(utcnow()), note=f"lift ({journal.incident})",
        )
        change = CapsChange(journal.incident, "freeze.lift", scope, f"{store.kind}:{store.target}",
                            before, wanted, dry_run=dry_run, level="journaled before")
        if dry_run:
            return change
        return _write(store, change, journal, actor, {"restored_from": first["ts"]}, started)
    finally:
        if own:
            store.close()


def _journaled_state(doc: dict[str, Any], where: str) -> CapsState:
    """The state that applied when the journaled record was read (its effective caps then)."""
    eff = doc.get("effective")
    return parse_state(eff if isinstance(eff, dict) else doc, where)


def _human(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


# --- status and doctor ----------------------------------------------------------------------


def status(runbook: Any) -> dict[str, Any]:
    """Caps and admission per scope (the agent's scope always listed), for `agentfire status`.

    Also every freeze that an open incident set and has not lifted but that the store no longer
    holds (`missing_freezes`; e.g. a Redis restart without persistence): then `error` is set too,
    so `status` exits 1."""
    store = open_store(runbook)
    try:
        now = time.time()
        held = open_freezes(runbook)
        names = sorted({default_scope(runbook), *store.scopes(), *(f["scope"] for f in held)})
        scopes = []
        live: dict[str, Caps] = {}
        for name in names:
            try:
                live[name] = store.read(name)
                scopes.append(live[name].to_json(now))
            except BudgetStoreError as exc:
                scopes.append({"scope": name, "error": str(exc)})
        doc: dict[str, Any] = {"store": f"{store.kind}:{store.target}", "scopes": scopes}
        missing = [f for f in held if f["scope"] in live and _freeze_gone(f, live[f["scope"]], now)]
        if missing:
            doc["missing_freezes"] = missing
            doc["error"] = "; ".join(
                f"the freeze of scope {f['scope']!r} that incident {f['incident']} set at {f['set_at']} "
                f"(version {f['version']}) is gone from the store (restarted without persistence?); "
                f"re-run `agentfire --incident {f['incident']} freeze` to set it again"
                for f in missing)
        return doc
    finally:
        store.close()


def open_freezes(runbook: Any) -> list[dict[str, Any]]:
    """The freezes that open incidents set and have not lifted: one per (incident, scope)."""
    from agentfire.incident import summarize
    from agentfire.journal import list_incidents

    out: list[dict[str, Any]] = []
    for incident in list_incidents(runbook.journal_dir):
        journal = Journal(runbook.journal_dir, incident)
        try:
            if summarize(journal).status != "open":
                continue
            scopes = {e.get("scope") for e in journal.iter_entries() if e.get("action") == "freeze"}
            for scope in sorted(s for s in scopes if isinstance(s, str)):
                found = freezes_to_lift(journal, scope)
                if found is None:
                    continue
                after = found[1].get("after") or {}
                out.append({"incident": incident, "scope": scope, "set_at": found[1].get("ts"),
                            "version": after.get("version"), "expires_at": after.get("expires_at"),
                            "freeze_usd": after.get("freeze_usd"), "admission": after.get("admission")})
        except StateFileError:
            continue  # a corrupt journal is reported by the commands that use it
    return out


def _freeze_gone(freeze: dict[str, Any], caps: Caps, now: float) -> bool:
    """The store is behind what the freeze wrote: its version went back (a store restarted empty,
    or restored from an older snapshot). A later change by someone else (a higher version) is
    not "gone"; nor is a timed freeze that expired by itself."""
    version = freeze.get("version")
    if not isinstance(version, int):
        return False
    expires = freeze.get("expires_at")
    if isinstance(expires, str):
        try:
            if datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() <= now:
                return False
        except ValueError:
            pass
    return caps.version < version


def probe(runbook: Any) -> tuple[bool, str]:
    """doctor: the store answers and every record parses."""
    store = open_store(runbook)
    try:
        detail = store.probe()
        for name in store.scopes():
            store.read(name)
        return True, detail
    except BudgetStoreError as exc:
        return False, str(exc)
    finally:
        store.close()
