"""Reading steps the way the detectors need them: model text, tool arguments, SQL, tool classes.

Trace content arrives in many shapes (OpenAI messages, Langfuse generations, Phoenix spans); these
helpers accept them all and never raise on odd values.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any, Iterator

from agentfire.config import TriageSection
from agentfire.trajectory import Step

MAX_WALK = 2000  # strings visited per value: a hostile output cannot make a detector quadratic


def model_text(step: Step) -> str:
    """The assistant's words in a model step's output ('' when it only called a tool)."""
    return _text_of(step.output)


def _text_of(value: Any, depth: int = 0) -> str:
    if depth > 6 or value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # a message list: the last assistant message (or the last element)
        for item in reversed(value):
            if isinstance(item, dict) and item.get("role") == "assistant":
                return _text_of(item, depth + 1)
        return _text_of(value[-1], depth + 1) if value else ""
    if isinstance(value, dict):
        for key in ("content", "text", "completion", "message", "answer"):
            if key in value:
                return _text_of(value[key], depth + 1)
        if isinstance(value.get("choices"), list) and value["choices"]:
            return _text_of(value["choices"][0], depth + 1)
    return ""


def tool_args(step: Step) -> dict[str, Any]:
    """A tool step's arguments as a dict ({'input': value} when they are not one)."""
    value = step.input
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            pass
    if isinstance(value, dict):
        for key in ("arguments", "args", "parameters", "kwargs"):
            inner = value.get(key)
            if isinstance(inner, dict) and len(value) <= 2:
                return inner
        return value
    if value is None:
        return {}
    return {"input": value}


def strings(value: Any, limit: int = MAX_WALK) -> Iterator[str]:
    """Every string inside a value (keys too), depth first, at most `limit` of them."""
    stack = [value]
    seen = 0
    while stack and seen < limit:
        v = stack.pop()
        if isinstance(v, str):
            seen += 1
            yield v
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str):
                    stack.append(k)
                stack.append(item)
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif v is not None and not isinstance(v, bool):
            seen += 1
            yield str(v)


FLAT_LIMIT = 200_000


def flat(value: Any) -> str:
    """A value as one string to scan with regular expressions: a string itself, anything else as
    compact JSON (keys and values; json.dumps runs in C, a Python walk over every string did not),
    cut at FLAT_LIMIT characters."""
    if isinstance(value, str):
        return value[:FLAT_LIMIT]
    if value is None or isinstance(value, bool):
        return ""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, RecursionError):
        text = repr(value)
    return text[:FLAT_LIMIT]


def canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except (ValueError, RecursionError):
        return repr(value)


def matches_any(name: str, globs: list[str] | tuple[str, ...]) -> bool:
    n = name.lower()
    return any(fnmatchcase(n, g.lower()) for g in globs)


SQL_KEYS = ("sql", "statement")
READ_SQL = re.compile(r"^\s*(?:\(\s*)?(SELECT|WITH|SHOW|EXPLAIN|DESCRIBE|DESC)\b", re.I)
WRITE_SQL = re.compile(
    r"\b(INSERT|UPDATE|DELETE|DROP|TRUNCATE|ALTER|CREATE|MERGE|REPLACE|GRANT|REVOKE|UPSERT)\b", re.I
)
# what an SQL statement looks like at its start (a search tool's `query="update my address"` is
# not one): the verb and the keyword that must follow it
SQL_SHAPE = re.compile(
    r"\s*\(?\s*(?:SELECT\s+(?:[\w*(\"`\[]|DISTINCT\b)|WITH\s+(?:RECURSIVE\s+)?[\w\"`]+\s+(?:\([^)]{0,200}\)\s*)?AS\s*\("
    r"|INSERT\s+(?:OR\s+\w+\s+)?INTO\b|UPDATE\s+[\w.\"`\[\]]+\s+SET\b|DELETE\s+FROM\b"
    r"|DROP\s+(?:TABLE|DATABASE|SCHEMA|INDEX|VIEW|USER|ROLE)\b|TRUNCATE\b|ALTER\s+(?:TABLE|DATABASE|SCHEMA|USER)\b"
    r"|CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|INDEX|VIEW|DATABASE|SCHEMA|USER|ROLE)\b|MERGE\s+INTO\b"
    r"|REPLACE\s+INTO\b|GRANT\s+\w|REVOKE\s+\w|SHOW\s+\w|EXPLAIN\s+\w|DESCRIBE\s+\w)",
    re.I,
)
SQL_TOOL = re.compile(r"sql|database|(?<![a-z])db(?![a-z])|postgres|mysql|sqlite|duckdb|bigquery|snowflake"
                      r"|warehouse|redshift|clickhouse", re.I)


def sql_of(step: Step, args: dict[str, Any] | None = None) -> str | None:
    """The SQL a tool step runs, if it runs any: an `sql`/`statement` argument, a `query` argument
    that is shaped like SQL (or of a database tool), the input of a tool named for SQL. A search
    tool's `query` is a search, not SQL."""
    if not step.is_tool:
        return None
    if args is None:
        args = tool_args(step)
    for key in SQL_KEYS:
        if isinstance(args.get(key), str):
            return args[key]
    q = args.get("query")
    if isinstance(q, str) and (SQL_SHAPE.match(q[:400]) or SQL_TOOL.search(step.name)):
        return q
    if "sql" in step.name.lower() and isinstance(args.get("input"), str):
        return args["input"]
    return None


@lru_cache(maxsize=32)
def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


def production_re(markers: tuple[str, ...]) -> re.Pattern[str]:
    # a marker as its own word-ish token: 'prod' in 'prod.orders' or 'db-prod', not in 'products'
    alts = "|".join(re.escape(m) for m in markers) or "(?!)"
    return _rx(rf"(?<![a-z0-9])(?:{alts})(?![a-z0-9])")


def destructive_sql_re(cfg: TriageSection) -> re.Pattern[str]:
    return _rx(cfg.destructive_sql)


_NO_SQL = object()


def call_class(step: Step, cfg: TriageSection, args: dict[str, Any] | None = None, sql: Any = _NO_SQL) -> str:
    """'read', 'mutation', 'handoff', 'pure' or 'other' for a tool step (SQL is judged by its
    statement). A handoff passes the conversation to a person or another agent; a pure tool
    (calculator, scratchpad) changes nothing and reads nothing."""
    if sql is _NO_SQL:
        sql = sql_of(step, args)
    if sql is not None:
        if READ_SQL.match(sql) and not WRITE_SQL.search(sql):
            return "read"
        return "mutation" if (WRITE_SQL.search(sql) or destructive_sql_re(cfg).search(sql)) else "other"
    return name_class(step.name, cfg)


def name_class(name: str, cfg: TriageSection) -> str:
    """The class of a tool by its name alone (cached per configuration and name)."""
    cache = _NAME_CLASS.get(id(cfg))
    if cache is None or cache[0] is not cfg:
        cache = (cfg, {})
        _NAME_CLASS[id(cfg)] = cache
        if len(_NAME_CLASS) > 64:
            _NAME_CLASS.pop(next(iter(_NAME_CLASS)))
    hit = cache[1].get(name)
    if hit is None:
        if matches_any(name, cfg.handoff_tools):
            hit = "handoff"
        elif matches_any(name, cfg.destructive_tools) or matches_any(name, cfg.mutation_tools):
            hit = "mutation"
        elif matches_any(name, cfg.read_tools):
            hit = "read"
        elif matches_any(name, cfg.pure_tools):
            hit = "pure"
        else:
            hit = "other"
        cache[1][name] = hit
    return hit


_NAME_CLASS: dict[int, tuple[TriageSection, dict[str, str]]] = {}


# --- the decision a model turn made: its tool calls -----------------------------------------


_ARGS_CACHE: dict[str, Any] = {}


def _json_args(value: Any) -> Any:
    """Arguments given as a JSON string, parsed (a loop repeats the same string: parsed once; the
    cached value is shared, so callers must not mutate it)."""
    if isinstance(value, str):
        hit = _ARGS_CACHE.get(value)
        if hit is not None:
            return hit
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return value
        if len(value) <= 4096:
            if len(_ARGS_CACHE) >= 4096:
                _ARGS_CACHE.clear()
            _ARGS_CACHE[value] = parsed
        return parsed
    return value


def tool_calls_of(output: Any) -> list[dict[str, Any]]:
    """The tool calls a model turn emitted, as [{"id", "name", "arguments"}] (arguments parsed
    when they are a JSON string). Reads the canonical shape {"role": "assistant", "content",
    "tool_calls": [{"id", "name", "arguments"}]}, OpenAI's {"function": {...}}, Anthropic's
    content blocks ({"type": "tool_use", "name", "input"}) and a message list (the last assistant)."""
    if isinstance(output, list):
        for item in reversed(output):
            if isinstance(item, dict) and item.get("role") == "assistant":
                return tool_calls_of(item)
        return []
    if not isinstance(output, dict):
        return []
    calls: list[dict[str, Any]] = []
    raw = output.get("tool_calls")
    if isinstance(raw, list):
        for c in raw[:200]:
            if not isinstance(c, dict):
                continue
            fn = c.get("function") if isinstance(c.get("function"), dict) else c
            name = fn.get("name")
            if isinstance(name, str) and name:
                args = fn.get("arguments", fn.get("args", fn.get("input")))
                calls.append({"id": c.get("id") or fn.get("id"), "name": name, "arguments": _json_args(args)})
    content = output.get("content")
    if isinstance(content, list):
        for block in content[:200]:
            if isinstance(block, dict) and block.get("type") == "tool_use" and isinstance(block.get("name"), str):
                calls.append({"id": block.get("id"), "name": block["name"], "arguments": _json_args(block.get("input"))})
    if not calls and isinstance(output.get("choices"), list) and output["choices"]:
        first = output["choices"][0]
        if isinstance(first, dict):
            return tool_calls_of(first.get("message", first))
    return calls


# --- tool outputs that say they failed ----------------------------------------------------

ERROR_TEXT = re.compile(
    r"\s*(?:\[?error\]?\b|exception\b|traceback \(most recent call last\)|fatal\b|failed\b|failure\b"
    r"|[\w.]*(?:Error|Exception):)",
    re.I,
)
ERROR_ANYWHERE = re.compile(r"traceback \(most recent call last\)|exit ?code:? ?[1-9]\d*\b|execution failed", re.I)
ERROR_KEYS = ("error", "errors", "exception", "error_message", "errorMessage")


_ERROR_CACHE: dict[str, str | None] = {}


def output_error(output: Any) -> str | None:
    """The error a tool output reports, when it reports one: an error string ("Error: ...",
    a traceback, a non-zero exit code), an error object ({"error": ...}, {"status": "error"},
    {"success": false}). None for a normal output."""
    if isinstance(output, str):
        head = output[:2000]
        if not (ERROR_TEXT.match(head) or ERROR_ANYWHERE.search(head)):
            return None
        hit = _ERROR_CACHE.get(head)
        if hit is None:
            hit = short(output, 100)
            if len(_ERROR_CACHE) >= 1024:
                _ERROR_CACHE.clear()
            _ERROR_CACHE[head] = hit
        return hit
    if isinstance(output, dict):
        for key in ERROR_KEYS:
            v = output.get(key)
            if v not in (None, "", [], {}, False):
                return f"{key}: {short(v, 90)}"
        status = output.get("status")
        if isinstance(status, str) and status.lower() in ("error", "failed", "failure", "fail"):
            return f"status {status}"
        for key in ("success", "ok"):
            if output.get(key) is False:
                return f"{key}: false"
        for key in ("content", "output", "result", "text"):
            v = output.get(key)
            if isinstance(v, str) and len(output) <= 3:
                return output_error(v)
    return None


def short(value: Any, limit: int = 120) -> str:
    """A one-line excerpt for evidence, neutralised (the CLI neutralises it again when rendering)."""
    from agentfire.textsafe import neutralise

    text = value if isinstance(value, str) else canonical(value)
    text = neutralise(" ".join(text[: limit * 4].split()), keep_newlines=False)
    return text if len(text) <= limit else text[:limit] + "…"


def call_repr(step: Step, limit: int = 100) -> str:
    args = tool_args(step)
    inner = ", ".join(f"{k}={short(v, 60)}" for k, v in list(args.items())[:4])
    return short(f"{step.name}({inner})", limit)
