"""`agentfire runbook`: the five minutes as one timed, journaled, resumable walk.

The steps come from runbook.yaml (`steps:`: id, title, command, target_seconds, check). Each step's
command is a template over what earlier steps found: `{trace_id}` (from the alert), then
`{off_rails_step}`, `{off_rails_tool}` and `{verdict}` from triage, `{still_open}` from blast.
A command is run as a real `agentfire` process with `--json`, inside the same incident, so the
walk sees exactly what a responder would, and each command journals its own action as usual.

The walk journals `runbook.step` entries (phase start / end, outcome ok | failed | skipped,
the command as run, exit code, duration, what it carried forward). Resuming reads them back: the
walk continues at the first step without an ok or skipped end, so an interrupted step (Ctrl-C, a
lost SSH session) is simply proposed again. Every agentfire command is safe to re-run.

Targets are measured from the incident's start (minute one: kill within 60 s, and so on).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterator

from agentfire.config import Runbook, RunbookStep
from agentfire.errors import NotDoneError, UsageError
from agentfire.journal import Journal, utcnow

# Keys a step template may use, and where they come from.
VARIABLES = {
    "trace_id": "the alert (--trace or answers file)",
    "off_rails_step": "triage: verdict.step_index",
    "off_rails_tool": "triage: verdict.tool",
    "verdict": "triage: verdict.sentence",
    "expected": "triage: the behaviour the regression case expects instead of the verdict",
    "still_open": "blast: still_open",
    "incident": "the incident id",
}

# Further keys that extract() carries forward from a step's --json output.
EXTRACTED = {"trajectories": "blast", "distinct_users": "blast", "all_off": "kill", "case_id": "capture"}

DEFAULT_STEPS: list[dict[str, Any]] = [
    {"id": "kill", "title": "Kill the agent in every region", "target_seconds": 60,
     "command": "agentfire kill --region all --yes --reason 'runbook: minute one'",
     "check": "every region CONFIRMED or ALREADY_OFF; users see the approved fallback"},
    {"id": "freeze", "title": "Freeze spend caps near the p50 trajectory cost", "target_seconds": 120,
     "command": "agentfire freeze --to p50 --window 1h",
     "check": "read-back matches; admission frozen; in-flight trajectories above the cap are named"},
    {"id": "triage", "title": "Walk the alerting trajectory backward", "target_seconds": 180,
     "command": "agentfire triage {trace_id}",
     "check": "the verdict names one step; it makes sense against the trace"},
    {"id": "blast", "title": "Blast radius of the off-rails signature", "target_seconds": 240,
     "command": "agentfire blast --like {trace_id}:{off_rails_step} --since 6h",
     "check": "count, distinct users, still open; if still open, go back to minute one"},
    {"id": "capture", "title": "Capture the failing input as a regression case", "target_seconds": 300,
     "command": "agentfire capture {trace_id} --step {off_rails_step} --expected {expected}",
     "check": "the case id is in the eval set"},
]


def plan(runbook: Runbook) -> list[RunbookStep]:
    steps = runbook.model.steps
    if steps:
        return list(steps)
    return [RunbookStep(**s) for s in DEFAULT_STEPS]


@dataclass
class StepRecord:
    id: str
    status: str = "pending"  # pending | running | ok | failed | skipped
    started: str | None = None
    ended: str | None = None
    duration_ms: int | None = None
    exit_code: int | None = None
    command: str | None = None
    actor: str | None = None
    carried: dict[str, Any] = field(default_factory=dict)
    runs: int = 0
    edited: bool = False  # run with a command other than the runbook's proposal
    reopened: int = 0  # sent back to this step by the walk itself (blast still open)
    reason: str | None = None  # why it was skipped

    @property
    def done(self) -> bool:
        return self.status in ("ok", "skipped")


@dataclass
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_ms: int
    document: Any = None  # the parsed --json output, when there is one


def records(journal: Journal, steps: list[RunbookStep]) -> dict[str, StepRecord]:
    """The walk's state, read back from the journal."""
    out = {s.id: StepRecord(s.id) for s in steps}
    for e in journal.iter_entries():
        if e.get("action") != "runbook.step":
            continue
        rec = out.get(e.get("step"))
        if rec is None:
            continue
        if e.get("phase") == "start":
            rec.status, rec.started, rec.actor = "running", e["ts"], e.get("actor")
            rec.command = e.get("command")
            rec.runs += 1
            if e.get("command") != e.get("proposed"):
                rec.edited = True
        elif e.get("phase") == "end":
            rec.status = e.get("outcome", "failed")
            rec.ended = e["ts"]
            rec.exit_code = e.get("exit_code")
            rec.duration_ms = e.get("duration_ms")
            rec.carried = e.get("carried") or {}
            rec.command = e.get("command", rec.command)
            rec.reason = e.get("reason")
        elif e.get("phase") == "reopen":
            # blast found trajectories still open: minute one again (not a sign the line is wrong)
            rec.status = "pending"
            rec.reopened += 1
    return out


def carried_variables(recs: dict[str, StepRecord], base: dict[str, Any]) -> dict[str, Any]:
    values = dict(base)
    for rec in recs.values():
        if rec.status == "ok":
            values.update({k: v for k, v in rec.carried.items() if v is not None})
    return values


def render_command(template: str, values: dict[str, Any]) -> str:
    """Fill {placeholders}; a missing one is a UsageError naming it and where it comes from."""
    import string

    missing = [
        name for _, name, _, _ in string.Formatter().parse(template)
        if name and name not in values
    ]
    if missing:
        name = missing[0]
        source = VARIABLES.get(name) or EXTRACTED.get(name)
        if source is None:
            raise UsageError(f"step needs {{{name}}}, which no step provides: give it in the --answers "
                             f"file's variables, or fix the step's command in runbook.yaml")
        raise UsageError(f"step needs {{{name}}} ({source}), which is not known yet")
    # values are quoted: a trace id or verdict from a trace store must never become two arguments
    return template.format(**{k: shlex.quote(str(v)) for k, v in values.items()})


def template_names(template: str) -> list[str]:
    import string

    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except ValueError:  # config validation reports a broken template with its line
        return []


# what each agentfire command's --json output carries forward (see extract())
PROVIDES = {
    "triage": ("off_rails_step", "off_rails_tool", "verdict", "expected", "trace_id"),
    "blast": ("still_open", "trajectories", "distinct_users"),
    "kill": ("all_off",),
    "capture": ("case_id",),
}


def command_name(command: str) -> str:
    """The agentfire subcommand a step's line runs ('' for another program or an unparsable line)."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return ""
    if not argv or argv[0] != "agentfire":
        return ""
    return next((a for a in argv[1:] if not a.startswith("-")), "")


def unprovided(steps: list[RunbookStep], base: dict[str, Any],
               overrides: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """(step id, variable, why) for every template variable that will not be known when its step
    comes up: given by nothing (the alert/answers or any step), or only by a later step. Found
    before the walk starts, not at step 3 after kill and freeze ran."""
    known = {k for k, v in base.items() if v is not None} | {"incident"}
    out = []
    for s in steps:
        command = (overrides or {}).get(s.id) or s.command
        if command == "skip":
            continue
        for n in dict.fromkeys(template_names(command)):
            if n in known:
                continue
            later = [t.id for t in steps[steps.index(s) + 1:]
                     if n in PROVIDES.get(command_name((overrides or {}).get(t.id) or t.command), ())]
            if n == "trace_id":
                why = "the alert's trace id: pass --trace, or trace_id in the --answers file"
            elif later:
                why = f"known only after step {later[0]}, a later step"
            elif n in VARIABLES or n in EXTRACTED:
                why = f"no earlier step provides it ({VARIABLES.get(n) or EXTRACTED.get(n)})"
            else:
                why = "no step provides it"
            out.append((s.id, n, why))
        known |= set(PROVIDES.get(command_name(command), ()))
    return out


def plan_problems(steps: list[RunbookStep], base: dict[str, Any],
                  overrides: dict[str, Any] | None = None) -> str | None:
    """One line naming every variable the walk would miss, or None when it can run to the end."""
    missing = unprovided(steps, base, overrides)
    for s in steps:
        command = (overrides or {}).get(s.id) or s.command
        try:
            shlex.split(command)
        except ValueError as exc:
            missing.append((s.id, "", f"not a command line ({exc})"))
    if not missing:
        return None
    listed = "; ".join(f"{{{name}}} (step {step}): {why}" if name else f"step {step}: {why}"
                       for step, name, why in missing)
    return (f"the walk would stop half-way: {listed}. Give the values (--trace, or the --answers "
            "file's variables), or fix the step's command in runbook.yaml")


def extract(command_name: str, doc: Any) -> dict[str, Any]:
    """What a command's --json output carries forward to later steps."""
    if not isinstance(doc, dict):
        return {}
    if command_name == "triage":
        verdict = doc.get("verdict") or {}
        sentence = verdict.get("sentence")
        named = verdict.get("kind") != "none"  # "no detector fired" points where to read, not a finding
        return {"off_rails_step": verdict.get("step_index") if named else None,
                "off_rails_tool": verdict.get("tool") if named else None,
                "verdict": sentence, "trace_id": (doc.get("header") or {}).get("trace_id"),
                # a starting point for the regression case; a person edits it in the walk
                "expected": (f"The agent must not take the off-rails step again: {sentence}"
                             if sentence else None)}
    if command_name == "blast":
        return {"still_open": bool(doc.get("still_open")), "trajectories": doc.get("trajectories"),
                "distinct_users": doc.get("distinct_users")}
    if command_name == "kill":
        return {"all_off": doc.get("all_off")}
    if command_name == "capture":
        case = doc.get("case") if isinstance(doc.get("case"), dict) else doc
        return {"case_id": case.get("id")}
    return {}


def expected_is_derived(template: str, base: dict[str, Any]) -> bool:
    """A capture step whose --expected is triage's derived sentence, not a person's answer."""
    words = template.split()
    return (words[:2] == ["agentfire", "capture"] and "{expected}" in template
            and "--expected-source" not in template and not base.get("expected"))


def command_argv(command: str, *, config: str, actor: str) -> tuple[list[str], str]:
    """argv for a step's command: `agentfire ...` runs this very installation with --json."""
    argv = shlex.split(command)
    if not argv:
        raise UsageError("empty command")
    name = ""
    if argv[0] == "agentfire":
        rest = argv[1:]
        name = next((a for a in rest if not a.startswith("-")), "")
        argv = [sys.executable, "-m", "agentfire", "--config", config, "--actor", actor, "--json", *rest]
    return argv, name


def run_command(command: str, *, journal: Journal, config: str, actor: str,
                timeout_s: float = 600, echo_stderr: Callable[[str], None] | None = None) -> tuple[CommandResult, str]:
    argv, name = command_argv(command, config=config, actor=actor)
    env = dict(os.environ)
    env["AGENTFIRE_INCIDENT"] = journal.incident
    env.setdefault("NO_COLOR", "1")
    started = time.monotonic()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout_s,
                           stdin=subprocess.DEVNULL)
        code, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = 124, exc.stdout or "", (exc.stderr or "") + f"\ntimed out after {timeout_s:g}s"
        out = out.decode() if isinstance(out, bytes) else out
        err = err.decode() if isinstance(err, bytes) else err
    except FileNotFoundError as exc:
        code, out, err = 127, "", f"cannot run {argv[0]}: {exc.strerror}"
    if echo_stderr and err:
        echo_stderr(err)
    doc = None
    if out.strip():
        try:
            doc = json.loads(out)
        except json.JSONDecodeError:
            doc = None
    return CommandResult(code, out, err, int((time.monotonic() - started) * 1000), doc), name


@dataclass
class Walk:
    """One incident's walk. The CLI drives it step by step; tests and --auto drive it in a loop."""

    runbook: Runbook
    journal: Journal
    actor: str
    base_values: dict[str, Any]
    steps: list[RunbookStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps = plan(self.runbook)
        self.base_values = {**self.base_values, "incident": self.journal.incident}

    def state(self) -> dict[str, StepRecord]:
        return records(self.journal, self.steps)

    def values(self) -> dict[str, Any]:
        values = carried_variables(self.state(), self.base_values)
        if self.base_values.get("expected"):  # a person's answer beats triage's derived one
            values["expected"] = self.base_values["expected"]
        return values

    def next_step(self) -> RunbookStep | None:
        recs = self.state()
        return next((s for s in self.steps if not recs[s.id].done), None)

    def started_at(self) -> datetime:
        return self.journal.started_at() or utcnow()

    def elapsed_s(self) -> float:
        return (utcnow() - self.started_at()).total_seconds()

    def propose(self, step: RunbookStep) -> str:
        command = render_command(step.command, self.values())
        if expected_is_derived(step.command, self.base_values):
            # nobody said what the agent should have done: the case must not claim a person did
            command += " --expected-source derived"
        return command

    def start(self, step: RunbookStep, command: str) -> None:
        try:
            proposed: str | None = self.propose(step)
        except UsageError:
            proposed = None
        # `proposed` beside `command` shows where a responder had to edit the runbook's line
        self.journal.append("runbook.step", actor=self.actor, step=step.id, phase="start",
                            command=command, proposed=proposed, title=step.title,
                            target_seconds=step.target_seconds, elapsed_s=round(self.elapsed_s(), 3))

    def finish(self, step: RunbookStep, command: str, result: CommandResult, name: str) -> StepRecord:
        carried = extract(name, result.document)
        outcome = "ok" if result.exit_code == 0 else "failed"
        self.journal.append("runbook.step", actor=self.actor, step=step.id, phase="end",
                            outcome=outcome, command=command, exit_code=result.exit_code,
                            duration_ms=result.duration_ms, carried=carried,
                            elapsed_s=round(self.elapsed_s(), 3),
                            target_seconds=step.target_seconds,
                            stderr_tail=result.stderr[-800:] if result.exit_code else "")
        if name == "blast" and carried.get("still_open"):
            # the runbook says: still spreading -> back to minute one, check the kill switch again
            for s in self.steps:
                if s.id == "kill" or s.command.split()[:2] == ["agentfire", "kill"]:
                    self.journal.append("runbook.step", actor=self.actor, step=s.id, phase="reopen",
                                        reason="blast: trajectories still open")
                    break
        return self.state()[step.id]

    def run(self, step: RunbookStep, command: str, **kw: Any) -> tuple[StepRecord, CommandResult]:
        self.start(step, command)
        result, name = run_command(command, journal=self.journal, config=str(self.runbook.path),
                                   actor=self.actor, **kw)
        return self.finish(step, command, result, name), result

    def skip(self, step: RunbookStep, reason: str) -> StepRecord:
        self.journal.append("runbook.step", actor=self.actor, step=step.id, phase="end",
                            outcome="skipped", reason=reason, elapsed_s=round(self.elapsed_s(), 3),
                            target_seconds=step.target_seconds)
        return self.state()[step.id]


@contextmanager
def walk_lock(journal: Journal, actor: str) -> Iterator[dict[str, Any] | None]:
    """One walk per incident at a time: a second `runbook` on the same incident refuses, naming
    the first (pid, host, since when). The lock is an flock on `<incident>.walk.lock`, so a walk
    that died (SIGKILL, a lost machine's process) leaves a stale lock that the next walk takes
    over; it yields what the stale holder had written (or None)."""
    import fcntl
    import socket

    path = journal.dir / f"{journal.incident}.walk.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            who = (f"pid {holder.get('pid')} on {holder.get('host')} (by {holder.get('actor')}) "
                   f"since {holder.get('since')}") if holder else "another process"
            raise NotDoneError(
                f"incident {journal.incident} is already being walked by {who}; two walks would run "
                f"its steps interleaved. Wait for it, or stop it first ({path})") from None
        stale = _read_holder(fd) or None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "actor": actor,
              "since": datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        try:
            yield stale
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        doc = json.loads(data) if data.strip() else {}
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def load_answers(path: str, step_ids: list[str] | None = None) -> dict[str, Any]:
    """An answers file for --auto: {trace_id: ..., steps: {STEP_ID: "skip" | "command ..."}}.

    Checked as strictly as runbook.yaml: a typo in a step id would otherwise run the step the
    engineer meant to skip."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: not UTF-8
        raise UsageError(f"{path}: cannot read answers file: {exc}") from None
    if not isinstance(doc, dict) or not set(doc) <= {"trace_id", "steps", "variables"}:
        raise UsageError(f"{path}: answers file keys are trace_id, steps, variables")
    scalar = (str, int, float)
    if doc.get("trace_id") is not None and not isinstance(doc["trace_id"], scalar):
        raise UsageError(f"{path}: trace_id must be one trace id (a string)")
    for key in ("steps", "variables"):
        value = doc.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, scalar) for k, v in value.items()):
            what = "STEP_ID: skip | COMMAND" if key == "steps" else "NAME: value"
            raise UsageError(f"{path}: {key} must be a mapping of {what}")
    unknown = sorted(set(doc.get("steps") or {}) - set(step_ids)) if step_ids is not None else []
    if unknown:
        raise UsageError(f"{path}: steps: unknown step id(s) {', '.join(unknown)}; "
                         f"the runbook's steps are {', '.join(step_ids or [])}")
    return doc
