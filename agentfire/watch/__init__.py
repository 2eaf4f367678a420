"""`agentfire watch`: the page that carries the trace id (issue 16).

Each round (`run_round`):

1. reads the trajectories that ended, or went stale (STALE_AFTER with no activity), since the
   last round's position from the configured trace store (agentfire.watch.read); a trajectory
   arriving up to `lag_seconds` late is still read, none is read twice (the ids of the last
   `lag_seconds` are kept). At most `max_per_round` are triaged; the rest wait for the next round
   (the position stops at the last one triaged: nothing is skipped);
2. runs triage's detectors and the runbook's `policies:` on each (triage.triage_trajectory) and
   keeps verdicts of severity medium or high. Drill trajectories (tagged agentfire-gameday) are
   counted apart and never page;
3. groups them by signature: the verdict's kind and the blast signature derived from its
   off-rails step (blast.like.derive: the tool and the arguments the evidence names), under the
   first `watch.rules` entry that takes the kind and severity;
4. a group with `threshold` trajectories within `window_seconds` fires an alert; later rounds
   update it (trajectories, distinct users, still running: running trajectories of the window
   that match the signature) and resolve it after `resolve_after_seconds` without a new one;
5. sends what changed to every route (agentfire.watch.routes), and keeps per route what it took,
   so a route that failed gets it again next round and a restarted watch pages nobody twice;
6. saves the state (position, recent ids, groups and alerts) atomically under a lock.

A store that cannot be read within `read_timeout_seconds`, or a route that did not take an alert,
is a round error (the CLI exits 1); the position does not move past what was not read, and no
alert resolves on a round that read nothing. watch only reads and pages: it writes no journal and
changes no flag, cap or eval set.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agentfire.errors import StateFileError
from agentfire.trajectory import STALE_AFTER, Trajectory, iso, parse_time

STATE_VERSION = 1
DRILL_TAG = "agentfire-gameday"  # = agentfire.drill.DRILL_TAG (not imported: drill pulls the kill switch in)
MAX_USERS_KEPT = 10000
MAX_FINDINGS_SHOWN = 500
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


# --- state ------------------------------------------------------------------------------------


def state_path(runbook: Any) -> Path:
    return runbook.resolve_path(runbook.model.watch.state)


def load_state(path: Path) -> dict[str, Any]:
    """The saved state, or a fresh one when there is no file. A corrupt file is an error naming
    it (starting over would page again for every open alert)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": STATE_VERSION, "position": None, "recent": {}, "groups": {}, "rounds": 0}
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{path}: cannot read watch's state: {exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise StateFileError(f"{path}: watch's state is not JSON ({exc}); move it away to start over "
                             "(open alerts would page again)") from None
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION or not isinstance(doc.get("groups"), dict):
        raise StateFileError(f"{path}: not a watch state file of version {STATE_VERSION}; move it away to start over")
    doc.setdefault("recent", {})
    doc.setdefault("rounds", 0)
    return doc


def save_state(path: Path, state: dict[str, Any]) -> None:
    from agentfire._files import atomic_write

    atomic_write(path, (json.dumps(state, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))


# --- results ------------------------------------------------------------------------------------


@dataclass
class RoundResult:
    now: datetime
    position_before: datetime
    position_after: datetime
    store: str
    read_start: datetime | None = None
    read: int = 0  # trajectories read (any state)
    ended: int = 0  # new this round: ended or went stale since the last position
    triaged: int = 0
    drills_skipped: int = 0
    running: int = 0
    backlog: int = 0  # ended but left for the next round (max_per_round)
    findings: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    read_ms: int = 0
    triage_ms: int = 0
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def actions(self, action: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a.get("action") == action]

    def to_json(self) -> dict[str, Any]:
        return {
            "now": iso(self.now), "store": self.store,
            "position": {"before": iso(self.position_before), "after": iso(self.position_after)},
            "read_start": iso(self.read_start), "read": self.read, "ended": self.ended,
            "triaged": self.triaged, "drills_skipped": self.drills_skipped, "running": self.running,
            "backlog": self.backlog, "findings": self.findings[:MAX_FINDINGS_SHOWN],
            "findings_total": len(self.findings), "alerts": self.alerts, "deliveries": self.deliveries,
            "errors": self.errors, "ok": self.ok,
            "timing_ms": {"read": self.read_ms, "triage": self.triage_ms, "round": self.duration_ms},
        }


# --- one round --------------------------------------------------------------------------------


def done_time(t: Trajectory) -> datetime | None:
    """When the trajectory stopped: its end, or the moment it went stale; None while running."""
    if t.status in ("finished", "error"):
        return t.end or t.last_activity
    if t.stale and t.last_activity is not None:
        return t.last_activity + STALE_AFTER
    return None


def is_drill(t: Trajectory) -> bool:
    return any(isinstance(tag, str) and (tag == DRILL_TAG or tag.startswith(DRILL_TAG + ":")) for tag in t.tags)


def _rule_for(rules: list[Any], kind: str, severity: str) -> tuple[int, Any] | None:
    for n, rule in enumerate(rules):
        if SEVERITY_RANK.get(severity, 9) > SEVERITY_RANK[rule.min_severity]:
            continue
        if any(fnmatch.fnmatchcase(kind, k) for k in rule.kinds):
            return n, rule
    return None


def _signature(report: Any) -> tuple[dict[str, Any] | None, Any]:
    """The blast signature of the verdict's off-rails step (JSON and object), or (None, None)."""
    from agentfire.blast.like import derive
    from agentfire.errors import AgentfireError

    try:
        sig, _index = derive(report)
    except (AgentfireError, IndexError, KeyError, ValueError):
        return None, None
    return sig.to_json(), sig


def signature_id(agent: str, rule: str, kind: str, tool: str | None, sig: dict[str, Any] | None) -> str:
    key = json.dumps({"agent": agent, "rule": rule, "kind": kind, "tool": tool, "signature": sig},
                     sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def run_round(runbook: Any, *, now: datetime | None = None, since_s: float = 600.0, send: bool = True,
              store: Any = None, state_file: Path | None = None) -> RoundResult:
    """One round (see the module doc). `now` fixes the clock (replays and tests); `store` a
    trace store to read instead of the runbook's; `send=False` decides but delivers nothing (and
    saves nothing)."""
    from agentfire._files import locked

    path = state_file or state_path(runbook)
    with locked(path, timeout=30.0):  # two watches on one state file would page twice
        state = load_state(path)
        result = _round(runbook, state, now=now, since_s=since_s, send=send, store=store)
        if send:
            save_state(path, state)
    return result


def _round(runbook: Any, state: dict[str, Any], *, now: datetime | None, since_s: float, send: bool,
           store: Any) -> RoundResult:
    cfg = runbook.model.watch
    t0 = time.monotonic()
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    lag = timedelta(seconds=cfg.lag_seconds)
    position = parse_time(state.get("position")) or (now - timedelta(seconds=since_s))
    position = min(position, now)
    store_obj = store
    result = RoundResult(now, position, position, "")
    trajectories: list[Trajectory] | None = None
    try:
        trajectories, store_label = _read(runbook, store_obj, position, now, lag, cfg, result)
        result.store = store_label
    except _ReadFailed as exc:
        result.store = exc.store
        result.errors.append(str(exc))
        # a first run that could not read keeps its starting point: the next round reads from there
        state["position"] = iso(position)
    result.read_ms = int((time.monotonic() - t0) * 1000)

    groups: dict[str, dict[str, Any]] = state["groups"]
    recent: dict[str, str] = state["recent"]
    t1 = time.monotonic()
    if trajectories is not None:
        result.read = len(trajectories)
        floor = position - lag
        fresh: list[tuple[datetime, Trajectory]] = []
        running: list[Trajectory] = []
        for t in trajectories:
            d = done_time(t)
            if d is None:
                running.append(t)
                continue
            if d < floor or d > now or t.trace_id in recent:
                continue
            fresh.append((d, t))
        fresh.sort(key=lambda x: (x[0], x[1].trace_id))
        result.running = len(running)
        result.ended = len(fresh)
        take = fresh[: cfg.max_per_round]
        result.backlog = len(fresh) - len(take)
        new_position = take[-1][0] if result.backlog else now
        for d, t in take:
            recent[t.trace_id] = iso(d)
            if is_drill(t):
                result.drills_skipped += 1
                continue
            _triage_one(runbook, t, d, groups, result)
        result.triaged = len(take) - result.drills_skipped
        # the ids kept against double reads: those that could still show up as "new"
        keep_after = new_position - lag
        for tid in [tid for tid, d in recent.items() if (parse_time(d) or now) < keep_after]:
            del recent[tid]
        state["position"] = iso(new_position)
        result.position_after = new_position
        _still_running(groups, running)
    result.triage_ms = int((time.monotonic() - t1) * 1000)

    _lifecycle(runbook, groups, now, result, read_ok=trajectories is not None)
    if send:
        _deliver(runbook, groups, result)
    state["rounds"] = int(state.get("rounds", 0)) + 1
    state["last_round"] = iso(now)
    result.duration_ms = int((time.monotonic() - t0) * 1000)
    return result


class _ReadFailed(Exception):
    def __init__(self, message: str, store: str):
        super().__init__(message)
        self.store = store


def _read(runbook: Any, store: Any, position: datetime, now: datetime, lag: timedelta, cfg: Any,
          result: RoundResult) -> tuple[list[Trajectory], str]:
    from agentfire.errors import AgentfireError
    from agentfire.watch.read import read_window

    read_start = min(position - lag, now) - timedelta(seconds=cfg.lookback_seconds)
    changed_after = position - lag - STALE_AFTER
    result.read_start = read_start

    async def go() -> tuple[list[Trajectory], str]:
        nonlocal store
        own = store is None
        if own:
            from agentfire import providers

            store = providers.build("traces", runbook.traces, runbook)
        label = f"{store.kind}:{store.target}"
        try:
            return await asyncio.wait_for(read_window(store, read_start, now, changed_after),
                                          cfg.read_timeout_seconds), label
        except asyncio.TimeoutError:
            raise _ReadFailed(f"the trace store ({label}) did not answer within {cfg.read_timeout_seconds:g} s "
                              "(watch.read_timeout_seconds): this round read nothing", label) from None
        except AgentfireError as exc:
            raise _ReadFailed(f"the trace store ({label}) could not be read: {exc}", label) from None
        finally:
            if own:
                await store.aclose()

    try:
        return asyncio.run(go())
    except _ReadFailed:
        raise
    except AgentfireError as exc:  # building the store: a missing env variable, a bad URL
        raise _ReadFailed(f"the trace store could not be opened: {exc}", getattr(runbook.traces, "kind", "?")) from None


def _triage_one(runbook: Any, t: Trajectory, ended: datetime, groups: dict[str, dict[str, Any]],
                result: RoundResult) -> None:
    from agentfire.triage import triage_trajectory

    rb = runbook.model
    report = triage_trajectory(t, rb.triage, policies=rb.policies)
    v = report.verdict
    if v.severity not in ("high", "medium"):
        return
    hit = _rule_for(rb.watch.rules, v.kind, v.severity)
    sig_json, _sig = _signature(report) if hit is not None else (None, None)
    rule_name = (hit[1].name or f"rule {hit[0] + 1}") if hit else None
    sid = signature_id(rb.agent.name, rule_name or "-", v.kind, v.tool, sig_json)
    finding = {"trace_id": t.trace_id, "user_id": t.user_id, "status": t.status, "ended": iso(ended),
               "kind": v.kind, "severity": v.severity, "confidence": v.confidence, "step": v.step_index,
               "call_step": v.call_step_index, "tool": v.tool, "sentence": v.sentence,
               "signature_id": sid if hit else None, "rule": rule_name}
    result.findings.append(finding)
    if hit is None:
        return
    n, rule = hit
    g = groups.get(sid)
    if g is None:
        g = groups[sid] = {
            "id": sid, "rule": rule_name, "rule_index": n, "kind": v.kind, "tool": v.tool,
            "severity": rule.severity, "threshold": rule.threshold, "window_seconds": rule.window_seconds,
            "signature": sig_json, "status": "pending", "version": 0, "events": [], "trajectories": 0,
            "users": [], "users_over": 0, "first": None, "latest": None, "still_running": None,
            "running_ids": [], "fired_at": None, "resolved_at": None, "last_hit": None, "delivered": {},
        }
    if g["status"] == "resolved":  # it came back: a new alert (same signature, new incident)
        g.update(status="pending", events=[], trajectories=0, users=[], users_over=0, first=None,
                 fired_at=None, resolved_at=None)
    entry = {"trace_id": t.trace_id, "user_id": t.user_id, "ended": iso(ended), "step": v.step_index,
             "call_step": v.call_step_index, "sentence": v.sentence, "status": t.status}
    g["events"].append([iso(ended), t.trace_id])
    g["trajectories"] += 1
    if t.user_id and t.user_id not in g["users"]:
        if len(g["users"]) < MAX_USERS_KEPT:
            g["users"].append(t.user_id)
        else:
            g["users_over"] += 1
    if g["first"] is None:
        g["first"] = entry
    if g["latest"] is None or (g["latest"]["ended"] or "") <= entry["ended"]:
        g["latest"] = entry
    g["last_hit"] = max(g["last_hit"] or "", iso(ended) or "")
    g["version"] += 1


def _still_running(groups: dict[str, dict[str, Any]], running: list[Trajectory]) -> None:
    """Per open group: the running trajectories of the window that match its signature."""
    from agentfire.blast.signature import from_document

    for g in groups.values():
        if g["status"] == "resolved" or not g["signature"]:
            continue
        try:
            sig = from_document(g["signature"])
        except Exception:  # a signature watch derived itself; unreadable means no count, not a crash
            continue
        ids = sorted(t.trace_id for t in running if not is_drill(t) and sig.matches(t))
        if g.get("still_running") != len(ids):
            g["version"] += 1
        g["still_running"] = len(ids)
        g["running_ids"] = ids[:20]


def _lifecycle(runbook: Any, groups: dict[str, dict[str, Any]], now: datetime, result: RoundResult,
               *, read_ok: bool) -> None:
    cfg = runbook.model.watch
    for sid in list(groups):
        g = groups[sid]
        window = timedelta(seconds=g["window_seconds"])
        g["events"] = [e for e in g["events"] if (parse_time(e[0]) or now) > now - window]
        action = None
        if g["status"] == "pending":
            if len(g["events"]) >= g["threshold"]:
                g["status"] = "firing"
                g["fired_at"] = iso(now)
                g["version"] += 1
                action = "trigger"
            elif not g["events"]:
                del groups[sid]  # below the threshold and out of the window: forgotten
                continue
        elif g["status"] == "firing":
            quiet = now - (parse_time(g["last_hit"]) or now)
            # no new trajectory for resolve_after, and none of its kind still running
            if read_ok and quiet >= timedelta(seconds=cfg.resolve_after_seconds) and not g.get("still_running"):
                g["status"] = "resolved"
                g["resolved_at"] = iso(now)
                g["version"] += 1
                action = "resolve"
            elif g.get("_seen_version") != g["version"]:
                action = "update"
        elif g["status"] == "resolved":
            done = all(d.get("status") == "resolved" for d in g["delivered"].values())
            if done and now - (parse_time(g["resolved_at"]) or now) > max(window, timedelta(seconds=cfg.resolve_after_seconds)):
                del groups[sid]
                continue
        if g["status"] in ("firing", "resolved"):
            doc = alert_doc(runbook, g)
            doc["action"] = action or "none"
            result.alerts.append(doc)
        g["_seen_version"] = g["version"]


def alert_doc(runbook: Any, g: dict[str, Any], *, drill: bool = False) -> dict[str, Any]:
    """What every route renders: the alert of one group."""
    from agentfire.links import linker

    agent = runbook.agent.name
    link = _linker_cache(runbook, linker)
    first, latest = dict(g["first"] or {}), dict(g["latest"] or g["first"] or {})
    for e in (first, latest):
        if e.get("trace_id"):
            e["url"] = link(e["trace_id"])
    users = len(g["users"]) + g.get("users_over", 0)
    kind_words = g["kind"].replace("_", " ")
    where = f" at {g['tool']}" if g.get("tool") else ""
    running = g.get("still_running")
    summary = (f"{agent}: {kind_words}{where}: {g['trajectories']} trajectories, {users} users"
               + (f", {running} still running" if running else "") + f"; first trace {first.get('trace_id')}")
    step = first.get("step")
    return {
        "agent": agent, "signature_id": g["id"], "dedup_key": f"agentfire/{agent}/{g['id']}",
        "status": g["status"], "kind": g["kind"], "tool": g.get("tool"), "rule": g.get("rule"),
        "severity": g["severity"], "step": step, "call_step": first.get("call_step"),
        "sentence": first.get("sentence") or "", "summary": summary, "signature": g.get("signature"),
        "first": first, "latest": latest, "trajectories": g["trajectories"], "distinct_users": users,
        "still_running": running, "running_trace_ids": g.get("running_ids", []),
        "fired_at": g.get("fired_at"), "resolved_at": g.get("resolved_at"), "last_hit": g.get("last_hit"),
        "threshold": g["threshold"], "window_seconds": g["window_seconds"],
        "commands": {"runbook": f"agentfire runbook --trace {first.get('trace_id')}",
                     "blast": f"agentfire blast --like {first.get('trace_id')}:{step}"},
        "drill": drill,
    }


_LINKERS: dict[int, Any] = {}


def _linker_cache(runbook: Any, make: Any) -> Any:
    key = id(runbook)
    if key not in _LINKERS:
        _LINKERS[key] = make(runbook)
    return _LINKERS[key]


def configured_routes(runbook: Any) -> list[Any]:
    from agentfire.watch.routes import Route

    cfg = runbook.model.watch
    return [Route(spec, cfg.every_seconds) for spec in cfg.routes]


def _deliver(runbook: Any, groups: dict[str, dict[str, Any]], result: RoundResult) -> None:
    """Per route: what it has not taken yet (and, for Alertmanager, every firing alert again)."""
    cfg = runbook.model.watch
    ends_in = max(4 * cfg.every_seconds, 300.0)
    docs = {a["signature_id"]: a for a in result.alerts}
    plan: list[tuple[Any, list[tuple[dict[str, Any], str, dict[str, Any]]]]] = []
    for route in configured_routes(runbook):
        todo = []
        for sid, g in groups.items():
            if g["status"] not in ("firing", "resolved") or sid not in docs:
                continue
            had = g["delivered"].get(route.label) or {}
            if g["status"] == "resolved":
                if had.get("status") == "firing":
                    todo.append((docs[sid], "resolve", g))
                continue
            if had.get("status") != "firing":
                todo.append((docs[sid], "trigger", g))
            elif had.get("version") != g["version"] or route.resends:
                todo.append((docs[sid], "update", g))
        if todo:
            plan.append((route, todo))
    if not plan:
        return

    async def go() -> list[tuple[Any, list[tuple[dict[str, Any], str, dict[str, Any]]], list[Any]]]:
        from agentfire import _http

        async with _http.async_client(timeout=30.0) as client:
            async def one(route: Any, todo: list[Any]) -> tuple[Any, list[Any], list[Any]]:
                return route, todo, await route.send(client, [(a, act) for a, act, _g in todo], ends_in_s=ends_in)

            return await asyncio.gather(*(one(r, t) for r, t in plan))

    for route, todo, deliveries in asyncio.run(go()):
        # Alertmanager takes the batch in one request; the others one request per alert
        per_alert = deliveries * len(todo) if route.kind == "alertmanager" else deliveries
        for (doc, act, g), d in zip(todo, per_alert):
            entry = d.to_json()
            entry.update(signature_id=g["id"], action=act)
            result.deliveries.append(entry)
            if d.ok:
                g["delivered"][route.label] = {"status": "resolved" if act == "resolve" else "firing",
                                               "version": g["version"], "at": iso(result.now)}
            else:
                result.errors.append(f"route {route.label}: {act} of alert {g['id']} not delivered: {d.detail}")
        if len(per_alert) < len(todo):  # a route that failed before sending (a missing env variable)
            for doc, act, g in todo[len(per_alert):]:
                result.errors.append(f"route {route.label}: {act} of alert {g['id']} not delivered")


# --- drills -------------------------------------------------------------------------------------


def send_drill_page(runbook: Any, *, incident: str, scenario: str, trace_id: str, user_id: str | None,
                    step: int | None, sentence: str) -> list[dict[str, Any]]:
    """The drill's page through the same routes, marked as a drill (label drill=true, [DRILL]).
    Returns the deliveries; each carries `at`, when the route took it."""
    now = datetime.now(timezone.utc)
    g = {"id": signature_id(runbook.agent.name, "drill", scenario, incident, None), "kind": scenario,
         "tool": None, "rule": "gameday",
         "severity": runbook.model.watch.rules[0].severity if runbook.model.watch.rules else "critical", "status": "firing", "threshold": 1,
         "window_seconds": 600, "signature": None, "trajectories": 1, "users": [user_id] if user_id else [],
         "users_over": 0, "still_running": None, "running_ids": [], "fired_at": iso(now), "resolved_at": None,
         "last_hit": iso(now), "first": {"trace_id": trace_id, "user_id": user_id, "step": step,
                                         "sentence": sentence, "ended": iso(now)}, "latest": None}
    doc = alert_doc(runbook, g, drill=True)
    doc["summary"] = f"[DRILL {incident}] " + doc["summary"]
    out: list[dict[str, Any]] = []

    async def go() -> None:
        from agentfire import _http

        async with _http.async_client(timeout=30.0) as client:
            for route in configured_routes(runbook):
                for d in await route.send(client, [(doc, "trigger")], ends_in_s=600.0):
                    entry = d.to_json()
                    entry["at"] = iso(datetime.now(timezone.utc))
                    out.append(entry)

    asyncio.run(go())
    return out
