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


def canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except (ValueError, RecursionError):
        return repr(value)


def matches_any(name: str, globs: list[str] | tuple[str, ...]) -> bool:
    n = name.lower()
    return any(fnmatchcase(n, g.lower()) for g in globs)


SQL_KEYS = ("query", "sql", "statement")
READ_SQL = re.compile(r"^\s*(?:\(\s*)?(SELECT|WITH|SHOW|EXPLAIN|DESCRIBE|DESC)\b", re.I)
WRITE_SQL = re.compile(
    r"\b(INSERT|UPDATE|DELETE|DROP|TRUNCATE|ALTER|CREATE|MERGE|REPLACE|GRANT|REVOKE|UPSERT)\b", re.I
)


def sql_of(step: Step) -> str | None:
    """The SQL a tool step runs, if it runs any."""
    if not step.is_tool:
        return None
    args = tool_args(step)
    for key in SQL_KEYS:
        if isinstance(args.get(key), str):
            return args[key]
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


def call_class(step: Step, cfg: TriageSection) -> str:
    """'read', 'mutation' or 'other' for a tool step (SQL is judged by its statement)."""
    sql = sql_of(step)
    if sql is not None:
        if READ_SQL.match(sql) and not WRITE_SQL.search(sql):
            return "read"
        return "mutation" if (WRITE_SQL.search(sql) or destructive_sql_re(cfg).search(sql)) else "other"
    if matches_any(step.name, cfg.destructive_tools) or matches_any(step.name, cfg.mutation_tools):
        return "mutation"
    if matches_any(step.name, cfg.read_tools):
        return "read"
    return "other"


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
