"""`agentfire report`: an incident's timeline from its journal, as JSON and markdown.

Each runbook step's time against its target, every action and its outcome, and who did what.
Journal content is data (a reason or verdict can hold anything): markdown output escapes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentfire.journal import Journal

_SUMMARY_KEYS = ("outcome", "reason", "step", "phase", "command", "exit_code", "all_off",
                 "trace_id", "case_id", "verdict", "trajectories", "distinct_users", "still_open")


# When each minute counts as done, from the journal entries the commands write themselves: a
# responder may run them by hand instead of through `agentfire runbook`.
MINUTE_DONE = {
    "kill": lambda e: e.get("action") == "kill" and e.get("outcome") == "all_off",
    "freeze": lambda e: e.get("action") == "freeze" and e.get("outcome") == "CONFIRMED",
    "triage": lambda e: e.get("action") == "triage" and e.get("outcome") == "verdict",
    "blast": lambda e: e.get("action") == "blast" and e.get("outcome") == "complete",
    "capture": lambda e: e.get("action") == "capture" and e.get("outcome") in ("added", "exists"),
}


def minute_done(entries: list[dict[str, Any]], minute: str, trace_id: str | None = None) -> dict[str, Any] | None:
    """The first entry that completes `minute` (for triage and capture: of `trace_id`, if given)."""
    ok = MINUTE_DONE.get(minute)
    if ok is None:
        return None
    for e in entries:
        if ok(e) and (trace_id is None or minute not in ("triage", "capture") or e.get("trace_id") == trace_id):
            return e
    return None


def _minute_of(step: Any) -> str:
    """kill/freeze/... for a step whose command runs that agentfire command (else its id)."""
    words = [w for w in step.command.split() if not w.startswith("-")]
    return words[1] if len(words) > 1 and words[0] == "agentfire" else step.id


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def summarize(entry: dict[str, Any]) -> str:
    parts = []
    for k in _SUMMARY_KEYS:
        v = entry.get(k)
        if v is None or v == "" or k == "step":
            continue
        if isinstance(v, dict):
            v = v.get("sentence") or v.get("id") or ""
        parts.append(f"{k}={v}")
    regions = entry.get("regions")
    if isinstance(regions, list) and regions:
        parts.append("regions: " + ", ".join(
            f"{r.get('region')}={r.get('outcome')}" for r in regions if isinstance(r, dict)))
    return "; ".join(str(p) for p in parts)


def build(journal: Journal, steps: list[Any] | None = None) -> dict[str, Any]:
    entries = journal.entries()
    if not entries:
        return {"incident": journal.incident, "started": None, "timeline": [], "steps": []}
    # the clock starts at the page: a drill's gameday.start (what gameday score measures from), else
    # the first entry; and a minute is done at its first completing entry (the first confirmed
    # kill, not a re-run after blast sent the walk back to minute one), as gameday score counts
    page = next((e for e in entries if e.get("action") == "gameday.start"), None)
    t0 = _ts((page or entries[0])["ts"])
    after_page = [e for e in entries if _ts(e["ts"]) >= t0]
    alert = (page or {}).get("alert_trace_id")
    timeline = [
        {"ts": e["ts"], "t_plus_s": round((_ts(e["ts"]) - t0).total_seconds(), 3),
         "actor": e.get("actor"), "action": e.get("action"),
         **({"step": e["step"]} if "step" in e else {}), "summary": summarize(e)}
        for e in entries
    ]
    step_rows = []
    if steps is not None:
        from agentfire.walk import records

        recs = records(journal, steps)
        for s in steps:
            r = recs[s.id]
            status, actor, command, ended = r.status, r.actor, r.command, r.ended
            first = minute_done(after_page, _minute_of(s), trace_id=alert)
            if r.runs == 0:
                # not walked through the runbook: did someone run the minute by hand?
                if first is not None:
                    status, actor, command, ended = "ok", first.get("actor"), "(run directly)", first["ts"]
            elif status == "ok" and first is not None:
                ended = first["ts"]
            done_at = round((_ts(ended) - t0).total_seconds(), 3) if ended else None
            step_rows.append({
                "step": s.id, "title": s.title, "status": status, "actor": actor,
                "command": command, "exit_code": r.exit_code, "runs": r.runs,
                "target_seconds": s.target_seconds, "done_at_s": done_at,
                "on_time": None if done_at is None or status != "ok" else done_at <= s.target_seconds,
                "carried": r.carried,
            })
    actors = sorted({e.get("actor") for e in entries if e.get("actor")})
    return {"incident": journal.incident, "started": entries[0]["ts"], "ended": entries[-1]["ts"],
            "actors": actors, "steps": step_rows, "timeline": timeline}


def _md(text: Any) -> str:
    from agentfire.textsafe import neutralise

    # control characters first: an ESC from a reason or a trace would drive the reader's terminal
    s = neutralise(str(text if text is not None else ""), keep_newlines=False)
    for ch in "\\`*_{}[]<>()#+!|":
        s = s.replace(ch, "\\" + ch)
    return " ".join(s.split())[:400]


def to_markdown(doc: dict[str, Any]) -> str:
    lines = [f"# Incident {_md(doc['incident'])}", ""]
    if not doc.get("started"):
        return "\n".join(lines + ["No journal entries.", ""])
    lines += [f"Started {doc['started']}, last entry {doc['ended']}. "
              f"People: {', '.join(_md(a) for a in doc['actors'])}.", ""]
    if doc["steps"]:
        lines += ["## Runbook steps", "", "| step | status | done at | target | on time | who | command |",
                  "|---|---|---|---|---|---|---|"]
        for r in doc["steps"]:
            done = f"{r['done_at_s']:.0f}s" if r["done_at_s"] is not None else "-"
            ontime = {True: "yes", False: "LATE", None: "-"}[r["on_time"]]
            lines.append(f"| {_md(r['step'])} | {r['status']} | {done} | {r['target_seconds']}s | {ontime} "
                         f"| {_md(r['actor'])} | {_md(r['command'])} |")
        lines.append("")
    lines += ["## Timeline", "", "| t+ | who | action | what |", "|---|---|---|---|"]
    for e in doc["timeline"]:
        lines.append(f"| {e['t_plus_s']:.1f}s | {_md(e['actor'])} | {_md(e['action'])} | {_md(e['summary'])} |")
    return "\n".join(lines) + "\n"
