"""`agentfire gameday`: inject a failure, time a responder through the runbook, score the answers.

A drill is an incident like any other (its own journal), opened by `gameday.start`, which records
the scenario, the target and where its ground truth lies. On the sandbox the scenario's
trajectories are seeded into the local files store; on staging they are emitted into the
configured trace store through its ingestion path (Phoenix or Langfuse over OTLP). Either way the kill switch
is armed first (the agent on in every region, journaled), so minute one has something to do.

Scoring compares the journal with the ground truth: time to kill, freeze, triage, blast and
capture; whether triage named the right step; whether blast counted the right trajectories and
users; whether every region really ended off (read live). Each runbook line is judged
load-bearing (ran as written and worked first time), a workaround (edited or retried) or fiction
(failed or skipped).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agentfire import killswitch
from agentfire.config import Runbook
from agentfire.errors import NotDoneError, UsageError
from agentfire.journal import Journal
from agentfire.report import minute_done

TARGETS = ("sandbox", "staging")
MINUTES = ("kill", "freeze", "triage", "blast", "capture")
DRILL_TAG = "agentfire-gameday"  # on every trajectory a drill injects (sandbox or staging)

ALERTS = {
    "wrong_recipient": "customer reports an email about their account went to an outside address",
    "destructive_sql": "orders table lost rows in production; the agent ran SQL in the last hour",
    "runaway_loop": "LLM spend for the support agent is 9x the hourly baseline",
    "papered_error": "customers say refunds the assistant confirmed never arrived",
}


@dataclass
class DrillStart:
    incident: str
    scenario: str
    target: str
    seed: int
    alert_trace_id: str
    alert_user: str | None
    truth_file: Path
    page: str
    injected: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"incident": self.incident, "scenario": self.scenario, "target": self.target,
                "seed": self.seed, "alert_trace_id": self.alert_trace_id,
                "alert_user": self.alert_user, "truth_file": str(self.truth_file),
                "page": self.page, "injected": self.injected}


def _arm(runbook: Runbook, journal: Journal, actor: str) -> list[dict[str, Any]]:
    """The chaos precondition: the agent is live in every region, so the kill is real."""
    results = killswitch.flip_regions(runbook, list(runbook.regions), on=True,
                                      comment=f"gameday {journal.incident}: arm")
    regions = [r.to_json() for r in results]
    journal.append("gameday.arm", actor=actor, flag=runbook.agent.flag, regions=regions,
                   outcome="armed" if all(r.outcome.ok for r in results) else "incomplete")
    bad = [f"{r.region}={r.outcome.value}" for r in results if not r.outcome.ok]
    if bad:
        raise NotDoneError(f"could not arm the kill switch for the drill: {', '.join(bad)}")
    return regions


def held_off(journal: Journal) -> set[str]:
    """Regions this incident wants off: its last word on each was a kill that left it off
    (CONFIRMED, or ALREADY_OFF: off before, and this incident relies on it), not undone since."""
    held: set[str] = set()
    for e in journal.iter_entries():
        if e.get("action") == "kill":
            held |= {r.get("region") for r in e.get("regions") or []
                     if r.get("outcome") in ("CONFIRMED", "ALREADY_OFF")}
        elif e.get("action") == "kill.undo":
            held -= {r.get("region") for r in e.get("regions") or []
                     if r.get("outcome") in ("CONFIRMED", "ALREADY_ON")}
    return held


def _held_by_others(runbook: Runbook, journal: Journal) -> tuple[dict[str, str], dict[str, str]]:
    """(region -> incident, scope -> incident) that other open incidents hold: regions they
    want off, scopes they froze and have not lifted."""
    from agentfire.budget import freezes_to_lift
    from agentfire.incident import list_all

    regions: dict[str, str] = {}
    scopes: dict[str, str] = {}
    for s in list_all(runbook):
        if s.status != "open" or s.id == journal.incident:
            continue
        other = Journal(runbook.journal_dir, s.id)
        for r in held_off(other):
            regions.setdefault(r, s.id)
        for scope in {str(e.get("scope")) for e in other.iter_entries() if e.get("action") == "freeze"}:
            if freezes_to_lift(other, scope) is not None:
                scopes.setdefault(scope, s.id)
    return regions, scopes


def _conflicts(runbook: Runbook, journal: Journal) -> list[str]:
    """What another open incident holds and this drill would undo: a region it wants off that
    arming would turn on, a scope it froze that the drill's freeze and lift would rewrite."""
    from agentfire.budget import default_scope

    regions, scopes = _held_by_others(runbook, journal)
    by_incident: dict[str, list[str]] = {}
    for r, inc in regions.items():
        if r in runbook.regions:
            by_incident.setdefault(inc, []).append(r)
    out = [f"incident {inc} killed the agent in {', '.join(sorted(rs))}" for inc, rs in by_incident.items()]
    scope = default_scope(runbook)
    if scope in scopes:
        out.append(f"incident {scopes[scope]} froze spend on scope {scope}")
    return out


def observe(runbook: Runbook, journal: Journal, actor: str, when: str) -> dict[str, Any]:
    """Record what the drill's regions serve now (the end of its runbook): the score is computed
    from this, so an undo after the drill (or `gameday run` restoring) cannot change it."""
    rows = killswitch.status(runbook)
    regions = {r.region: r.on for r in rows}
    return journal.append("gameday.observed", actor=actor, when=when, regions=regions,
                          details={r.region: r.detail for r in rows},
                          outcome="all_off" if all(v is False for v in regions.values()) else "not_all_off")


def restore(runbook: Runbook, journal: Journal, actor: str) -> dict[str, Any]:
    """Put back what the drill changed: each region to what it served before the drill armed it,
    each freeze the drill set lifted (to its journaled before). Journaled; returns what was done
    and the state left (read live)."""
    from agentfire import budget

    arm = next((e for e in journal.iter_entries() if e.get("action") == "gameday.arm"), None)
    want = {r["region"]: r.get("before") for r in (arm or {}).get("regions", [])
            if r.get("region") in runbook.regions and isinstance(r.get("before"), bool)}
    live = {r.region: r.on for r in killswitch.status(runbook, region_spec=",".join(want))} if want else {}
    flips: list[dict[str, Any]] = []
    # a real incident that killed one of the drill's regions meanwhile keeps it off
    held, _ = _held_by_others(runbook, journal)
    for n in [n for n in want if n in held and want[n] is True]:
        flips.append({"region": n, "outcome": "SKIPPED", "before": live.get(n), "after": live.get(n),
                      "detail": f"held off by open incident {held[n]}: left off"})
        del want[n]
    for on in (True, False):
        names = [n for n, w in want.items() if w is on and live.get(n) is not on]
        if names:
            flips += [r.to_json() for r in killswitch.flip_regions(
                runbook, names, on=on, comment=f"gameday {journal.incident}: restore")]
    lifts: list[dict[str, Any]] = []
    scopes = dict.fromkeys(str(e.get("scope")) for e in journal.iter_entries()
                           if e.get("action") == "freeze" and e.get("scope"))
    for scope in scopes:
        if budget.freezes_to_lift(journal, scope) is None:
            continue
        try:
            change = budget.lift(runbook, journal, actor=actor, scope=scope)
            lifts.append({"scope": scope, "outcome": change.outcome})
        except Exception as exc:  # noqa: BLE001  (reported and journaled, never hidden)
            lifts.append({"scope": scope, "outcome": "NOT_DONE", "detail": str(exc)})
    ok = all(f.get("outcome") in ("CONFIRMED", "ALREADY_ON", "ALREADY_OFF", "SKIPPED") for f in flips) and \
        all(x["outcome"] == "CONFIRMED" for x in lifts)
    left = state_left(runbook)
    journal.append("gameday.restore", actor=actor, regions=flips, lifts=lifts, left=left,
                   before={"regions": live}, after=left,
                   outcome="restored" if ok else "incomplete")
    return {"restored": ok, "regions": flips, "lifts": lifts, "left": left}


def state_left(runbook: Runbook) -> dict[str, Any]:
    """The drill's regions and its budget scope, read live."""
    from agentfire import budget

    left: dict[str, Any] = {"regions": {r.region: r.on for r in killswitch.status(runbook)}}
    try:
        scope = budget.default_scope(runbook)
        left["caps"] = [s for s in budget.status(runbook).get("scopes", []) if s.get("scope") == scope]
    except Exception as exc:  # noqa: BLE001  (an unreadable store is reported, not hidden)
        left["caps"] = {"error": str(exc)}
    return left


def _inject_phoenix(runbook: Runbook, rows: list[dict[str, Any]], wait_s: float) -> dict[str, Any]:
    import httpx

    from agentfire._otlp import post_otlp
    from agentfire.secrets import secret

    section: Any = runbook.traces
    headers = {}
    if section.api_key_env:
        headers["Authorization"] = f"Bearer {secret(section.api_key_env, what='Phoenix API key')}"
    try:
        result = post_otlp(section.url, rows, section.project, headers=headers)
    except (RuntimeError, httpx.HTTPError) as exc:
        raise NotDoneError(f"could not emit the scenario into Phoenix at {section.url}: {exc}") from None
    # ingestion is asynchronous: the drill starts when the store can answer for every span it
    # sent, by this drill's own trace and span ids (a project's total count is reached early
    # when an earlier drill or real traffic is already in it)
    from urllib.parse import quote

    sent = {(t.lower(), s.lower()) for t, s in result.span_ids}
    trace_ids = sorted({t for t, _ in sent})
    deadline = time.monotonic() + wait_s
    seen: set[tuple[str, str]] = set()
    path = f"/v1/projects/{quote(section.project, safe='')}/spans"
    with httpx.Client(base_url=section.url.rstrip("/"), timeout=30, headers=headers) as client:
        while True:
            seen = set()
            for i in range(0, len(trace_ids), 50):
                cursor = None
                while True:
                    params: list[tuple[str, Any]] = [("limit", 1000)]
                    params += [("trace_id", t) for t in trace_ids[i:i + 50]]
                    params += [("cursor", cursor)] if cursor else []
                    r = client.get(path, params=params)
                    if r.status_code == 404:
                        break
                    r.raise_for_status()
                    body = r.json()
                    for span in body.get("data", []):
                        ctx = span.get("context") or {}
                        key = (str(ctx.get("trace_id", "")).lower(), str(ctx.get("span_id", "")).lower())
                        if key in sent:
                            seen.add(key)
                    cursor = body.get("next_cursor")
                    if not cursor:
                        break
            if len(seen) >= len(sent):
                break
            if time.monotonic() >= deadline:
                raise NotDoneError(f"Phoenix made {len(seen)} of {len(sent)} of this drill's spans "
                                   f"queryable within {wait_s:g}s")
            time.sleep(0.5)
    return {"store": "phoenix", "url": section.url, "project": section.project,
            "spans": result.exported, "traces": result.traces, "skipped_rows": len(result.skipped),
            "note": result.summary()}


def _inject_langfuse(runbook: Runbook, rows: list[dict[str, Any]], wait_s: float) -> dict[str, Any]:
    """OTLP into Langfuse, then wait (bounded) until /v2/observations answers for every span sent."""
    import asyncio

    from agentfire.providers.traces import TraceStoreError
    from agentfire.providers.traces.langfuse import from_config
    from agentfire.trajectory import parse_time

    store = from_config(runbook.traces, runbook)  # type: ignore[arg-type]
    try:
        result = store.export_otlp(rows)
    except TraceStoreError as exc:
        raise NotDoneError(f"could not emit the scenario into Langfuse: {exc}") from None
    sent = set(result.span_ids)
    starts = [t for t in (parse_time(r.get("startTime")) for r in rows) if t]

    async def wait() -> int:
        # the scenario's window only: a staging project holds other trajectories too
        window = (min(starts), max(starts) + timedelta(milliseconds=1)) if starts else (None, None)
        deadline = time.monotonic() + wait_s
        seen: set[tuple[str, str]] = set()
        try:
            while True:
                seen = set()
                async for page in store.iter_observations(fields="core", start=window[0], end=window[1]):
                    seen.update(k for k in ((str(r.get("traceId")), str(r.get("id"))) for r in page) if k in sent)
                if len(seen) >= len(sent) or time.monotonic() >= deadline:
                    return len(seen)
                await asyncio.sleep(1.0)
        finally:
            await store.aclose()

    try:
        seen = asyncio.run(wait())
    except TraceStoreError as exc:
        raise NotDoneError(f"the scenario was sent to Langfuse but cannot be read back: {exc}") from None
    if seen < len(sent):
        raise NotDoneError(f"Langfuse made {seen} of {len(sent)} observations queryable within {wait_s:g}s "
                           "(ingestion lags; run gameday start again or raise the wait)")
    return {"store": "langfuse", "url": store.target, "environment": store.environment,
            "observations": result.exported, "traces": result.traces,
            "skipped_rows": len(result.skipped), "note": result.summary("Langfuse")}


def start(runbook: Runbook, journal: Journal, *, actor: str, scenario: str, target: str = "sandbox",
          seed: int | None = None, traces: int | None = None, wait_s: float = 300.0) -> DrillStart:
    from agentfire import sandbox

    if scenario not in sandbox.SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; valid: {', '.join(sandbox.SCENARIOS)}")
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
    if traces is not None and not sandbox.MIN_TRACES <= traces <= sandbox.MAX_TRACES:
        # checked before anything is seeded, armed or journaled
        raise UsageError(f"--traces must be between {sandbox.MIN_TRACES} and {sandbox.MAX_TRACES:,} "
                         f"(got {traces:,})")
    if journal.exists() and any(e.get("action") == "gameday.start" for e in journal.iter_entries()):
        raise UsageError(f"incident {journal.incident} already has a drill; start one without --incident")
    seed = seed if seed is not None else int(time.time()) % 100000
    kind = runbook.traces.kind
    if target == "sandbox" and kind != "files":
        raise UsageError(f"the sandbox target seeds a files trace store; this runbook's is {kind!r} "
                         "(use --target staging)")
    conflicts = _conflicts(runbook, journal)
    if conflicts:
        # a drill arms (turns on) every region it may use, then freezes and lifts its scope:
        # that would undo what a real incident did
        raise NotDoneError(
            "refusing to start a drill: " + "; ".join(conflicts) + ". Close or restore that "
            "incident first, or give drills their own regions and scope (runbook.yaml gameday: "
            "regions, scope)")
    truth_dir = journal.dir / f"{journal.incident}.gameday"
    if kind == "files":
        store = runbook.resolve_path(runbook.traces.path)  # type: ignore[attr-defined]
        # tagged like a staging drill's rows: `watch` over this store counts them apart, never pages
        res = sandbox.seed_store(store, scenario=scenario, traces=traces or 600, seed=seed,
                                 tags=(DRILL_TAG, f"{DRILL_TAG}:{journal.incident}"))
        injected: dict[str, Any] = {"store": "files", "path": str(store), "rows": res.rows,
                                    "traces": res.traces}
        truth = res.truth
    elif kind in ("phoenix", "langfuse"):
        with tempfile.TemporaryDirectory(prefix="agentfire-gameday-") as tmp:
            res = sandbox.seed_store(tmp, scenario=scenario, traces=traces or 60, seed=seed)
            rows = [json.loads(line) for line in res.data_file.read_text().splitlines() if line.strip()]
            # staging holds real traffic too: drill trajectories say what they are, so nobody
            # mistakes them for an incident later (and they can be filtered out)
            for row in rows:
                row["tags"] = [*(row.get("tags") or []), DRILL_TAG, f"{DRILL_TAG}:{journal.incident}"]
            truth = res.truth
            inject = _inject_phoenix if kind == "phoenix" else _inject_langfuse
            injected = inject(runbook, rows, wait_s)
    else:
        raise UsageError(f"staging injection is built for phoenix, langfuse and files trace stores, not {kind!r}")
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth_file = truth_dir / "truth.json"
    truth_file.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    alert = _alert_trajectory(truth)
    page = (f"PAGE  {runbook.agent.name}: {ALERTS.get(scenario, scenario)}.\n"
            f"      user {alert.get('user_id')}  trace {alert['trace_id']}\n"
            f"      runbook: agentfire --incident {journal.incident} runbook --trace {alert['trace_id']}")
    journal.append("gameday.start", actor=actor, scenario=scenario, target=target, seed=seed,
                   truth_file=str(truth_file), alert_trace_id=alert["trace_id"],
                   alert_user=alert.get("user_id"), injected=injected, outcome="injected")
    _arm(runbook, journal, actor)
    return DrillStart(journal.incident, scenario, target, seed, alert["trace_id"], alert.get("user_id"),
                      truth_file, page, injected)


def send_page(runbook: Runbook, journal: Journal, started: DrillStart, *, actor: str) -> dict[str, Any]:
    """`gameday start --page`: the drill's page through watch's routes (runbook.yaml watch.routes),
    marked as a drill; journaled as gameday.page with when a route took it (the score's clock then
    starts there). Raises NotDoneError when no route took it."""
    from agentfire import watch

    if not runbook.model.watch.routes:
        raise UsageError("gameday start --page sends through watch.routes in runbook.yaml, and it lists none")
    step, sentence = None, f"{ALERTS.get(started.scenario, started.scenario)} (drill)"
    try:
        truth = json.loads(Path(started.truth_file).read_text(encoding="utf-8"))
        step = next(f["off_rails_step"] for f in truth["failing"] if f["trace_id"] == started.alert_trace_id)
    except (OSError, ValueError, StopIteration, KeyError):
        pass
    deliveries = watch.send_drill_page(runbook, incident=started.incident, scenario=started.scenario,
                                       trace_id=started.alert_trace_id, user_id=started.alert_user,
                                       step=step, sentence=sentence)
    took = [d for d in deliveries if d["ok"]]
    entry = journal.append("gameday.page", actor=actor, trace_id=started.alert_trace_id, deliveries=deliveries,
                           delivered_at=min((d["at"] for d in took), default=None),
                           outcome="delivered" if took else "not delivered")
    if not took:
        raise NotDoneError("the drill's page reached no route: " + "; ".join(
            f"{d['route']}: {d['detail']}" for d in deliveries))
    return entry


def _alert_trajectory(truth: dict[str, Any]) -> dict[str, Any]:
    """The page names a finished failing trajectory (a support ticket arrives after the harm)."""
    failing = {f["trace_id"]: f for f in truth["failing"]}
    for tid in truth.get("examples", []):
        if tid in failing and not failing[tid]["still_running"]:
            return failing[tid]
    done = [f for f in truth["failing"] if not f["still_running"]]
    if not done:
        raise NotDoneError("the scenario produced no finished failing trajectory to page about")
    return done[0]


# --- scoring ------------------------------------------------------------------------------


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def drill_start_entry(journal: Journal) -> dict[str, Any]:
    for e in journal.iter_entries():
        if e.get("action") == "gameday.start":
            return e
    raise UsageError(f"incident {journal.incident} is not a drill (no gameday.start in its journal)")


def score(runbook: Runbook, journal: Journal, *, live_status: bool = True) -> dict[str, Any]:
    from agentfire.walk import plan, records

    start_entry = drill_start_entry(journal)
    try:
        truth = json.loads(Path(start_entry["truth_file"]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotDoneError(f"cannot read the drill's ground truth {start_entry['truth_file']}: {exc}") from None
    t0 = _ts(start_entry["ts"])
    # with `gameday start --page` the clock starts when the page was delivered, as in an incident
    paged = next((e for e in journal.iter_entries() if e.get("action") == "gameday.page" and e.get("delivered_at")),
                 None)
    if paged is not None:
        t0 = _ts(paged["delivered_at"])
    alert = start_entry["alert_trace_id"]
    alert_truth = next(f for f in truth["failing"] if f["trace_id"] == alert)
    entries = [e for e in journal.iter_entries() if _ts(e["ts"]) >= t0]

    done = {m: minute_done(entries, m, trace_id=alert) for m in MINUTES}
    times = {m: (round((_ts(e["ts"]) - t0).total_seconds(), 1) if e else None) for m, e in done.items()}

    checks: dict[str, dict[str, Any]] = {}
    tri = done["triage"]
    named = (tri or {}).get("verdict", {}).get("step_index") if tri else None
    checks["triage_named_the_right_step"] = {
        "ok": tri is not None and named == alert_truth["off_rails_step"],
        "expected": alert_truth["off_rails_step"], "got": named}
    bl = done["blast"]
    want_traj, want_users = len(truth["failing"]), len(truth["affected_users"])
    got = (bl or {}).get("trajectories"), (bl or {}).get("distinct_users")
    checks["blast_counted_the_right_users"] = {
        "ok": bl is not None and got == (want_traj, want_users),
        "expected": {"trajectories": want_traj, "distinct_users": want_users},
        "got": {"trajectories": got[0], "distinct_users": got[1]}}
    cap = done["capture"]
    checks["capture_holds_the_off_rails_step"] = {
        "ok": cap is not None and cap.get("step") == alert_truth["off_rails_step"],
        "expected": alert_truth["off_rails_step"], "got": (cap or {}).get("step")}
    observed = [e for e in entries if e.get("action") == "gameday.observed"]
    if observed:
        # what the regions served when the runbook ended, not now: an undo after the drill
        # (or gameday run restoring) must not turn a passed drill into a failed one
        got = observed[-1].get("regions") or {}
        checks["every_region_ended_off"] = {
            "ok": bool(got) and all(v is False for v in got.values()), "got": got,
            "observed_at": observed[-1].get("ts")}
    elif live_status:
        rows = killswitch.status(runbook)
        checks["every_region_ended_off"] = {
            "ok": all(r.on is False for r in rows),
            "got": {r.region: r.on for r in rows}, "observed_at": "now (no runbook end recorded)"}

    steps = plan(runbook)
    recs = records(journal, steps)
    lines = []
    for s in steps:
        r = recs[s.id]
        if r.status in ("failed", "skipped", "pending", "running"):
            verdict = "fiction"
        elif r.edited or r.runs - r.reopened > 1:
            verdict = "workaround"
        else:
            verdict = "load-bearing"
        lines.append({"step": s.id, "command": s.command, "status": r.status, "runs": r.runs,
                      "edited": r.edited, "ran": r.command, "reason": r.reason, "verdict": verdict})
    targets = {s.id: s.target_seconds for s in steps}
    timing = [{"minute": m, "seconds": times[m], "target_seconds": targets.get(m),
               "on_time": None if times[m] is None or m not in targets else times[m] <= targets[m]}
              for m in MINUTES]
    passed = all(c["ok"] for c in checks.values()) and all(t["seconds"] is not None for t in timing)
    return {"incident": journal.incident, "scenario": start_entry["scenario"],
            "target": start_entry["target"], "alert_trace_id": alert, "started": start_entry["ts"],
            "clock_from": "page" if paged is not None else "start",
            "timing": timing, "checks": checks, "runbook_lines": lines, "passed": passed}


def score_markdown(doc: dict[str, Any]) -> str:
    from agentfire.report import _md

    out = [f"# Gameday {_md(doc['incident'])}: {_md(doc['scenario'])} on {doc['target']}", "",
           f"Result: **{'PASSED' if doc['passed'] else 'FAILED'}**. Alert trace `{_md(doc['alert_trace_id'])}`.", "",
           "## Time to each minute", "", "| minute | done at | target | on time |", "|---|---|---|---|"]
    for t in doc["timing"]:
        done = f"{t['seconds']:.0f}s" if t["seconds"] is not None else "never"
        ontime = {True: "yes", False: "LATE", None: "-"}[t["on_time"]]
        out.append(f"| {t['minute']} | {done} | {t['target_seconds'] or '-'}s | {ontime} |")
    out += ["", "## Answers", "", "| check | ok | expected | got |", "|---|---|---|---|"]
    for name, c in doc["checks"].items():
        out.append(f"| {name.replace('_', ' ')} | {'yes' if c['ok'] else 'NO'} | {_md(json.dumps(c.get('expected')))} "
                   f"| {_md(json.dumps(c.get('got')))} |")
    out += ["", "## The runbook's lines", "", "| step | verdict | status | runs | edited | line |",
            "|---|---|---|---|---|---|"]
    for r in doc["runbook_lines"]:
        out.append(f"| {_md(r['step'])} | {r['verdict']} | {r['status']} | {r['runs']} | "
                   f"{'yes' if r['edited'] else 'no'} | {_md(r['command'])} |")
    return "\n".join(out) + "\n"
