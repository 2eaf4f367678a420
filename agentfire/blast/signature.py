"""The blast signature: what makes a trajectory match.

A signature is a sequence of one or more step patterns (tool A, then tool B later in the same
trajectory) plus trajectory-wide conditions. Every condition has to hold.

- a step pattern: `tool` (exact name or glob: `send_*`), `args` (conditions on the tool's
  arguments by JSON path: `=` equals, `~` contains (case-insensitive), `re` regular-expression
  search, `exists`), `output_matches` (regular-expression search in the raw output text),
  `level` (DEBUG/DEFAULT/WARNING/ERROR);
- trajectory-wide: `model` (some model call in the trajectory used it; exact or glob) and
  `metadata` KEY=VALUE (some observation of the trajectory carries it).

The last step pattern is the "matching step" reported per trajectory. The same Signature is
evaluated in Python on a Trajectory (`matches`), pushed into SQL for DuckDB and ClickHouse
(agentfire.blast.sql) and into the Langfuse and Phoenix query parameters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentfire.errors import UsageError

OPS = ("=", "~", "re", "exists")
LEVELS = ("DEBUG", "DEFAULT", "WARNING", "ERROR")
_PATH = r"[A-Za-z_$][\w$-]*(?:\[\d+\])*(?:\.[A-Za-z_$][\w$-]*(?:\[\d+\])*)*"
_ARG_EXISTS = re.compile(rf"^\s*(?P<path>{_PATH})\s+exists\s*$")
_ARG_RE = re.compile(rf"^\s*(?P<path>{_PATH})\s+re\s+(?P<value>.+)$", re.S)
_ARG_CMP = re.compile(rf"^\s*(?P<path>{_PATH})\s*(?P<op>=|~)\s*(?P<value>.*)$", re.S)
_SEGMENT = re.compile(r"([A-Za-z_$][\w$-]*)((?:\[\d+\])*)")


def path_parts(path: str) -> list[str | int]:
    """'to', 'recipients[0]', 'a.b[1].c' -> ['a', 'b', 1, 'c'] (keys and 0-based indexes)."""
    parts: list[str | int] = []
    for seg in path.split("."):
        m = _SEGMENT.fullmatch(seg)
        if not m:
            raise UsageError(f"bad argument path {path!r}: use keys and [N] indexes, like a.b[0].c")
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return parts


def compile_regex(pattern: str, what: str) -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"bad regular expression in {what}: {pattern!r}: {exc}") from None
    _check_re2(pattern, what)
    return compiled


def _check_re2(pattern: str, what: str) -> None:
    """The scans run the same regex in DuckDB and ClickHouse (RE2): a Python-only construct
    (lookaround, backreference, possessive, verbose) must be a usage error here, not a scan
    that fails after the fact with the whole window unscanned."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SELECT regexp_matches('', ?)", [pattern])
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0].removeprefix("Invalid Input Error: ")
        raise UsageError(
            f"bad regular expression in {what}: {pattern!r}: {reason} (the scans use RE2 syntax: "
            "no lookaround, backreferences or possessive quantifiers)") from None
    finally:
        con.close()


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def glob_regex(pattern: str) -> str:
    """A glob as an anchored regular expression that Python re, RE2 (DuckDB, ClickHouse) and
    SQLite agree on: * any run, ? one character, [...] a class."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:j]
                neg = body.startswith("!")
                body = body[1:] if neg else body
                out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


def name_matches(pattern: str, name: str | None) -> bool:
    if name is None:
        return False
    if not is_glob(pattern):
        return name == pattern
    return re.search(glob_regex(pattern), name, re.S) is not None


def as_text(value: Any) -> str:
    """A JSON value as the text conditions compare against (strings unquoted, others as JSON),
    the same as DuckDB's json_extract_string and ClickHouse's JSONExtractRaw-unquoted."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_MISSING = object()


def lookup(doc: Any, parts: list[str | int]) -> Any:
    cur = doc
    for p in parts:
        if isinstance(p, int):
            if not isinstance(cur, list) or p >= len(cur):
                return _MISSING
            cur = cur[p]
        else:
            if not isinstance(cur, dict) or p not in cur:
                return _MISSING
            cur = cur[p]
    return cur


@dataclass(frozen=True)
class ArgCondition:
    path: str
    op: str  # one of OPS
    value: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise UsageError(f"unknown argument operator {self.op!r}: use one of {', '.join(OPS)}")
        path_parts(self.path)
        if self.op == "exists":
            if self.value not in (None, ""):
                raise UsageError(f"argument condition '{self.path} exists' takes no value")
        elif self.value is None:
            raise UsageError(f"argument condition on {self.path!r} with {self.op!r} needs a value")
        if self.op == "re":
            compile_regex(self.value or "", f"--arg {self.path}")

    @property
    def parts(self) -> list[str | int]:
        return path_parts(self.path)

    @classmethod
    def parse(cls, text: str) -> "ArgCondition":
        """'to~landlord', 'to=a@b.c', 'query re (?i)^delete', 'cc exists'."""
        for rx in (_ARG_EXISTS, _ARG_RE, _ARG_CMP):
            m = rx.match(text)
            if m:
                d = m.groupdict()
                op = d.get("op") or ("exists" if rx is _ARG_EXISTS else "re")
                return cls(d["path"], op, d.get("value"))
        raise UsageError(
            f"bad --arg {text!r}: use PATH=VALUE, PATH~TEXT, 'PATH re REGEX' or 'PATH exists' "
            "(e.g. --arg 'to~landlord')"
        )

    def holds(self, args: Any) -> bool:
        found = lookup(args, self.parts)
        if found is _MISSING:
            return False
        if self.op == "exists":
            return True
        if found is None:  # JSON null compares as SQL NULL does: never equal, never contains
            return False
        text = as_text(found)
        if self.op == "=":
            return text == self.value
        if self.op == "~":
            return (self.value or "").lower() in text.lower()
        return re.search(self.value or "", text) is not None

    def to_text(self) -> str:
        if self.op == "exists":
            return f"{self.path} exists"
        if self.op == "re":
            return f"{self.path} re {self.value}"
        return f"{self.path}{self.op}{self.value}"


@dataclass(frozen=True)
class StepPattern:
    tool: str | None = None
    args: tuple[ArgCondition, ...] = ()
    output_matches: str | None = None
    level: str | None = None

    def __post_init__(self) -> None:
        if self.output_matches is not None:
            compile_regex(self.output_matches, "--output-matches")
        if self.level is not None and self.level.upper() not in LEVELS:
            raise UsageError(f"unknown level {self.level!r}: use one of {', '.join(LEVELS)}")
        if self.args and self.tool is None:
            raise UsageError("argument conditions need a tool (--tool NAME)")
        if self.tool is None and self.output_matches is None and self.level is None:
            raise UsageError("a step pattern needs at least a tool, --output-matches or --level")

    @property
    def kind_tool(self) -> bool:
        return self.tool is not None

    def holds(self, step: Any) -> bool:
        """`step` is an agentfire.trajectory.Step."""
        if self.tool is not None and (step.kind != "tool" or not name_matches(self.tool, step.name)):
            return False
        if self.level is not None and (step.level or "DEFAULT").upper() != self.level.upper():
            return False
        if self.output_matches is not None:
            out = step.output
            text = "" if out is None else as_text(out)
            if re.search(self.output_matches, text) is None:
                return False
        return all(a.holds(step.input) for a in self.args)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.tool is not None:
            d["tool"] = self.tool
        if self.args:
            d["args"] = [a.to_text() for a in self.args]
        if self.output_matches is not None:
            d["output_matches"] = self.output_matches
        if self.level is not None:
            d["level"] = self.level.upper()
        return d


@dataclass(frozen=True)
class Signature:
    steps: tuple[StepPattern, ...]
    model: str | None = None
    metadata: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.steps:
            raise UsageError("an empty signature would match everything: give --tool, --output-matches or --level")

    @property
    def last(self) -> StepPattern:
        return self.steps[-1]

    def match_step(self, traj: Any, window: tuple[Any, Any] | None = None) -> Any:
        """The Step where the whole signature first holds (the last pattern's step), or None.
        With `window` (start, end), the last pattern's step must start inside [start, end)."""
        if self.model is not None and not any(
            s.kind == "model" and name_matches(self.model, s.model) for s in traj.steps
        ):
            return None
        for key, value in self.metadata:
            sources = [traj.metadata] + [s.metadata for s in traj.steps]
            if not any(isinstance(m, dict) and key in m and m[key] is not None
                       and as_text(m[key]) == value for m in sources):
                return None
        # greedy earliest match of each pattern in order: if any embedding exists, this finds
        # the one whose last step comes first
        want = 0
        for step in traj.steps:
            if want == len(self.steps) - 1 and window is not None and (
                step.start is None or not window[0] <= step.start < window[1]
            ):
                continue
            if self.steps[want].holds(step):
                want += 1
                if want == len(self.steps):
                    return step
        return None

    def matches(self, traj: Any, window: tuple[Any, Any] | None = None) -> bool:
        return self.match_step(traj, window) is not None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if len(self.steps) == 1:
            d.update(self.steps[0].to_json())
        else:
            d["sequence"] = [s.to_json() for s in self.steps]
        if self.model is not None:
            d["model"] = self.model
        if self.metadata:
            d["metadata"] = {k: v for k, v in self.metadata}
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_json(), sort_keys=False, allow_unicode=True)

    def describe(self) -> str:
        parts = []
        for s in self.steps:
            bits = [s.tool or "any step"]
            bits += [f"[{a.to_text()}]" for a in s.args]
            if s.output_matches is not None:
                bits.append(f"output~/{s.output_matches}/")
            if s.level is not None:
                bits.append(f"level={s.level.upper()}")
            parts.append(" ".join(bits))
        text = " -> ".join(parts)
        if self.model:
            text += f"; model {self.model}"
        for k, v in self.metadata:
            text += f"; metadata {k}={v}"
        return text


# --- building a Signature from flags or a file -----------------------------------------------

STEP_KEYS = {"tool", "args", "output_matches", "level"}
TOP_KEYS = STEP_KEYS | {"sequence", "model", "metadata"}


def parse_metadata(items: list[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad --metadata {item!r}: use KEY=VALUE")
        out.append((key.strip(), value))
    return tuple(out)


def from_flags(
    *, tool: str | None = None, then: list[str] | None = None, args: list[str] | None = None,
    output_matches: str | None = None, level: str | None = None, model: str | None = None,
    metadata: list[str] | None = None,
) -> Signature | None:
    """The CLI form. `--then B` adds later steps; --arg/--output-matches/--level apply to the
    last step of the sequence (the matching step). None when no condition was given."""
    if not any([tool, then, args, output_matches, level, model, metadata]):
        return None
    conds = tuple(ArgCondition.parse(a) for a in args or [])
    names = ([tool] if tool else []) + list(then or [])
    if then and not tool:
        raise UsageError("--then needs a first step: --tool A --then B")
    steps = [StepPattern(tool=n) for n in names[:-1]]
    steps.append(StepPattern(
        tool=names[-1] if names else None, args=conds, output_matches=output_matches,
        level=level.upper() if level else None,
    ))
    return Signature(tuple(steps), model=model, metadata=parse_metadata(metadata))


def _step_from(doc: Any, where: str) -> StepPattern:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: a step must be a mapping with {', '.join(sorted(STEP_KEYS))}")
    unknown = set(doc) - STEP_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown field {sorted(unknown)[0]!r} (valid: {', '.join(sorted(STEP_KEYS))})")
    args_doc = doc.get("args") or []
    if not isinstance(args_doc, list):
        raise UsageError(f"{where}: args must be a list like ['to~landlord']")
    conds = []
    for a in args_doc:
        if isinstance(a, str):
            conds.append(ArgCondition.parse(a))
        elif isinstance(a, dict) and set(a) <= {"path", "op", "value"} and "path" in a and "op" in a:
            conds.append(ArgCondition(str(a["path"]), str(a["op"]),
                                      None if a.get("value") is None else str(a["value"])))
        else:
            raise UsageError(f"{where}: bad argument condition {a!r}")
    for key in ("tool", "output_matches", "level"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise UsageError(f"{where}: {key} must be a string")
    level = doc.get("level")
    return StepPattern(tool=doc.get("tool"), args=tuple(conds), output_matches=doc.get("output_matches"),
                       level=level.upper() if level else None)


def from_document(doc: Any, where: str = "signature") -> Signature:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: expected a mapping (tool:, args:, ... or sequence:)")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown field {sorted(unknown)[0]!r} (valid: {', '.join(sorted(TOP_KEYS))})")
    if "sequence" in doc:
        if set(doc) & STEP_KEYS:
            raise UsageError(f"{where}: use either sequence: or tool:/args:/..., not both")
        seq = doc["sequence"]
        if not isinstance(seq, list) or not seq:
            raise UsageError(f"{where}: sequence must be a non-empty list of steps")
        steps = tuple(_step_from(s, f"{where}: sequence[{i}]") for i, s in enumerate(seq))
    else:
        steps = (_step_from({k: v for k, v in doc.items() if k in STEP_KEYS}, where),)
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise UsageError(f"{where}: metadata must be a mapping KEY: VALUE")
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise UsageError(f"{where}: model must be a string")
    return Signature(steps, model=model,
                     metadata=tuple((str(k), as_text(v)) for k, v in meta.items()))


def load_file(path: Path) -> Signature:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read signature file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read signature file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    return from_document(doc, str(path))
