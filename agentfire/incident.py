"""Closing an incident: no incident is closed until its regression case is in the eval set.

`close` refuses while the incident has no captured case that is still in the eval set (and, with
`verify`, while the given test command fails), then writes the incident report beside the
journal, as markdown for people and JSON for tools: the timeline from the journal, each action
and its outcome, the off-rails step, the blast radius when one was journaled, the case ids.
The report is written atomically before the `incident.close` entry is journaled, so a failed
write leaves the incident open, never half closed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agentfire._files import atomic_write
from agentfire.errors import NotDoneError, StateFileError, UsageError
from agentfire.evalset import evalset_for
from agentfire.journal import CLOSE, Journal, closed_entry, iso, list_incidents, utcnow
from agentfire.textsafe import neutralise

CAPTURED = ("added", "exists")
# bookkeeping keys every journal entry has; the rest is what the action did
_BOOKKEEPING = {"ts", "incident", "actor", "action", "outcome", "duration_ms"}


def _inert(text: str, limit: int) -> str:
    """One line of untrusted text for the report: escapes visible, newlines shown, cut."""
    out = neutralise(text, keep_newlines=False)
    return out if len(out) <= limit else f"{out[:limit]}… [+{len(out) - limit:,} chars]"


def _ts(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class IncidentSummary:
    id: str
    status: str  # "open" | "closed"
    opened_at: str | None
    closed_at: str | None
    actions: int
    cases: list[str]
    last_action: str | None
    problem: str | None = None  # the journal could not be read

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


_closed_entry = closed_entry


def _captures(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries
            if e.get("action") == "capture" and e.get("outcome") in CAPTURED and e.get("case_id")]


def summarize(journal: Journal) -> IncidentSummary:
    try:
        entries = journal.entries()
    except StateFileError as exc:
        return IncidentSummary(journal.incident, "unknown", None, None, 0, [], None, str(exc))
    closed = _closed_entry(entries)
    return IncidentSummary(
        id=journal.incident,
        status="closed" if closed else "open",
        opened_at=entries[0].get("ts") if entries else None,
        closed_at=closed.get("ts") if closed else None,
        actions=sum(1 for e in entries if e.get("action") != "incident.open"),
        cases=list(dict.fromkeys(e["case_id"] for e in _captures(entries))),
        last_action=entries[-1].get("action") if entries else None,
    )


def list_all(runbook: Any) -> list[IncidentSummary]:
    """Every incident in the journal directory, newest journal first."""
    return [summarize(Journal(runbook.journal_dir, i)) for i in list_incidents(runbook.journal_dir)]


def latest_open(runbook: Any) -> str | None:
    for s in list_all(runbook):
        if s.status == "open":
            return s.id
    return None


# --- the report -----------------------------------------------------------------------------


def _details(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in _BOOKKEEPING}


def build_report(journal: Journal, runbook: Any, *, closed_by: str,
                 verify: dict[str, Any] | None = None) -> dict[str, Any]:
    """`agentfire report`'s document (timeline, runbook steps, actors) plus what closing adds:
    the off-rails step, the blast radius, the cases, the verification."""
    from agentfire import report as report_mod
    from agentfire.walk import plan

    entries = journal.entries()
    doc = report_mod.build(journal, plan(runbook))
    if len(doc["timeline"]) == len(entries):
        for row, entry in zip(doc["timeline"], entries):
            row["outcome"] = entry.get("outcome")
    captures = _captures(entries)
    evalset = evalset_for(runbook)
    cases = []
    for e in captures:
        if any(c["case_id"] == e["case_id"] for c in cases):
            continue
        found = evalset.find(e["case_id"])
        cases.append({"case_id": e["case_id"], "trace_id": e.get("trace_id"),
                      "step": e.get("step"), "tool": e.get("tool"),
                      "eval_set": str(evalset.path), "line": found[0] if found else None,
                      "in_eval_set": found is not None})
    last = captures[-1] if captures else {}
    blasts = [e for e in entries if str(e.get("action", "")).startswith("blast")]
    triages = [e for e in entries if str(e.get("action", "")).startswith("triage")]
    now = utcnow()
    opened = _ts(entries[0].get("ts")) if entries else None
    doc.update({
        "status": "closed",
        "closed_at": iso(now),
        "closed_by": closed_by,
        "duration_s": round((now - opened).total_seconds(), 1) if opened else None,
        "off_rails": {
            "trace_id": last.get("trace_id"), "step": last.get("step"), "tool": last.get("tool"),
            "why": last.get("why"), "chosen_by": last.get("chosen_by"),
        } if last else None,
        "triage": _details(triages[-1]) if triages else None,
        "blast_radius": {**_details(blasts[-1]), "ts": blasts[-1].get("ts")} if blasts else None,
        "cases": cases,
        "verify": verify,
        "still_in_effect": still_in_effect(journal),
    })
    return doc


def _cell(value: Any, limit: int = 160) -> str:
    """Untrusted text as one inert markdown table cell."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return _inert(text, limit).replace("|", "\\|")


def render_markdown(r: dict[str, Any]) -> str:
    """`agentfire report`'s markdown with the closing sections after its header."""
    from agentfire import report as report_mod

    out = [f"Closed {r['closed_at']} by {_cell(r['closed_by'])}"
           + (f" after {r['duration_s']:.0f} s." if r.get("duration_s") is not None else "."), ""]
    out += ["## Off-rails step", ""]
    off = r.get("off_rails")
    if off:
        out.append(f"Trace `{_cell(off['trace_id'])}`, step {off['step']} "
                   f"(`{_cell(off['tool'])}`, chosen by {_cell(off['chosen_by'])}).")
        if off.get("why"):
            out += ["", f"> {_cell(off['why'], 600)}"]
    else:
        out.append("(not recorded)")
    out += ["", "## Blast radius", ""]
    blast = r.get("blast_radius")
    if blast:
        out += [f"- {_cell(k)}: {_cell(v, 300)}" for k, v in blast.items()]
    else:
        out.append("(no blast radius was journaled for this incident)")
    out += ["", "## Regression cases", "", "| case | trace | step | tool | eval set line |",
            "|---|---|---|---|---|"]
    for c in r["cases"]:
        where = f"{_cell(c['eval_set'])}:{c['line']}" if c["in_eval_set"] else "MISSING"
        out.append(f"| `{c['case_id']}` | `{_cell(c['trace_id'])}` | {c['step']} | "
                   f"`{_cell(c['tool'])}` | {where} |")
    left = r.get("still_in_effect") or []
    out += ["", "## Still in effect", ""]
    out += [f"- {_cell(x['detail'], 300)}: restore with `{_cell(x['restore'], 300)}`" for x in left] or [
        "(nothing: every kill and freeze of this incident was restored)"]
    if r.get("after_close"):
        out += ["", "## After closing", "", "| time | who | action | outcome |", "|---|---|---|---|"]
        out += [f"| {_cell(e.get('ts'))} | {_cell(e.get('actor'))} | {_cell(e.get('action'))} | "
                f"{_cell(e.get('outcome'))} |" for e in r["after_close"]]
    if r.get("verify"):
        v = r["verify"]
        out += ["", "## Verification", "",
                f"`{_cell(v['command'], 300)}` exited {v['exit_code']} in {v['duration_ms']} ms."]
    base = report_mod.to_markdown(r)
    head, sep, rest = base.partition("\n## ")
    md = head.rstrip("\n") + "\n\n" + "\n".join(out) + "\n" + (sep + rest if sep else "")
    # the timeline cells come from journal entries: no escape sequence may survive into the file
    return neutralise(md)


# --- what the incident left in effect -------------------------------------------------------


def still_in_effect(journal: Journal) -> list[dict[str, Any]]:
    """What this incident changed and has not restored, from its journal: regions it turned off
    and not turned back on, freezes it set and not lifted; each with the command that restores it."""
    from agentfire.budget import freezes_to_lift
    from agentfire.killswitch import regions_to_restore

    out: list[dict[str, Any]] = []
    inc = journal.incident
    killed = regions_to_restore(journal)
    if killed:
        out.append({"what": "kill", "regions": sorted(killed),
                    "detail": f"the agent is still killed by {inc} in {', '.join(sorted(killed))}",
                    "restore": f"agentfire --incident {inc} kill --undo"})
    scopes = dict.fromkeys(str(e.get("scope")) for e in journal.iter_entries()
                           if e.get("action") == "freeze" and e.get("scope"))
    for scope in scopes:
        if freezes_to_lift(journal, scope) is not None:
            out.append({"what": "freeze", "scope": scope,
                        "detail": f"spend on scope {scope} is still frozen by {inc}",
                        "restore": f"agentfire --incident {inc} freeze --lift --scope {scope}"})
    return out


def amend_closed_report(journal: Journal) -> bool:
    """A restore (kill --undo, freeze --lift) journaled after the incident was closed: add it to
    the closed incident's report (`after_close`) and refresh what is still in effect. Returns
    False when the incident is not closed (nothing to amend)."""
    entries = journal.entries()
    closed = closed_entry(entries)
    if closed is None:
        return False
    md_path, json_path = report_paths(journal)
    try:
        report = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateFileError(f"{json_path}: cannot read the closed incident's report ({exc})") from None
    after = entries[entries.index(closed) + 1:]
    report["after_close"] = [{"ts": e.get("ts"), "actor": e.get("actor"), "action": e.get("action"),
                              "outcome": e.get("outcome"), **_details(e)} for e in after]
    report["still_in_effect"] = still_in_effect(journal)
    atomic_write(json_path, _json_bytes(report))
    atomic_write(md_path, render_markdown(report).encode("utf-8", "backslashreplace"))
    return True


# --- close ----------------------------------------------------------------------------------


@dataclass
class CloseResult:
    incident: str
    already_closed: bool
    report_md: Path
    report_json: Path
    report: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"incident": self.incident, "already_closed": self.already_closed,
                "report_md": str(self.report_md), "report_json": str(self.report_json),
                "cases": self.report.get("cases", []),
                "off_rails": self.report.get("off_rails"),
                "still_in_effect": self.report.get("still_in_effect", []),
                "closed_at": self.report.get("closed_at")}


def report_paths(journal: Journal) -> tuple[Path, Path]:
    return (journal.dir / f"{journal.incident}.report.md",
            journal.dir / f"{journal.incident}.report.json")


def _json_bytes(doc: Any) -> bytes:
    text = json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # unpaired surrogates from trace content: as JSON escapes
        return (json.dumps(doc, ensure_ascii=True, indent=2, default=str) + "\n").encode()


def run_verify(command: str, cwd: Path) -> dict[str, Any]:
    """Run the regression suite (e.g. `pytest -q tests/test_regressions.py`); no shell."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"--verify: cannot parse {command!r}: {exc}") from None
    if not argv:
        raise UsageError("--verify needs a command")
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, errors="replace")
    except FileNotFoundError:
        raise UsageError(f"--verify: command not found: {argv[0]}") from None
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
    return {"command": command, "exit_code": proc.returncode,
            "duration_ms": int((time.monotonic() - started) * 1000), "tail": tail}


def close(runbook: Any, journal: Journal, *, actor: str, verify: str | None = None) -> CloseResult:
    """Refuse without a captured case (or with a failing --verify); else report, then close."""
    md_path, json_path = report_paths(journal)
    if not journal.exists():
        raise UsageError(f"no incident {journal.incident!r} in {journal.dir}")
    entries = journal.entries()
    done = _closed_entry(entries)
    if done is not None:
        prior = {}
        if json_path.exists():
            try:
                prior = json.loads(json_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                prior = {}
        return CloseResult(journal.incident, True, md_path, json_path, prior)
    captures = _captures(entries)
    if not captures:
        raise NotDoneError(
            f"incident {journal.incident} has no captured regression case: run "
            f"`agentfire --incident {journal.incident} capture TRACE_ID --expected ...` first"
        )
    evalset = evalset_for(runbook)
    present = [e["case_id"] for e in captures if evalset.find(e["case_id"]) is not None]
    if not present:
        ids = ", ".join(dict.fromkeys(e["case_id"] for e in captures))
        raise NotDoneError(
            f"incident {journal.incident}: its case(s) {ids} are no longer in {evalset.path}; "
            "capture again before closing"
        )
    verified = None
    if not verify and not getattr(runbook, "drill_scope", None):
        # a drill's cases are in the drill eval set: the real regression suite is not its proof
        verify = runbook.model.evals.verify
    if verify:
        verified = run_verify(verify, runbook.base_dir)
        journal.append("incident.verify", actor=actor, command=verify,
                       exit_code=verified["exit_code"], duration_ms=verified["duration_ms"],
                       outcome="PASSED" if verified["exit_code"] == 0 else "FAILED")
        if verified["exit_code"] != 0:
            raise NotDoneError(
                f"incident {journal.incident} stays open: `{verify}` exited "
                f"{verified['exit_code']} (the regression suite must run green against the fix)"
            )
    report = build_report(journal, runbook, closed_by=actor, verify=verified)
    atomic_write(json_path, _json_bytes(report))
    atomic_write(md_path, render_markdown(report).encode("utf-8", "backslashreplace"))
    journal.append(CLOSE, actor=actor, outcome="CLOSED", cases=present,
                   report_md=str(md_path), report_json=str(json_path),
                   before={"status": "open"}, after={"status": "closed"})
    return CloseResult(journal.incident, False, md_path, json_path, report)
