"""Pre-approved fallback messages: what users see while the agent is off.

A fallback is markdown with a short YAML header naming who approved it and when:

    ---
    approved_by: Dana Reyes (Head of Support)
    approved_on: 2026-11-02
    ---
    Our assistant is paused while we check something. A person will reply within 2 hours.

A message without both header fields is not approved: `kill` warns loudly, and the guard still
serves it (something is better than nothing) but says it is unapproved.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Fallback:
    path: Path
    text: str
    approved_by: str | None
    approved_on: str | None
    problem: str = ""

    @property
    def approved(self) -> bool:
        return not self.problem

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "approved": self.approved, "approved_by": self.approved_by,
            "approved_on": self.approved_on, "problem": self.problem or None,
        }


def parse_fallback(path: Path) -> Fallback:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Fallback(path, "", None, None, f"{path} does not exist")
    except (OSError, UnicodeDecodeError) as exc:
        return Fallback(path, "", None, None, f"{path}: cannot read ({exc})")
    header: dict[str, Any] = {}
    body = raw
    if raw.startswith("---"):
        parts = raw.split("\n---", 1)
        if len(parts) == 2:
            loaded = simple_header(parts[0][3:])
            if loaded is None:  # anything but the simplest header: YAML itself
                import yaml

                try:
                    loaded = yaml.safe_load(parts[0][3:])
                except yaml.YAMLError:
                    return Fallback(path, raw, None, None, f"{path}: the header is not valid YAML")
            header = loaded if isinstance(loaded, dict) else {}
            body = parts[1].split("\n", 1)[1] if "\n" in parts[1] else ""
    by = header.get("approved_by")
    on = header.get("approved_on")
    if isinstance(on, (dt.date, dt.datetime)):
        on = on.isoformat()
    text = body.strip()
    problem = ""
    if not by or not on:
        problem = f"{path} has no approved_by/approved_on header"
    elif not text:
        problem = f"{path} has an empty message"
    return Fallback(path, text, str(by) if by else None, str(on) if on else None, problem)


# `key: value` lines whose YAML meaning is certain without a YAML parser (issue 15: importing
# yaml is ~10 ms of a kill): a plain key, and a value that is either a date (YYYY-MM-DD) or text
# that starts with an ASCII letter, holds no character YAML gives a meaning to (: # and the
# like), has no space at its end and is not one of YAML 1.1's booleans or nulls.
_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*): +([A-Za-z][A-Za-z0-9 .,()'/-]*[A-Za-z0-9.)]|[A-Za-z]"
                   r"|(\d{4})-(\d{2})-(\d{2}))\Z")
_NOT_TEXT = {"yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
             "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL"}


def simple_header(text: str) -> dict[str, Any] | None:
    """What yaml.safe_load(text) returns, for a header of only such lines (and empty ones);
    None for anything else (the caller asks YAML)."""
    lines = text.split("\n")
    if lines[0] != "":  # the rest of the opening --- line
        return None
    out: dict[str, Any] = {}
    for line in lines[1:]:
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            return None
        key, value = m.group(1), m.group(2)
        if key in _NOT_TEXT or value in _NOT_TEXT:
            return None
        if m.group(3):
            try:
                out[key] = dt.date(int(m.group(3)), int(m.group(4)), int(m.group(5)))
            except ValueError:  # YAML raises on an impossible date: let it
                return None
        else:
            out[key] = value
    return out


def load_fallback(runbook: Any) -> Fallback | None:
    name = runbook.agent.fallback
    if not name:
        return None
    return parse_fallback(runbook.resolve_path(name))
