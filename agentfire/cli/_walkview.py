"""What the runbook walk shows after each step (issue 14): the step's own short result, read from
the command's --json document, so "check before moving on" can be checked on the screen.

kill: every region and its outcome; freeze: the cap, the p50 and the in-flight trajectories
over it; triage: the verdict with its step and evidence; blast: count, distinct users, still
open; capture: the case, where it went, and whose expectation it holds.
"""

from __future__ import annotations

from typing import Any


def _usd(v: Any) -> str:
    try:
        return f"${float(v):,.4f}"
    except (TypeError, ValueError):
        return "-"


def summary(name: str, doc: Any) -> list[str]:
    """Plain lines (no markup) summarising one step's --json output; [] when there is nothing."""
    if not isinstance(doc, dict):
        return []
    try:
        fn = _SUMMARIES.get(name)
        return fn(doc) if fn else []
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return []  # a summary must never break the walk


def _kill(doc: dict[str, Any]) -> list[str]:
    regions = doc.get("regions") or []
    parts = [f"{r.get('region')} {r.get('outcome')}" for r in regions]
    out = ["regions: " + ", ".join(parts)] if parts else []
    bad = [r for r in regions if r.get("outcome") not in ("CONFIRMED", "ALREADY_OFF", "ALREADY_ON", "DRY_RUN")]
    for r in bad:
        out.append(f"  {r.get('region')}: {r.get('detail') or ''}".rstrip())
    return out


def _freeze(doc: dict[str, Any]) -> list[str]:
    after = doc.get("after") or {}
    dist = doc.get("distribution") or {}
    line = f"freeze cap {_usd(after.get('freeze_usd'))}"
    if doc.get("level"):
        line += f" (= {doc['level']})"
    if dist:
        line += f"; p50 {_usd(dist.get('p50'))} over {dist.get('n')} trajectories"
    line += f"; admission {after.get('admission', '?')}"
    out = [line]
    over = doc.get("in_flight_over_cap_ids") or []
    n_over = doc.get("in_flight_over_cap", len(over))
    if n_over:
        ids = ", ".join(f"{x.get('trace_id')} ({_usd(x.get('cost_usd'))})" for x in over[:5])
        out.append(f"in flight over the new cap: {n_over}" + (f": {ids}" if ids else ""))
    else:
        out.append("in flight over the new cap: none")
    return out


def _triage(doc: dict[str, Any]) -> list[str]:
    v = doc.get("verdict") or {}
    out = []
    step = v.get("step_index")
    head = f"verdict: step {step}" + (f" ({v['tool']})" if v.get("tool") else "") if step is not None \
        else "verdict: no off-rails step named"
    out.append(head + (f": {v['sentence']}" if v.get("sentence") else ""))
    evidence = [f for f in doc.get("findings") or [] if f.get("step_index") == step]
    if evidence:
        f = evidence[0]
        out.append(f"evidence ({f.get('severity')} {f.get('kind')}): {f.get('evidence')}")
    if v.get("confidence") is not None:
        out.append(f"confidence: {v['confidence']}")
    return out


def _blast(doc: dict[str, Any]) -> list[str]:
    line = (f"{doc.get('trajectories')} trajectories, {doc.get('distinct_users')} distinct users, "
            f"{doc.get('still_open_count', 0)} still open")
    out = [line]
    if doc.get("still_open"):
        out.append("STILL OPEN: back to minute one (the kill step is proposed again)")
    if doc.get("complete") is False:
        out.append("the scan did NOT complete: the counts are a lower bound")
    return out


def _capture(doc: dict[str, Any]) -> list[str]:
    case = doc.get("case") if isinstance(doc.get("case"), dict) else doc
    where = f"{doc.get('eval_set')}:{doc.get('line')}" if doc.get("eval_set") else ""
    status = {"added": "added", "exists": "already there"}.get(doc.get("outcome"), doc.get("outcome") or "")
    out = [f"case {doc.get('case_id') or case.get('id')} {status}" + (f" in {where}" if where else "")]
    if case.get("expected"):
        out.append(f"expected ({case.get('expected_source', '?')}): {case['expected']}")
    return out


_SUMMARIES = {"kill": _kill, "freeze": _freeze, "triage": _triage, "blast": _blast, "capture": _capture}
