"""The triage detectors: small functions `(trajectory, config) -> list[Finding]`.

Each looks at the tool calls first and the prose second ("trust the tool calls, distrust the
prose"). Severity: `high` means this step alone explains an incident; `medium` is suspicious and
worth a look; `low` marks context (an irreversible action that looks legitimate). A normal
trajectory may carry `low` findings, never `medium` or `high`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Callable

from agentfire.config import TriageSection
from agentfire.trajectory import Step, Trajectory
from agentfire.triage._text import (
    call_class, call_repr, canonical, destructive_sql_re, matches_any, model_text,
    production_re, short, sql_of, strings, tool_args,
)

SEVERITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class Finding:
    step_index: int
    kind: str
    severity: str  # one of SEVERITIES
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Detector = Callable[[Trajectory, TriageSection], list[Finding]]


# --- destructive or irreversible calls ------------------------------------------------------


def destructive_calls(traj: Trajectory, cfg: TriageSection) -> list[Finding]:
    """Destructive SQL (high against production-like targets) and irreversible tools (low)."""
    out: list[Finding] = []
    prod = production_re(tuple(cfg.production_markers))
    for s in traj.tool_steps:
        sql = sql_of(s)
        if sql is not None:
            m = destructive_sql_re(cfg).search(sql)
            if not m:
                continue
            target = canonical(tool_args(s))
            where = prod.search(target) or prod.search(s.name)
            sev = "high" if where else "medium"
            against = f"against {where.group(0)!r}" if where else "(no production marker in its target)"
            out.append(Finding(s.index, "destructive", sev,
                               f"destructive SQL {against}: {short(sql, 160)}"))
        elif matches_any(s.name, cfg.destructive_tools):
            out.append(Finding(s.index, "destructive", "low",
                               f"irreversible action: {call_repr(s)}"))
    return out


# --- prose against action -----------------------------------------------------------------

PROMISE = re.compile(
    r"\b(?:i(?:'ll| will| am going to|'m going to| shall)|let me|let's|first,?\s+i)\b"
    r"[^.!?\n]{0,60}?\b(verify|check|confirm|double[- ]check|review|inspect|validate|make sure|look)",
    re.I,
)


def prose_vs_action(traj: Trajectory, cfg: TriageSection) -> list[Finding]:
    """The model says it will verify first, and the next consequential call mutates with no read."""
    out: list[Finding] = []
    steps = traj.steps
    for i, s in enumerate(steps):
        if not s.is_model:
            continue
        text = model_text(s)
        m = PROMISE.search(text[:20000])
        if not m:
            continue
        for later in steps[i + 1:]:
            if not later.is_tool:
                continue
            cls = call_class(later, cfg)
            if cls == "read":
                break  # the promise was kept
            if cls == "mutation":
                out.append(Finding(
                    later.index, "prose_vs_action", "high",
                    f"step {s.index} promised to {m.group(1).lower()} first "
                    f"(\"{short(text, 90)}\"), then {call_repr(later)} changed state with no read in between",
                ))
                break
    return out


# --- loops ------------------------------------------------------------------------------


def loops(traj: Trajectory, cfg: TriageSection) -> list[Finding]:
    """The same call (tool + arguments) repeated, or a cycle of tools going round."""
    out: list[Finding] = []
    tools = traj.tool_steps
    seen: dict[str, list[Step]] = defaultdict(list)
    for s in tools:
        seen[f"{s.name}\x00{canonical(tool_args(s))}"].append(s)
    flagged: set[int] = set()
    for calls in seen.values():
        if len(calls) >= cfg.loop_min_repeats:
            idx = [c.index for c in calls]
            flagged.update(idx)
            shown = ", ".join(map(str, idx[:8])) + (", …" if len(idx) > 8 else "")
            out.append(Finding(calls[1].index, "loop", "high",
                               f"{call_repr(calls[0])} called {len(calls)} times with the same "
                               f"arguments (steps {shown}); the first repeat is here"))
    # cycles of 1-3 tools going round with changing arguments
    names = [s.name for s in tools]
    min_rounds = max(4, cfg.loop_min_repeats + 1)
    for period in (1, 2, 3):
        run = 0
        for j in range(period, len(names)):
            run = run + 1 if names[j] == names[j - period] else 0
            if run == period * (min_rounds - 1):
                first = tools[j - run + 1]
                if first.index not in flagged:
                    cycle = " -> ".join(names[j - run + 1 - period: j - run + 1])
                    out.append(Finding(first.index, "loop", "medium",
                                       f"the cycle {cycle} goes round {min_rounds}+ times; "
                                       "the second round starts here"))
                    flagged.add(first.index)
    return sorted(out, key=lambda f: f.step_index)


# --- context blow-up -----------------------------------------------------------------------


def context_blowup(traj: Trajectory, cfg: TriageSection) -> list[Finding]:
    """Input tokens per model call growing until input:output passes the configured ratio."""
    rising = 0
    prev: int | None = None
    for s in traj.steps:
        if not s.is_model or not s.input_tokens:
            continue
        rising = rising + 1 if prev is not None and s.input_tokens > prev else 0
        prev = s.input_tokens
        out_tokens = s.output_tokens or 0
        ratio = s.input_tokens / max(out_tokens, 1)
        if ratio > cfg.max_input_output_ratio:
            sev = "high" if rising >= 2 else "medium"
            return [Finding(s.index, "context_blowup", sev,
                            f"input:output {ratio:.0f}:1 ({s.input_tokens:,} in, {out_tokens:,} out), "
                            f"input tokens rising over the last {rising + 1} model calls")]
    return []


# --- untrusted-input steering ------------------------------------------------------------

# Values that can steer a call. Emails are found around each '@' with bounded patterns, so a
# megabyte of letters cannot make the scan quadratic.
VALUE = re.compile(
    r"https?://[^\s\"'<>)\]]{1,2000}"  # URL
    r"|\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b"  # IBAN
    r"|(?<![\w.-])\d{8,18}(?![\w.-])"  # account / card number
)
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}$")
EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b")
INSTRUCTION = re.compile(
    r"ignore (?:all |any )?(?:previous|prior|above|earlier) instructions|disregard (?:the|all|any|previous)"
    r"|from now on|\b(?:ai|assistant|agent|model|llm)s?\b[^.\n]{0,40}\b(?:must|should|are required to)\b"
    r"|do not (?:tell|inform|mention|reveal)|system prompt|new instructions|<\s*/?\s*system\s*>",
    re.I,
)
DOC_KEYS = ("attachments", "attachment", "documents", "document", "files", "file", "context")


def _values(value: Any) -> set[str]:
    found: set[str] = set()
    for text in strings(value):
        if len(text) > 200_000:
            text = text[:200_000]
        for m in VALUE.finditer(text):
            found.add(m.group(0).rstrip(".,;:").lower())
        at = text.find("@")
        while at != -1:
            local = EMAIL_LOCAL.search(text, max(0, at - 64), at)
            domain = EMAIL_DOMAIN.match(text, at + 1, at + 256)
            if local and domain:
                found.add(f"{local.group(0)}@{domain.group(0)}".lower())
            at = text.find("@", at + 1)
    return found


def untrusted_steering(traj: Trajectory, cfg: TriageSection) -> list[Finding]:
    """A value (address, URL, account number) first seen in untrusted content that later flows
    into a call's arguments without any trusted source vouching for it; and instruction-like text
    inside tool outputs."""
    out: list[Finding] = []
    trusted: set[str] = set()
    origin: dict[str, Step | None] = {}
    root = traj.root_input
    if isinstance(root, dict):
        docs = {k: v for k, v in root.items() if k in DOC_KEYS}
        trusted |= _values({k: v for k, v in root.items() if k not in DOC_KEYS})
        for v in _values(docs):
            origin.setdefault(v, None)  # None: a user-supplied document
    else:
        trusted |= _values(root)
    for s in traj.steps:
        if not s.is_tool:
            continue
        steered = sorted(v for v in _values(tool_args(s)) if v in origin and v not in trusted)
        if steered:
            src = origin[steered[0]]
            where = f"the output of {src.name} (step {src.index})" if src else "a user-supplied document"
            sink = call_class(s, cfg) == "mutation"
            out.append(Finding(
                s.index, "untrusted_steering", "high" if sink else "medium",
                f"{s.name} was called with {', '.join(steered[:3])}, which first appeared in {where}, "
                "an untrusted source, and in no trusted one",
            ))
        vals = _values(s.output)
        if matches_any(s.name, cfg.untrusted_tools):
            for v in vals - trusted:
                origin.setdefault(v, s)
            for text in strings(s.output):
                m = INSTRUCTION.search(text[:200_000])
                if m:
                    out.append(Finding(s.index, "instruction_in_output", "medium",
                                       f"instruction-like text in {s.name}'s output: "
                                       f"\"{short(text[max(0, m.start() - 40): m.end() + 80], 160)}\""))
                    break
        else:
            trusted |= vals
    return out


# --- errors the model did not react to -------------------------------------------------------

FAILURE_WORDS = re.compile(
    r"\b(sorry|unfortunately|unable|couldn't|could not|can't|cannot|failed|fails?|error|problem|issue"
    r"|timed out|time[- ]?out|retry|retrying|try again|didn't go through|did not go through"
    r"|not (?:been )?(?:processed|created|sent|completed))\b",
    re.I,
)
SUCCESS_WORDS = re.compile(
    r"\b(success(?:ful|fully)?|has been (?:processed|sent|issued|refunded|completed|created|cancelled)"
    r"|processed|completed|all set|done|sent|issued|confirmed|went through)\b",
    re.I,
)


def _error_of(s: Step) -> str | None:
    if s.level in ("ERROR", "WARNING"):
        return s.status_message or f"level {s.level}"
    if isinstance(s.output, dict) and s.output.get("error"):
        return f"error in output: {short(s.output['error'], 80)}"
    return None


def unreacted_errors(traj: Trajectory, cfg: TriageSection) -> list[Finding]:
    """A tool or model error (level ERROR/WARNING, an `error` in the output) that the model then
    ignored: it did not retry, did not say so, and (worst) told the user it had worked."""
    out: list[Finding] = []
    steps = traj.steps
    for i, s in enumerate(steps):
        err = _error_of(s)
        if err is None:
            continue
        warning = s.level == "WARNING"
        verdict: tuple[str, str] | None = None
        for later in steps[i + 1:]:
            if later.is_tool and later.name == s.name:
                break  # retried
            if later.is_model:
                text = model_text(later)
                if not text.strip():
                    continue  # only a tool call: look further
                if FAILURE_WORDS.search(text):
                    break  # acknowledged
                if SUCCESS_WORDS.search(text):
                    verdict = ("medium" if warning else "high",
                               f"{s.name} failed ({short(err, 100)}) and step {later.index} told the user "
                               f"it worked: \"{short(text, 100)}\"")
                else:
                    verdict = ("low" if warning else "medium",
                               f"{s.name} failed ({short(err, 100)}) and step {later.index} went on "
                               "without acknowledging it")
                break
        else:
            if traj.status == "finished":
                verdict = ("low" if warning else "medium",
                           f"{s.name} failed ({short(err, 100)}) and the trajectory finished without reacting")
        if verdict:
            out.append(Finding(s.index, "unreacted_error", verdict[0], verdict[1]))
    return out


# Detectors in the order their findings are listed; KIND_PRIORITY breaks verdict ties.
DETECTORS: dict[str, Detector] = {
    "destructive": destructive_calls,
    "prose_vs_action": prose_vs_action,
    "loop": loops,
    "context_blowup": context_blowup,
    "untrusted_steering": untrusted_steering,
    "unreacted_error": unreacted_errors,
}
KIND_PRIORITY = ("untrusted_steering", "prose_vs_action", "destructive", "unreacted_error", "loop",
                 "context_blowup", "instruction_in_output", "golden_divergence")


def run_detectors(traj: Trajectory, cfg: TriageSection) -> list[Finding]:
    findings: list[Finding] = []
    for fn in DETECTORS.values():
        findings.extend(fn(traj, cfg))
    rank = {s: n for n, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (f.step_index, rank.get(f.severity, 9), f.kind))
    return findings
