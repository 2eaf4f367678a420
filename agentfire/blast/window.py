"""The scan window: --since 6h, or --from/--to, else the incident's start minus a margin, else
the last 24 hours. Always [start, end) in UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from agentfire.errors import UsageError
from agentfire.trajectory import iso

DEFAULT_LOOKBACK = timedelta(hours=24)
# An incident is declared after the agent went off the rails: look back this far before it.
INCIDENT_MARGIN = timedelta(hours=2)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.I)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    origin: str  # how it was chosen, for the summary

    def to_json(self) -> dict[str, str | None]:
        return {"from": iso(self.start), "to": iso(self.end), "origin": self.origin}

    def split(self, parts: int) -> list["Window"]:
        """Consecutive sub-windows (for concurrent paging)."""
        parts = max(1, parts)
        step = (self.end - self.start) / parts
        edges = [self.start + step * i for i in range(parts)] + [self.end]
        return [Window(edges[i], edges[i + 1], self.origin) for i in range(parts)]


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text or "")
    if not m:
        raise UsageError(f"bad duration {text!r}: use a number and a unit, like 30m, 6h, 2d")
    try:
        value = timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2).lower()])
    except OverflowError:
        raise UsageError(f"bad duration {text!r}: too long") from None
    if value <= timedelta(0):
        raise UsageError(f"bad duration {text!r}: must be more than zero")
    return value


def parse_instant(text: str, flag: str) -> datetime:
    raw = text.strip()
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"bad {flag} {text!r}: use an ISO time like 2026-11-23T14:00:00Z") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def resolve(
    *, since: str | None = None, from_: str | None = None, to: str | None = None,
    incident_start: datetime | None = None, now: datetime | None = None,
) -> Window:
    try:
        return _resolve(since=since, from_=from_, to=to, incident_start=incident_start, now=now)
    except OverflowError:  # --since 99999999w, --from 0001-01-01T00:00+14:00: before year 1
        raise UsageError("window out of range: it must lie between the years 1 and 9999") from None


def _resolve(*, since: str | None, from_: str | None, to: str | None,
             incident_start: datetime | None, now: datetime | None) -> Window:
    now = now or datetime.now(timezone.utc)
    if since and from_:
        raise UsageError("give --since or --from, not both")
    end = parse_instant(to, "--to") if to else now
    if since:
        start, origin = end - parse_duration(since), f"--since {since.strip()}"
    elif from_:
        start, origin = parse_instant(from_, "--from"), "--from/--to"
    elif incident_start is not None:
        start = incident_start - INCIDENT_MARGIN
        origin = f"incident start {iso(incident_start)} minus {INCIDENT_MARGIN}"
    else:
        start, origin = end - DEFAULT_LOOKBACK, "last 24 h (no incident given)"
    if start >= end:
        raise UsageError(f"empty window: --from {iso(start)} is not before --to {iso(end)}")
    return Window(start.astimezone(timezone.utc), end.astimezone(timezone.utc), origin)
