"""Secrets stay secret (DESIGN.md rule 6).

Secrets come only from environment variables named in runbook.yaml. Every value read through
`secret()` is remembered so that `redact()` can scrub it from any text on its way to the
terminal, the journal or --json: a safety net behind never putting them there.
"""

from __future__ import annotations

import os

from agentfire.errors import ConfigError

_SEEN: set[str] = set()


def secret(env_name: str, *, what: str) -> str:
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"environment variable ${env_name} is not set ({what})")
    if len(value) >= 4:
        _SEEN.add(value)
    return value


def redact(text: str) -> str:
    for value in sorted(_SEEN, key=len, reverse=True):
        if value in text:
            text = text.replace(value, "***")
    return text


def redact_obj(obj: object) -> object:
    """redact() through dicts and lists, for JSON documents."""
    if not _SEEN:
        return obj
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj
