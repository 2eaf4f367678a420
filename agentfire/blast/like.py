"""`--like TRACE_ID[:STEP]`: a signature derived from triage's off-rails step of one trace.

Rules (each visible in the printed YAML, meant to be edited):
- the tool of the step's call: the verdict's `call_step_index`; a model turn named with :STEP
  stands for the tool call it made (a turn that only spoke, or a step that is neither, is
  refused: name a tool call with :STEP);
- its level when it is WARNING or ERROR (an error the model papered over);
- each string argument whose value the verdict's own evidence names (the planted address, the
  production database), as `=`; an SQL statement becomes a regular expression on its verb and
  table (`(?i)^\\s*DELETE\\s+FROM\\s+orders\\b`), so other rows of the same statement match too;
- a loop verdict becomes the same call three times in a row (a sequence), since one repeat can be
  a normal retry.
"""

from __future__ import annotations

import re
from typing import Any

from agentfire.blast.signature import ArgCondition, Signature, StepPattern
from agentfire.errors import NotDoneError, UsageError

SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|DROP|TRUNCATE|ALTER|MERGE|REPLACE)\b\s*(FROM|INTO|TABLE)?\s*([\w.\"`]+)?",
                 re.I)
LOOP_REPEATS = 3
MAX_VALUE = 200


def parse_like(text: str) -> tuple[str, int | None]:
    trace_id, sep, step = text.rpartition(":")
    if sep and step.isdigit() and trace_id:
        return trace_id, int(step)
    return text, None


def sql_pattern(sql: str) -> str | None:
    m = SQL.match(sql)
    if not m:
        return None
    parts = [re.escape(m.group(1).upper())]
    if m.group(2):
        parts.append(re.escape(m.group(2).upper()))
    if m.group(3):
        parts.append(re.escape(m.group(3)) + r"\b")
    return r"(?i)^\s*" + r"\s+".join(parts)


def derive(report: Any, step_index: int | None = None) -> tuple[Signature, int]:
    """(signature, step index) from a triage.TriageReport."""
    from agentfire.config import TriageSection
    from agentfire.triage._index import Index

    traj = report.trajectory
    v = report.verdict
    if step_index is None and (v.step_index is None or v.kind == "none"):
        raise NotDoneError(
            f"triage found no off-rails step in {traj.trace_id}; name one: --like {traj.trace_id}:STEP")
    named = step_index if step_index is not None else v.step_index
    index = named if step_index is not None or v.call_step_index is None else v.call_step_index
    try:
        step = traj.step(index)
    except IndexError as exc:
        raise UsageError(str(exc)) from None
    if step.kind != "tool":
        idx = Index(traj, TriageSection())
        p = idx.pos[index]
        call = idx.call_of_turn(p) if idx.model[p] else None
        if call is None:
            raise UsageError(f"step {index} of {traj.trace_id} is a {step.kind} step ({step.name}) that made no "
                             "tool call; name a tool call with --like TRACE_ID:STEP")
        step = idx.steps[call]
        index = step.index
    verdict_steps = {v.step_index, v.call_step_index} - {None}
    own = step_index is None or step_index in verdict_steps
    chosen = v.kind if own else None
    evidence = " ".join(f.evidence for f in report.findings
                        if (f.step_index == named or f.call_step_index == index or f.step_index == index)
                        and (chosen is None or f.kind == chosen))
    conds: list[ArgCondition] = []
    if isinstance(step.input, dict):
        for key, value in step.input.items():
            # strings only: a number in the evidence (an amount) is this trace's, not the pattern's
            if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_$][\w$-]*", key):
                continue
            text = value
            if len(text) < 3 or len(text) > MAX_VALUE or text not in evidence:
                continue
            pattern = sql_pattern(text)
            conds.append(ArgCondition(key, "re", pattern) if pattern else ArgCondition(key, "=", text))
    level = step.level if step.level in ("WARNING", "ERROR") else None
    pattern = StepPattern(tool=step.name, args=tuple(conds), level=level)
    loop = v.kind == "loop" and own
    steps = (pattern,) * (LOOP_REPEATS if loop else 1)
    return Signature(steps), index
