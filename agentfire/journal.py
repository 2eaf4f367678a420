"""The incident journal (DESIGN.md rule 4): one JSON-lines file per incident.

Each command that changes something appends an entry: who (actor), when (UTC), what (action),
the state before and after, the outcome and how long it took. `--undo` and `--lift` restore from
the journaled "before", never from a guess. Entries are appended under a lock and fsynced; a
corrupt line is reported with its line number and never rewritten.
"""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from agentfire._files import append_line, locked
from agentfire.errors import StateFileError, UsageError
from agentfire.secrets import redact_obj

INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return os.environ.get("USER") or f"uid-{os.getuid()}"


def new_incident_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    # os.urandom is what secrets.token_hex reads; importing secrets loads OpenSSL (15 ms of every start)
    return f"inc-{now:%Y%m%d-%H%M%S}-{os.urandom(2).hex()}"


def check_incident_id(incident: str) -> str:
    if not INCIDENT_ID.match(incident):
        # the CLI passes $AGENTFIRE_INCIDENT as if it were --incident: say where it came from
        origin = (" (from $AGENTFIRE_INCIDENT: fix or unset it)"
                  if os.environ.get("AGENTFIRE_INCIDENT") == incident else "")
        raise UsageError(
            f"invalid incident id {incident!r}{origin}: letters, digits, '.', '_' and '-' only (max 80)"
        )
    return incident


@dataclass(frozen=True)
class Journal:
    """The journal of one incident.

    `before_first_append` runs once, just before this object's first entry is written: the CLI
    announces a new incident there (an incident exists from its first action, never from a
    command that failed validation) and journals an explicit --reopen of a closed one."""

    dir: Path
    incident: str
    before_first_append: Callable[["Journal"], None] | None = field(
        default=None, compare=False, repr=False, hash=False)
    _hooked: list[bool] = field(default_factory=list, compare=False, repr=False, hash=False)

    @property
    def path(self) -> Path:
        return self.dir / f"{self.incident}.jsonl"

    def exists(self) -> bool:
        return self.path.exists()

    def append(self, action: str, *, actor: str, **fields: Any) -> dict[str, Any]:
        if self.before_first_append is not None and not self._hooked:
            self._hooked.append(True)  # before the call: the hook may append itself
            self.before_first_append(self)
        entry = {"ts": iso(utcnow()), "incident": self.incident, "actor": actor, "action": action}
        entry.update(fields)
        entry = redact_obj(entry)  # type: ignore[assignment]
        line = json.dumps(entry, ensure_ascii=False, default=str, separators=(",", ":"))
        with locked(self.path):
            self._seal_torn_tail(actor)
            if not self.path.exists():
                opened = {
                    "ts": entry["ts"], "incident": self.incident, "actor": actor,
                    "action": "incident.open",
                }
                append_line(self.path, json.dumps(opened, separators=(",", ":")))
            append_line(self.path, line)
        return entry

    def _seal_torn_tail(self, actor: str) -> None:
        """A writer killed mid-line leaves a last line without its newline; appending after it
        would glue two entries into one corrupt middle line. Keep the fragment as data in an
        entry of its own instead (caller holds the lock)."""
        try:
            data = self.path.read_bytes()  # journals are small: a few entries per command
        except FileNotFoundError:
            return
        if not data or data.endswith(b"\n"):
            return
        fragment = data[data.rfind(b"\n") + 1:]
        with open(self.path, "r+b") as fh:
            fh.truncate(len(data) - len(fragment))
        note = {"ts": iso(utcnow()), "incident": self.incident, "actor": actor,
                "action": "journal.torn_line", "fragment": fragment.decode("utf-8", "replace")}
        append_line(self.path, json.dumps(note, ensure_ascii=False, separators=(",", ":")))

    def entries(self) -> list[dict[str, Any]]:
        return list(self.iter_entries())

    def iter_entries(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                except json.JSONDecodeError as exc:
                    if not raw.endswith("\n"):
                        # a torn last line from a killed writer: everything before it is intact
                        return
                    raise StateFileError(
                        f"{self.path}:{n}: corrupt journal line ({exc.msg}); fix or remove it by hand"
                    ) from None
                if isinstance(entry, dict):
                    _check_entry(entry, f"{self.path}:{n}")
                    yield entry

    def started_at(self) -> datetime | None:
        for entry in self.iter_entries():
            return datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))
        return None


def _check_entry(entry: dict[str, Any], where: str) -> None:
    """Every reader relies on ts and action (and a kill's regions): a hand-edited line without
    them is one clear error naming the line, not a traceback in report or kill --undo."""
    ts, action, regions = entry.get("ts"), entry.get("action"), entry.get("regions")
    problem = None
    if not isinstance(action, str):
        problem = "no action"
    elif not isinstance(ts, str):
        problem = "no ts"
    elif action in ("kill", "kill.undo") and regions is not None and not (
            isinstance(regions, list) and all(isinstance(r, dict) for r in regions)):
        problem = "regions is not a list of objects"
    else:
        try:
            datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            problem = f"ts {ts!r} is not an ISO time"
    if problem:
        raise StateFileError(f"{where}: not a journal entry ({problem}); fix or remove it by hand")


CLOSE, REOPEN = "incident.close", "incident.reopen"


def closed_entry(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The entry that closed the incident, or None while it is open (never closed, or reopened
    with --reopen after its last close)."""
    last = None
    for e in entries:
        if e.get("action") == CLOSE:
            last = e
        elif e.get("action") == REOPEN:
            last = None
    return last


def is_drill(journal: Journal) -> bool:
    """The incident is a gameday drill (opened by `gameday start`): its commands see only what
    the runbook's `gameday:` section lets drills touch."""
    try:
        return any(e.get("action") == "gameday.start" for e in journal.iter_entries())
    except StateFileError:
        return False


def list_incidents(journal_dir: Path) -> list[str]:
    """Incident ids, newest journal first."""
    if not journal_dir.is_dir():
        return []
    files = sorted(journal_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [p.stem for p in files]


def latest_incident_with(journal_dir: Path, action: str) -> str | None:
    """The most recently written incident that has an entry with `action`.

    A corrupt journal on the way raises StateFileError: skipping it could pick an older
    incident than the one the engineer means."""
    for incident in list_incidents(journal_dir):
        if any(e.get("action") == action for e in Journal(journal_dir, incident).iter_entries()):
            return incident
    return None
