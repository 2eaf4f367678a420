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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


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
            try:
                loaded = yaml.safe_load(parts[0][3:])
                header = loaded if isinstance(loaded, dict) else {}
            except yaml.YAMLError:
                return Fallback(path, raw, None, None, f"{path}: the header is not valid YAML")
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


def load_fallback(runbook: Any) -> Fallback | None:
    name = runbook.agent.fallback
    if not name:
        return None
    return parse_fallback(runbook.resolve_path(name))
