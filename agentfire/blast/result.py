"""What a blast scan found: the hits (one per matching trajectory) and how complete the scan was."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from agentfire.blast.signature import Signature
from agentfire.blast.window import Window
from agentfire.errors import UsageError
from agentfire.trajectory import iso

# distinct users at or above this: a customer-communications problem, not only an engineering one
CUSTOMER_COMMS_USERS = 25


@dataclass(slots=True)  # a non-selective blast holds hundreds of thousands
class Hit:
    trace_id: str
    user_id: str | None
    start: datetime | None  # the trajectory's start
    status: str  # running / finished / error
    step_index: int | None  # 1-based index of the matching step in the trajectory
    tool: str | None
    args: Any
    hit_at: datetime | None  # when the matching step started

    @property
    def still_open(self) -> bool:
        return self.status == "running"

    def to_json(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id, "user_id": self.user_id, "start": iso(self.start),
            "status": self.status, "still_open": self.still_open, "step_index": self.step_index,
            "tool": self.tool, "args": self.args, "hit_at": iso(self.hit_at),
        }


@dataclass
class Gap:
    """A part of the window that was not scanned, and why."""

    start: datetime
    end: datetime
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"from": iso(self.start), "to": iso(self.end), "reason": self.reason}


@dataclass
class ScanStats:
    pages: int = 0
    requests: int = 0
    rows_scanned: int = 0
    candidates: int = 0
    seconds: float = 0.0
    engine: str = ""
    # the files store's Parquet scan: the time spans the status pass read ([from, to) each) and
    # how many hit trajectories reached outside them and were read again over the whole store
    status_spans: list[tuple[datetime, datetime]] | None = None
    reread: int = 0
    # the files store's Parquet scan found the matching rows by file and row, reading no time
    located_by_row: bool = False

    def to_json(self) -> dict[str, Any]:
        out = {"pages": self.pages, "requests": self.requests, "rows_scanned": self.rows_scanned,
               "candidates": self.candidates, "seconds": round(self.seconds, 3), "engine": self.engine}
        if self.status_spans is not None:
            out["status_read"] = {"spans": [[iso(a), iso(b)] for a, b in self.status_spans],
                                  "reread_whole_store": self.reread}
        if self.located_by_row:
            out["located_by_row"] = True
        return out


@dataclass
class BlastResult:
    signature: Signature
    window: Window
    store: str
    hits: list[Hit]
    gaps: list[Gap] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    as_of: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    # trajectories with a step that would match but whose arguments were not recorded (redacted
    # by the tracer): the count is then a lower bound
    args_not_recorded: list[str] = field(default_factory=list)

    @property
    def lower_bound(self) -> bool:
        return bool(self.args_not_recorded)

    @property
    def complete(self) -> bool:
        return not self.gaps

    @property
    def _summary(self) -> HitsSummary | None:
        return getattr(self.hits, "summary", None)  # hits kept in the scan's engine, summed up there

    @property
    def user_ids(self) -> list[str]:
        s = self._summary
        return s.user_ids if s is not None else sorted({h.user_id for h in self.hits if h.user_id})

    @property
    def still_open_ids(self) -> list[str]:
        s = self._summary
        return s.still_open_ids if s is not None else [h.trace_id for h in self.hits if h.still_open]

    @property
    def first_hit(self) -> datetime | None:
        s = self._summary
        if s is not None:
            return s.first_hit
        times = [h.hit_at for h in self.hits if h.hit_at]
        return min(times) if times else None

    @property
    def last_hit(self) -> datetime | None:
        s = self._summary
        if s is not None:
            return s.last_hit
        times = [h.hit_at for h in self.hits if h.hit_at]
        return max(times) if times else None

    @property
    def customer_comms(self) -> bool:
        return len(self.user_ids) >= CUSTOMER_COMMS_USERS

    def summary_json(self) -> dict[str, Any]:
        return {
            "trajectories": len(self.hits), "distinct_users": len(self.user_ids),
            "still_open": bool(self.still_open_ids), "still_open_count": len(self.still_open_ids),
            "first_hit": iso(self.first_hit), "last_hit": iso(self.last_hit),
            "complete": self.complete, "lower_bound": self.lower_bound,
        }

    def to_json(self, hits: bool = True) -> dict[str, Any]:
        doc = {
            **self.summary_json(),
            "signature": self.signature.to_json(),
            "window": self.window.to_json(),
            "store": self.store,
            "as_of": iso(self.as_of),
            "still_open_trace_ids": self.still_open_ids,
            "user_ids": self.user_ids,
            "unscanned": [g.to_json() for g in self.gaps],
            "scan": self.stats.to_json(),
            "warnings": self.warnings,
            "args_not_recorded_trace_ids": self.args_not_recorded,
        }
        if hits:
            doc["hits"] = [h.to_json() for h in self.hits]
        return doc

    def hit_json_lines(self) -> Iterator[str]:
        """Each hit as one line of JSON text (Hit.to_json), in hit order: from the scan's engine
        when it kept the hits (no Python object per hit), else from the hits."""
        lines = getattr(self.hits, "json_lines", None)
        if lines is not None:
            yield from lines()
            return
        for h in self.hits:
            yield json.dumps(h.to_json(), ensure_ascii=False, default=str)

    def hit_csv_values(self) -> Iterator[tuple[Any, ...]]:
        """Each hit's CSV_COLUMNS values (args as JSON text), in hit order: from the scan's engine
        when it kept the hits (times formatted there, no Hit object), else from the hits."""
        rows = getattr(self.hits, "csv_rows", None)
        if rows is not None:
            for *head, args, hit_at in rows():
                yield (*head, json.dumps(_parsed_args(args), ensure_ascii=False, default=str), hit_at)
            return
        for h in self.hits:
            row = h.to_json()
            row["args"] = json.dumps(row["args"], ensure_ascii=False, default=str)
            yield tuple(row[k] for k in CSV_COLUMNS)

    def write_json(self, write: Callable[[str], Any], extra: dict[str, Any] | None = None,
                   indent: int | None = None) -> None:
        """The to_json() document, redacted, written in pieces: the hits are streamed one per
        line (a non-selective blast lists hundreds of thousands), never one list in memory."""
        from agentfire.secrets import redact_json_text, redact_obj

        doc = {**self.to_json(hits=False), **(extra or {})}
        head = json.dumps(redact_obj(doc), ensure_ascii=False, indent=indent, default=str)
        pad = "\n" + " " * indent if indent else " "
        write(head[:-1].rstrip() + "," + pad + '"hits": [')
        n = 0
        for text in self.hit_json_lines():
            write(("," if n else "") + pad + (" " * (indent or 0)) + redact_json_text(text))
            n += 1
        write((pad if n else "") + "]" + ("\n" if indent else "") + "}\n")


@dataclass
class HitsSummary:
    """What the summary says of hits kept in the scan's engine (computed there)."""

    user_ids: list[str]
    still_open_ids: list[str]
    first_hit: datetime | None
    last_hit: datetime | None


CSV_COLUMNS = ("trace_id", "user_id", "start", "status", "still_open", "step_index", "tool", "args", "hit_at")


def render_out(result: BlastResult, path: Path) -> bytes:
    suffix = path.suffix.lower()
    if suffix == ".json":
        parts: list[str] = []
        result.write_json(parts.append, indent=2)
        return "".join(parts).encode()
    if suffix == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        for values in result.hit_csv_values():
            # a cell starting with = + - @ is a formula in spreadsheets: legal opens this in Excel
            w.writerow(dict(zip(CSV_COLUMNS, map(_csv_safe, values))))
        return buf.getvalue().encode()
    raise UsageError(f"--out {path}: use a .csv or .json file name")


def _parsed_args(value: Any) -> Any:
    """A step's arguments as the files store's Hit reads them: parsed when they are JSON text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            pass
    return value


def _csv_safe(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def write_out(result: BlastResult, path: Path) -> None:
    from agentfire._files import atomic_write

    data = render_out(result, path)
    atomic_write(path, data, mode=0o600)  # user ids and arguments: personal data
