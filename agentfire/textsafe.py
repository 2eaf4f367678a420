"""Untrusted text stays text (DESIGN.md rule 5).

Trace content (tool inputs and outputs, model text) comes from users and the internet. Before it
reaches a terminal it loses its power: escape sequences, other control characters and bidi
overrides are shown as visible escapes, and long values are cut with a visible marker. Rich markup
is neutralised by the CLI rendering through rich.text.Text (never markup=True), not here.
"""

from __future__ import annotations

import re

DEFAULT_LIMIT = 2000

# C0 controls except \t and \n, DEL, C1 controls, bidi embeddings/overrides/isolates, line and
# paragraph separators, zero-width characters that can hide text.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str, *, keep_newlines: bool = True) -> str:
    """Control characters as visible escapes; newlines kept (or shown as ⏎ when not)."""
    out = _UNSAFE.sub(_escape, text)
    if not keep_newlines:
        out = out.replace("\r", "\\r").replace("\n", " ⏎ ")
    return out


def cut(text: str, limit: int | None = DEFAULT_LIMIT) -> str:
    """Cut to `limit` characters with a visible marker saying how much was cut."""
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… [+{len(text) - limit:,} chars; --full shows all]"


def safe(value: object, limit: int | None = DEFAULT_LIMIT, *, keep_newlines: bool = True) -> str:
    """Any value as inert display text: str() of it, neutralised and cut."""
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, (dict, list)) else _json(value)
    return cut(neutralise(text, keep_newlines=keep_newlines), limit)


def _json(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)
