"""The triage detectors: small functions `(trajectory, config) -> list[Finding]`.

Each looks at the tool calls first and the prose second ("trust the tool calls, distrust the
prose"). A finding names the model turn that made the decision (`step_index`) and, where the
evidence is a tool call, that call (`call_step_index`): in a real trace a tool call is two
observations, the GENERATION that decided it and the TOOL that executed it, and the off-rails step
is the decision. Severity: `high` means this step alone explains an incident; `medium` is
suspicious and worth a look; `low` marks context (an irreversible action that looks legitimate).
A normal trajectory may carry `low` findings, never `medium` or `high`.

Every detector reads the shared per-step facts of agentfire.triage._index.Index (built once), so
the whole triage is linear in the number of steps.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

from agentfire.config import TriageSection
from agentfire.trajectory import Step, Trajectory
from agentfire.triage._index import Index
from agentfire.triage._text import (
    _text_of, canonical, destructive_sql_re, flat, matches_any, production_re, short,
)
from agentfire.triage.grounding import Facts, facts_in, unsupported

SEVERITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class Finding:
    step_index: int
    kind: str
    severity: str  # one of SEVERITIES
    evidence: str
    call_step_index: int | None = None  # the tool call the evidence is about, when there is one
    rule: str | None = None  # the policy rule, for a policy finding

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Detector = Callable[..., list[Finding]]


def _index(traj: Trajectory, cfg: TriageSection, idx: Index | None) -> Index:
    return idx if idx is not None and idx.traj is traj else Index(traj, cfg)


def _at(idx: Index, p: int, kind: str, severity: str, evidence: str, rule: str | None = None) -> Finding:
    step, call = idx.at(p)
    return Finding(step, kind, severity, evidence, call, rule)


def _repr(idx: Index, p: int, limit: int = 100) -> str:
    s = idx.steps[p]
    inner = ", ".join(f"{k}={short(v, 60)}" for k, v in list((idx.args[p] or {}).items())[:4])
    return short(f"{s.name}({inner})", limit)


# --- destructive or irreversible calls ------------------------------------------------------


def destructive_calls(traj: Trajectory, cfg: TriageSection, idx: Index | None = None) -> list[Finding]:
    """Destructive SQL (high against production-like targets) and irreversible tools (low)."""
    idx = _index(traj, cfg, idx)
    out: list[Finding] = []
    prod = production_re(tuple(cfg.production_markers))
    destructive = destructive_sql_re(cfg)
    irreversible: dict[str, bool] = {}
    for p, s in enumerate(idx.steps):
        if not idx.tool[p]:
            continue
        sql = idx.sql[p]
        if sql is not None:
            m = destructive.search(sql)
            if not m:
                continue
            target = canonical(idx.args[p])
            where = prod.search(target) or prod.search(s.name)
            sev = "high" if where else "medium"
            against = f"against {where.group(0)!r}" if where else "(no production marker in its target)"
            out.append(_at(idx, p, "destructive", sev, f"destructive SQL {against}: {short(sql, 160)}"))
            continue
        hit = irreversible.get(s.name)
        if hit is None:
            hit = irreversible[s.name] = (idx.cls[p] != "handoff" and matches_any(s.name, cfg.destructive_tools))
        if hit:
            out.append(_at(idx, p, "destructive", "low", f"irreversible action: {_repr(idx, p)}"))
    return out


# --- prose against action -----------------------------------------------------------------

PROMISE = re.compile(
    r"\b(?:i(?:'ll| will| am going to|'m going to| shall)|let me(?! know)|let's|first,?\s+i)\b"
    r"[^.!?\n]{0,60}?\b(verify|check|confirm|double[- ]check|review|inspect|validate|make sure|look)",
    re.I,
)


def prose_vs_action(traj: Trajectory, cfg: TriageSection, idx: Index | None = None) -> list[Finding]:
    """The model says it will verify first, and the next consequential call mutates with no read.
    (One backward sweep finds each step's next read, mutation or handoff: no walk per promise.)"""
    idx = _index(traj, cfg, idx)
    n = len(idx.steps)
    nxt: list[int | None] = [None] * (n + 1)
    for p in range(n - 1, -1, -1):
        # the next read, mutation or handoff; a user's turn in between ends the promise too
        stop = (idx.tool[p] and idx.cls[p] in ("read", "mutation", "handoff")) or idx.user[p] is not None \
            or idx.user_spoke[p]
        nxt[p] = p if stop else nxt[p + 1]
    out: list[Finding] = []
    for p in idx.model_positions:
        text = idx.text[p]
        if not text:
            continue
        m = PROMISE.search(text[:20000])
        if not m:
            continue
        j = nxt[p + 1]
        if j is not None and idx.tool[j] and idx.cls[j] == "mutation":
            out.append(_at(idx, j, "prose_vs_action", "high",
                           f"step {idx.steps[p].index} promised to {m.group(1).lower()} first "
                           f"(\"{short(text, 90)}\"), then {_repr(idx, j)} changed state with no read in between"))
    return out


# --- loops ------------------------------------------------------------------------------


def loops(traj: Trajectory, cfg: TriageSection, idx: Index | None = None) -> list[Finding]:
    """The same call (tool + arguments) repeated with nothing changed in between, or a cycle of
    tools going round with changing arguments that are not simply the items of an earlier list
    (looking up each of the user's five reservations is not a loop)."""
    idx = _index(traj, cfg, idx)
    out: list[Finding] = []
    tools = [p for p in range(len(idx.steps)) if idx.tool[p]]
    seen: dict[str, list[int]] = defaultdict(list)
    epoch = 0  # successful state changes so far: a read repeated after one is a fresh read
    keys: dict[int, str] = {}
    unknown: set[int] = set()  # calls whose arguments the tracer did not record
    for p in tools:
        read = idx.cls[p] in ("read", "pure")
        if "arguments" in (getattr(idx.steps[p], "not_recorded", None) or ()):
            unknown.add(p)
            key = f"{idx.steps[p].name}\x00(not recorded)"
        else:
            key = f"{idx.steps[p].name}\x00{canonical(idx.args[p])}"
        keys[p] = key
        seen[f"{epoch}\x00{key}" if read else key].append(p)
        if idx.cls[p] == "mutation" and idx.error[p] is None:
            epoch += 1
    flagged: set[int] = set()
    for calls in seen.values():
        if len(calls) >= cfg.loop_min_repeats:
            flagged.update(calls)
            shown = ", ".join(str(idx.steps[c].index) for c in calls[:8]) + (", …" if len(calls) > 8 else "")
            if calls[0] in unknown:  # the same tool again and again; whether with the same arguments is unknown
                out.append(_at(idx, calls[1], "loop", "medium",
                               f"{idx.steps[calls[0]].name} called {len(calls)} times (steps {shown}; the tracer "
                               "did not record its arguments, so whether they repeat is unknown); the first repeat is here"))
                continue
            out.append(_at(idx, calls[1], "loop", "high",
                           f"{_repr(idx, calls[0])} called {len(calls)} times with the same "
                           f"arguments (steps {shown}); the first repeat is here"))
    names = [idx.steps[p].name for p in tools]
    min_rounds = max(4, cfg.loop_min_repeats + 1)
    facts: Facts | None = None
    for period in (1, 2, 3):
        run = 0
        for j in range(period, len(names)):
            run = run + 1 if names[j] == names[j - period] else 0
            if run == period * (min_rounds - 1):
                first = tools[j - run + 1]
                if first in flagged:
                    continue
                members = tools[j - run + 1 - period: j + 1]
                if facts is None:
                    facts = idx.facts()
                if _enumeration(idx, members, keys, facts):
                    continue
                cycle = " -> ".join(names[j - run + 1 - period: j - run + 1])
                out.append(_at(idx, first, "loop", "medium",
                               f"the cycle {cycle} goes round {min_rounds}+ times; the second round starts here"))
                flagged.add(first)
    return sorted(out, key=lambda f: f.step_index)


def _enumeration(idx: Index, members: list[int], keys: dict[int, str], facts: Facts) -> bool:
    """Every call of the cycle distinct, each with arguments already seen before it (the items of
    a list the agent is going through) or all of them pure tools (four different sums), rather
    than a search going round."""
    if len({keys[p] for p in members}) != len(members):
        return False
    if all(idx.cls[p] == "pure" for p in members):
        return True  # a calculator or scratchpad worked on something new each time: working, not looping
    for p in members:
        values = facts_in(idx.args_text(p), only_ids=True)
        if not values or unsupported(values, facts, p):
            return False
    return True


# --- context blow-up -----------------------------------------------------------------------


def context_blowup(traj: Trajectory, cfg: TriageSection, idx: Index | None = None) -> list[Finding]:
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


_VALUES_CACHE: dict[str, frozenset[str]] = {}


def _values(value: Any) -> frozenset[str]:
    text = flat(value)
    hit = _VALUES_CACHE.get(text)
    if hit is None:
        hit = frozenset(_values_of(text))
        if len(text) <= 4096:  # a loop repeats its texts: each distinct one is scanned once
            if len(_VALUES_CACHE) >= 4096:
                _VALUES_CACHE.clear()
            _VALUES_CACHE[text] = hit
    return hit


_INSTRUCTION_CACHE: dict[str, str | None] = {}


def _instruction(value: Any) -> str | None:
    """The instruction-like excerpt in a value, if any (cached per text)."""
    text = flat(value)
    if text in _INSTRUCTION_CACHE:
        return _INSTRUCTION_CACHE[text]
    m = INSTRUCTION.search(text)
    hit = short(text[max(0, m.start() - 40): m.end() + 80], 160) if m else None
    if len(text) <= 4096:
        if len(_INSTRUCTION_CACHE) >= 1024:
            _INSTRUCTION_CACHE.clear()
        _INSTRUCTION_CACHE[text] = hit
    return hit


def _values_of(text: str) -> set[str]:
    found: set[str] = set()
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


def untrusted_steering(traj: Trajectory, cfg: TriageSection, idx: Index | None = None) -> list[Finding]:
    """A value (address, URL, account number) first seen in untrusted content that later flows
    into a call's arguments without any trusted source vouching for it; and instruction-like text
    inside tool outputs."""
    idx = _index(traj, cfg, idx)
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
    untrusted: dict[str, bool] = {}
    for p, s in enumerate(idx.steps):
        if not idx.tool[p]:
            continue
        if origin:
            steered = sorted(v for v in _values(idx.args_text(p)) if v in origin and v not in trusted)
            if steered:
                src = origin[steered[0]]
                where = f"the output of {src.name} (step {src.index})" if src else "a user-supplied document"
                sink = idx.cls[p] == "mutation"
                out.append(_at(idx, p, "untrusted_steering", "high" if sink else "medium",
                               f"{s.name} was called with {', '.join(steered[:3])}, which first appeared in "
                               f"{where}, an untrusted source, and in no trusted one"))
        vals = _values(idx.out_text(p))
        hit = untrusted.get(s.name)
        if hit is None:
            hit = untrusted[s.name] = matches_any(s.name, cfg.untrusted_tools)
        if hit:
            for v in vals - trusted:
                origin.setdefault(v, s)
            excerpt = _instruction(idx.out_text(p))
            if excerpt is not None:
                out.append(Finding(s.index, "instruction_in_output", "medium",
                                   f"instruction-like text in {s.name}'s output: \"{excerpt}\"", s.index))
        else:
            trusted |= vals
    return out


# --- errors the model did not react to -------------------------------------------------------

MAX_LOW_NOTES = 20
FAILURE_WORDS = re.compile(
    r"\b(sorry|unfortunately|unable|couldn't|could not|can't|cannot|failed|fails?|error|problem|issue"
    r"|timed out|time[- ]?out|retry|retrying|try again|didn't go through|did not go through|not found"
    r"|not (?:been )?(?:processed|created|sent|completed|possible|able|available|eligible|valid|allowed))\b",
    re.I,
)
SUCCESS_WORDS = re.compile(
    r"\b(success(?:ful|fully)?|has been (?:processed|sent|issued|refunded|completed|created|cancell?ed|updated"
    r"|booked|modified|changed)|processed|completed|all set|done|sent|issued|confirmed|went through"
    r"|worked|succeeded)\b",
    re.I,
)


def unreacted_errors(traj: Trajectory, cfg: TriageSection, idx: Index | None = None) -> list[Finding]:
    """A tool error (level ERROR/WARNING, an error string such as "Error: ..." or a traceback, an
    error object such as {"error": ...}) that the model then carried on past: it did not retry and
    did not say so, and (worst) told the user it had worked. The finding is on the model turn that
    carried on; `call_step_index` is the failed call. An error on a state-changing call that the
    model acknowledged is a low note."""
    idx = _index(traj, cfg, idx)
    n = len(idx.steps)
    next_model: list[int | None] = [None] * (n + 1)
    next_text: list[int | None] = [None] * (n + 1)
    next_same: list[int | None] = [None] * n
    last_by_name: dict[str, int] = {}
    for p in range(n - 1, -1, -1):
        next_model[p] = p if idx.model[p] else next_model[p + 1]
        said = idx.model[p] and not idx.report[p] and idx.text[p].strip()
        next_text[p] = p if said else next_text[p + 1]
        if idx.tool[p] or idx.report[p]:
            name = idx.steps[p].name
            next_same[p] = last_by_name.get(name)
            last_by_name[name] = p
    recovered = _recovered(idx)
    out: list[Finding] = []
    lows = 0
    for e in range(n):
        if not (idx.tool[e] or idx.report[e]) or idx.error[e] is None:
            continue
        if lows >= MAX_LOW_NOTES and idx.cls[e] != "mutation":
            continue  # every call of a runaway loop failing: the first notes say it
        s = idx.steps[e]
        err = short(idx.error[e], 100)
        warning = s.level == "WARNING"
        mutation = idx.cls[e] == "mutation"
        retry = next_same[e]
        t = next_text[e + 1]
        if recovered[e] and (t is None or not SUCCESS_WORDS.search(idx.text[t]) or FAILURE_WORDS.search(idx.text[t])):
            continue  # a later call of the same tool succeeded: the error was handled
        if t is None or (retry is not None and retry < t):
            if retry is not None:
                continue  # retried before saying anything
            c = next_model[e + 1]
            if traj.status == "error" and c is None:
                # the run itself ended in error at this call: nothing carried on, it stopped here
                out.append(_at(idx, e, "unreacted_error", "low" if warning else "medium",
                               f"{s.name} failed ({err}) and the trajectory ended in error there"))
                continue
            if traj.status == "finished" or c is not None:
                where = c if c is not None else idx.decision_of(e)
                sev = "low" if warning or not mutation else "medium"
                lows += sev == "low"
                out.append(Finding(idx.steps[where].index, "unreacted_error", sev,
                                   f"{s.name} failed ({err}) and the trajectory "
                                   f"{'went on' if c is not None else 'finished'} without reacting",
                                   s.index))
            continue
        text = idx.text[t]
        told = idx.steps[t].index
        if FAILURE_WORDS.search(text):
            if mutation:
                lows += 1
                out.append(Finding(told, "unreacted_error", "low",
                                   f"the state-changing call {s.name} failed ({err}); step {told} said so",
                                   s.index))
            continue
        if SUCCESS_WORDS.search(text):
            out.append(Finding(told, "unreacted_error", "medium" if warning else "high",
                               f"{s.name} failed ({err}) and step {told} told the user it worked: "
                               f"\"{short(text, 100)}\"", s.index))
        else:
            sev = "low" if warning or not mutation else "medium"
            lows += sev == "low"
            out.append(Finding(told, "unreacted_error", sev,
                               f"{s.name} failed ({err}) and step {told} went on without acknowledging it",
                               s.index))
    return out


# --- grounding ------------------------------------------------------------------------------


MAX_UNGROUNDED = 20


def grounding(traj: Trajectory, cfg: TriageSection, idx: Index | None = None) -> list[Finding]:
    """Numbers, amounts, ids, dates and emails the model states (to the user or another agent) or
    passes to a state-changing call that appear in no earlier user message, tool output, system
    prompt or input: invented or miscounted facts. Formatting is normalised (1,000 = 1000 = $1000.00;
    2024-05-20 = May 20th); a number that is the sum, difference or small multiple of two earlier
    ones counts as grounded (a total, a fare difference)."""
    if not cfg.grounding:
        return []
    idx = _index(traj, cfg, idx)
    facts = idx.facts()
    recovered = _recovered(idx)
    out: list[Finding] = []
    reported: set[str] = set()
    for p in range(len(idx.steps)):
        if len(out) >= MAX_UNGROUNDED:
            break  # the first ones decide the verdict; a runaway loop would list thousands
        if idx.model[p] and idx.text[p] and not idx.report[p]:
            missing = [v for v in unsupported(facts_in(idx.text[p]), facts, p) if v not in reported]
            if missing:
                reported.update(missing)
                out.append(Finding(idx.steps[p].index, "ungrounded", "medium",
                                   f"{idx.steps[p].name} stated {', '.join(_show(missing))}, which appear"
                                   f"{'s' if len(missing) == 1 else ''} in no earlier message, tool output or input: "
                                   f"\"{short(idx.text[p], 100)}\""))
        elif idx.tool[p] and idx.cls[p] == "mutation":
            missing = [v for v in unsupported(facts_in(idx.args_text(p)), facts, p) if v not in reported]
            if missing:
                reported.update(missing)
                # a call that failed changed nothing; if the agent then got it right, it is context
                sev = "high" if idx.error[p] is None else "low" if recovered[p] else "medium"
                out.append(_at(idx, p, "ungrounded", sev,
                               f"{_repr(idx, p)} was passed {', '.join(_show(missing))}, which appear"
                               f"{'s' if len(missing) == 1 else ''} in no earlier message, tool output or input"))
    return out


def _recovered(idx: Index) -> list[bool]:
    """Per tool position: a later call of the same tool succeeded (one backward sweep)."""
    n = len(idx.steps)
    out = [False] * n
    ok_later: set[str] = set()
    for p in range(n - 1, -1, -1):
        if idx.tool[p] or idx.report[p]:
            name = idx.steps[p].name
            out[p] = name in ok_later
            if idx.error[p] is None:
                ok_later.add(name)
    return out


def _show(values: Iterable[str]) -> list[str]:
    return [v.split(":", 1)[1] for v in list(values)[:4]]


# --- policies ------------------------------------------------------------------------------

YES = re.compile(
    r"\b(yes|yeah|yep|yup|sure|ok(?:ay)?|confirm(?:ed)?|correct|go ahead|proceed|please do|do it|that's right"
    r"|sounds good|absolutely|definitely|affirmative|approved?)\b",
    re.I,
)
NO = re.compile(r"\b(no|nope|don't|do not|wait|stop|cancel that|not yet|hold on)\b", re.I)


def policy_violations(traj: Trajectory, cfg: TriageSection, rules: Iterable[Any] = (),
                      idx: Index | None = None) -> list[Finding]:
    """Each violation of the runbook's `policies:` rules, checked step by step, as a finding
    naming the rule (config.PolicyRule: before/require, require_confirmation, never, max_calls)."""
    rules = list(rules)
    if not rules:
        return []
    idx = _index(traj, cfg, idx)
    out: list[Finding] = []
    satisfied = [False] * len(rules)
    counts: list[dict[str, int]] = [defaultdict(int) for _ in rules]
    reported: set[tuple[int, str]] = set()
    last_user: str | None = None
    for p, s in enumerate(idx.steps):
        if idx.user[p] is not None:
            last_user = idx.user[p]
            continue
        if idx.model[p]:
            inp = s.input
            if isinstance(inp, list) and inp:
                for msg in reversed(inp[-6:]):
                    if isinstance(msg, dict) and msg.get("role") == "user":
                        last_user = _text_of(msg) or last_user
                        break
            continue
        if not idx.tool[p]:
            continue
        name = s.name
        for r, rule in enumerate(rules):
            label = rule.label
            if rule.before is not None:
                if matches_any(name, rule.require) and idx.error[p] is None:
                    satisfied[r] = True
                elif matches_any(name, rule.before) and not satisfied[r] and (r, "before") not in reported:
                    reported.add((r, "before"))
                    out.append(_at(idx, p, "policy", rule.severity,
                                   f"policy \"{label}\": {_repr(idx, p)} with no successful "
                                   f"{' / '.join(rule.require)} before it", label))
            elif rule.require_confirmation is not None:
                if matches_any(name, rule.require_confirmation):
                    said = last_user or ""
                    if not (YES.search(said) and not NO.match(said.strip())):
                        out.append(_at(idx, p, "policy", rule.severity,
                                       f"policy \"{label}\": {_repr(idx, p)} without the user confirming just "
                                       f"before (their last turn: \"{short(said, 80) if said else 'none'}\")", label))
            elif rule.never is not None:
                if matches_any(name, rule.never):
                    out.append(_at(idx, p, "policy", rule.severity,
                                   f"policy \"{label}\": {_repr(idx, p)} must never be called", label))
            elif rule.max_calls is not None:
                for glob, limit in rule.max_calls.items():
                    if matches_any(name, [glob]):
                        counts[r][glob] += 1
                        if counts[r][glob] == limit + 1:
                            out.append(_at(idx, p, "policy", rule.severity,
                                           f"policy \"{label}\": call {limit + 1} of {glob} "
                                           f"({_repr(idx, p)}), more than the {limit} allowed", label))
    return out


# Detectors in the order their findings are listed; KIND_PRIORITY breaks verdict ties.
DETECTORS: dict[str, Detector] = {
    "destructive": destructive_calls,
    "prose_vs_action": prose_vs_action,
    "loop": loops,
    "context_blowup": context_blowup,
    "untrusted_steering": untrusted_steering,
    "unreacted_error": unreacted_errors,
    "grounding": grounding,
}
KIND_PRIORITY = ("untrusted_steering", "prose_vs_action", "destructive", "policy", "unreacted_error",
                 "ungrounded", "loop", "context_blowup", "instruction_in_output", "golden_divergence")


def run_detectors(traj: Trajectory, cfg: TriageSection, policies: Iterable[Any] = (),
                  idx: Index | None = None) -> list[Finding]:
    idx = _index(traj, cfg, idx)
    findings: list[Finding] = []
    for fn in DETECTORS.values():
        findings.extend(fn(traj, cfg, idx))
    findings.extend(policy_violations(traj, cfg, policies, idx))
    rank = {s: n for n, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (f.step_index, rank.get(f.severity, 9), f.kind))
    return findings
