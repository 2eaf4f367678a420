"""Facts in text and where they first appeared: numbers, amounts, ids, dates, emails.

`facts_in(value)` extracts them from any value (strings inside dicts and lists too) as normalised
keys ("num:1000", "date:5-20", "id:hat266", "email:a@b.example") so formatting does not matter:
1,000 = 1000 = $1,000.00; 2024-05-20 = May 20th = 20 May = 05/20/2024. `Facts(index)` records, in
one pass, the first position at which each fact appears in a *source* (the trajectory's input, a
user's or system message, a tool output, a model turn's prompt), and `unsupported(...)` says which
of a turn's facts appear in no source before it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from agentfire.triage._text import flat

if TYPE_CHECKING:
    from agentfire.triage._index import Index

MAX_TEXT = 100_000
MONTHS = {m: n for n, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
    ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
    ("oct", "october"), ("nov", "november"), ("dec", "december")), 1) for m in names}
_MONTH = (r"(Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
          r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
US_DATE = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})/(\d{2,4})(?![\d/])")
MONTH_DAY = re.compile(_MONTH + r"\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?!\d)")
DAY_MONTH = re.compile(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r"\b")
# a number on its own (not part of a date, time, version, id or path); in JSON it follows a ':'
NUMBER = re.compile(r"(?<![\w.\-/])(?<!\d:)\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w\-/]|:\d|\.\d)")
# an id: letters and digits mixed (HAT266, mia_li_3668, A-123456); not part of a file name or path
ID = re.compile(r"(?<![\w@.\-/])(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9][A-Za-z0-9_\-]{3,60}"
                r"(?![\w@\-/]|\.\w)")
CODE = re.compile(r"(?<![\w@.\-])[A-Z][A-Z0-9]{4,11}(?![\w@\-])")  # PUNERT: a code, compared only for lists
UNIT = re.compile(r"\d+(?:st|nd|rd|th|am|pm|h|hr|hrs|m|min|s|k|kg|km|mb|gb|x|d|yr|yrs|px|ms)|\d+(?:-[a-z]+)+", re.I)
EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}$")
EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b")


def _num(text: str) -> str:
    v = float(text.replace(",", ""))
    if abs(v) >= 1e15:
        return f"num:{text}"
    r = round(v, 2)  # every digit kept: 7504069 and 7504070 are different facts
    return f"num:{int(r)}" if r.is_integer() else "num:" + f"{r:.2f}".rstrip("0")


MAYBE = re.compile(r"[\d@]|[A-Z]{2}")  # no digit, no @, no capitals: nothing to find (checked in C)
_CACHE: dict[tuple[str, bool], dict[str, str]] = {}
CACHE_SIZE = 4096


def facts_in(value: Any, *, only_ids: bool = False) -> dict[str, str]:
    """normalised key -> how it was written, for every fact in `value`. A loop repeats the same
    texts: each distinct text is scanned once (a bounded cache)."""
    text = flat(value)
    if not text or not MAYBE.search(text, 0, MAX_TEXT):
        return {}
    key = (text, only_ids)
    hit = _CACHE.get(key)
    if hit is None:
        hit = {}
        _scan(text[:MAX_TEXT], hit, only_ids)
        if len(text) <= 4096:
            if len(_CACHE) >= CACHE_SIZE:
                _CACHE.clear()
            _CACHE[key] = hit
    return dict(hit)


def _scan(text: str, found: dict[str, str], only_ids: bool) -> None:
    spans: list[tuple[int, int]] = []
    for m in ISO_DATE.finditer(text):
        found.setdefault(f"date:{int(m.group(2))}-{int(m.group(3))}", m.group(0))
        spans.append(m.span())
    for m in US_DATE.finditer(text):
        a, b = int(m.group(1)), int(m.group(2))
        if 1 <= a <= 12 and 1 <= b <= 31:
            found.setdefault(f"date:{a}-{b}", m.group(0))
            spans.append(m.span())
    for m in MONTH_DAY.finditer(text):
        found.setdefault(f"date:{MONTHS[m.group(1).lower()]}-{int(m.group(2))}", m.group(0))
        spans.append(m.span())
    for m in DAY_MONTH.finditer(text):
        found.setdefault(f"date:{MONTHS[m.group(2).lower()]}-{int(m.group(1))}", m.group(0))
        spans.append(m.span())
    if "@" in text:
        at = text.find("@")
        while at != -1:
            local = EMAIL_LOCAL.search(text, max(0, at - 64), at)
            domain = EMAIL_DOMAIN.match(text, at + 1, at + 256)
            if local and domain:
                email = f"{local.group(0)}@{domain.group(0)}"
                found.setdefault(f"email:{email.lower()}", email)
                spans.append((local.start(), domain.end()))
            at = text.find("@", at + 1)
    for m in ID.finditer(text):
        tok = m.group(0)
        if UNIT.fullmatch(tok) or _inside(m.start(), spans):
            continue
        found.setdefault(f"id:{tok.lower()}", tok)
    for m in CODE.finditer(text):
        found.setdefault(f"code:{m.group(0).lower()}", m.group(0))
    if only_ids:
        return
    for m in NUMBER.finditer(text):
        if _inside(m.start(), spans):
            continue
        raw = m.group(1) + (m.group(2) or "")
        try:
            found.setdefault(_num(raw), m.group(0))
        except ValueError:
            continue


DATE_SLACK_DAYS = 7


def _day_of_year(key: str) -> int | None:
    """date:M-D -> its day in a leap year (dates carry no year here)."""
    from datetime import date

    try:
        month, day = (int(x) for x in key[5:].split("-"))
        return date(2000, month, day).timetuple().tm_yday
    except ValueError:
        return None


ID_DIGITS = re.compile(r"\d{4,}")


def _id_numbers(ident: str) -> list[str]:
    """The numbers an id's digits are spoken as: certificate_7504069 -> 7504069 ("certificate
    7504069"), and a long digit run's last four ("the gift card ending in 4069"). Sources only:
    they make a stated number known, never an operand of `derived`."""
    out = []
    for m in ID_DIGITS.finditer(ident):
        digits = m.group(0)
        out.append(_num(digits))
        if len(digits) >= 6:
            out.append(_num(digits[-4:]))
    return out


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


class Facts:
    """The first position (2p for a step's content, 2p-1 for a model turn's prompt, -2 for the
    trajectory's input) at which each fact appeared in a source."""

    def __init__(self, idx: "Index"):
        self.first: dict[str, int] = {}
        self.numbers: list[tuple[int, float]] = []  # (first position, value), in order
        self.dates: list[tuple[int, int]] = []  # (first position, day of the year), in order
        self._add(idx.traj.root_input, -2)
        prompt_len = 0
        for p, s in enumerate(idx.steps):
            if idx.report[p]:  # an execution's result, spoken as a message: a source
                self._add(idx.text[p], 2 * p)
            if idx.model[p]:
                inp = s.input
                if isinstance(inp, list):
                    # a prompt is the conversation so far: read only what is new since the last one
                    start = prompt_len if len(inp) >= prompt_len else 0
                    for msg in inp[start:]:
                        if not (isinstance(msg, dict) and msg.get("role") == "assistant"):
                            self._add(msg, 2 * p - 1)
                    prompt_len = len(inp)
                elif inp is not None:
                    self._add(inp, 2 * p - 1)
            elif idx.tool[p]:
                self._add(s.output, 2 * p)
                if idx.cls[p] != "mutation" and idx.error[p] is None:
                    # what the agent looked up (and got an answer for) or worked out in a
                    # scratchpad / calculator is its source for what it says next
                    self._add(idx.args[p], 2 * p)
                if s.status_message:
                    self._add(s.status_message, 2 * p)
            else:
                self._add(s.input, 2 * p)
                self._add(s.output, 2 * p)

    def _add(self, value: Any, at: int) -> None:
        if value is None:
            return
        for key in facts_in(value):
            if key not in self.first:
                self.first[key] = at
                if key.startswith("num:"):
                    try:
                        self.numbers.append((at, float(key[4:])))
                    except ValueError:
                        pass
                elif key.startswith("id:"):
                    for part in _id_numbers(key[3:]):
                        self.first.setdefault(part, at)
                elif key.startswith("date:") and (day := _day_of_year(key)) is not None:
                    self.dates.append((at, day))

    def known(self, key: str, p: int) -> bool:
        at = self.first.get(key)
        return at is not None and at < 2 * p

    def near_date(self, key: str, p: int) -> bool:
        """A date within a week of an earlier one: "move it one day later", "the return a week
        after", worked out from a date a source gave."""
        day = _day_of_year(key)
        limit = 2 * p
        return day is not None and any(at < limit and abs(day - d) <= DATE_SLACK_DAYS for at, d in self.dates)

    def derived(self, key: str, p: int) -> bool:
        """A number that is a sum, difference or small multiple/fraction of earlier numbers."""
        try:
            x = float(key[4:])
        except ValueError:
            return False
        limit = 2 * p
        known = {round(v, 2) for at, v in self.numbers if at < limit}
        for v in known:
            if round(x - v, 2) in known or round(v - x, 2) in known:
                return True
        for k in range(2, 11):
            if round(x / k, 2) in known or round(x * k, 2) in known:
                return True
        return False


def unsupported(values: dict[str, str], facts: Facts, p: int) -> list[str]:
    """The keys of `values` (facts a step at position p states) that no source before p holds.
    Small numbers (below 10) and years are not checked: counts and list numbering, not facts."""
    out = []
    for key, raw in values.items():
        if facts.known(key, p) or key.startswith("code:"):
            continue
        if key.startswith("date:") and facts.near_date(key, p):
            continue
        if key.startswith("num:"):
            try:
                v = float(key[4:])
            except ValueError:
                continue
            if abs(v) < 10 or (v.is_integer() and 1900 <= v <= 2100 and not raw.startswith("$")):
                continue
            if facts.derived(key, p):
                continue
        out.append(f"{key.split(':', 1)[0]}:{raw}")
    return out
