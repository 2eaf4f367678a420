"""Secrets stay secret (DESIGN.md rule 6).

Secrets come only from environment variables named in runbook.yaml. Every value read through
`secret()` is remembered so that `redact()` can scrub it from any text on its way to the
terminal, the journal or --json: a safety net behind never putting them there.
"""

from __future__ import annotations

import os

from agentfire.errors import ConfigError

_SEEN: set[str] = set()


class MissingSecret(ConfigError):
    """A secret's environment variable is not set: for a region, that region's AUTH row."""


def secret(env_name: str, *, what: str) -> str:
    value = os.environ.get(env_name)
    if not value:
        raise MissingSecret(f"environment variable ${env_name} is not set ({what})")
    if len(value) >= 4:
        _SEEN.add(value)
    return value


_FORMS: tuple[frozenset[str], list[str]] = (frozenset(), [])


def _encodings(value: str) -> list[str]:
    """The ways we send a secret, which a server may echo back: as is, URL-encoded (query strings,
    form bodies) and base64 (HTTP Basic)."""
    from base64 import b64encode
    from urllib.parse import quote, quote_plus

    return [value, quote(value, safe=""), quote(value), quote_plus(value),
            b64encode(value.encode()).decode()]


def _forms() -> list[str]:
    """Every seen secret in every encoding, plus the HTTP Basic credential of every pair (a
    Langfuse public:secret key pair goes out as base64 of both), longest first."""
    global _FORMS
    seen = frozenset(_SEEN)
    if _FORMS[0] != seen:
        from base64 import b64encode

        forms = {f for v in seen for f in _encodings(v)}
        for a in seen:
            for b in seen:
                if a != b:
                    forms.add(b64encode(f"{a}:{b}".encode()).decode())
        _FORMS = (seen, sorted((f for f in forms if len(f) >= 4), key=len, reverse=True))
    return _FORMS[1]


def redact(text: str) -> str:
    if not _SEEN or not isinstance(text, str):
        return text
    for value in _forms():
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


def redact_json_text(text: str) -> str:
    """redact() for JSON text (a streamed document): a secret is also looked for as JSON escapes it."""
    if not _SEEN or not isinstance(text, str):
        return text
    import json

    for value in _forms():
        for form in {value, json.dumps(value, ensure_ascii=False)[1:-1]}:
            if form in text:
                text = text.replace(form, "***")
    return text
