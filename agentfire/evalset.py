"""The frozen eval set: one regression case per line of a JSON-lines file (runbook.yaml `evals.path`).

Rules (DESIGN.md rule 7):
- Append-only: a case, once written, is never rewritten, reordered or dropped. A case with the id
  of one already there is a no-op that says so (the id is derived from trace id and step, so
  capturing the same failure twice cannot add it twice).
- Atomic: each append writes the old bytes, unchanged, plus the new line to a temp file, fsyncs
  it and renames it over the eval set, all under a cross-process lock. A writer killed at any
  moment (SIGKILL included) leaves the previous complete file; readers (pytest, promptfoo) never
  see a half-written line and need no lock.
- A line that is not a JSON object with an "id" is never "repaired": appends refuse with an error
  naming the file and line, so nobody loses a case to a silent rewrite.

The line encoding round-trips any JSON value exactly: non-ASCII stays readable, while the
characters some readers take for line breaks (U+2028, U+2029, U+0085) and unpaired surrogates
are written as JSON escapes, so one case is always exactly one physical line.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from agentfire._files import atomic_write, locked
from agentfire.errors import StateFileError

DEFAULT_PATH = "evals/regressions.jsonl"
# Writers queue on one lock; 16 concurrent captures must wait, not fail.
LOCK_TIMEOUT_S = 120.0
_LINE_BREAKERS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def _finite(value: Any) -> Any:
    """NaN and infinities (Python agents log them) as strings: JSON has no such numbers, and a
    bare NaN would make the line unreadable to promptfoo and other JSON readers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def encode_case(case: dict[str, Any]) -> bytes:
    """One case as one line of UTF-8 JSON (no trailing newline)."""
    try:
        text = json.dumps(case, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        case = _finite(case)
        text = json.dumps(case, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in _LINE_BREAKERS.items():
        if ch in text:  # only ever inside strings, where the escape means the same character
            text = text.replace(ch, esc)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # unpaired surrogates from the trace: keep them, as escapes
        return json.dumps(case, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class AppendResult:
    outcome: str  # "added" or "exists"
    path: Path
    line: int  # 1-based line of the case in the file
    case_id: str
    differs: list[str] = field(default_factory=list)  # fields that differ from the stored case
    stored: dict[str, Any] | None = field(default=None, repr=False)  # the case as in the file

    @property
    def added(self) -> bool:
        return self.outcome == "added"

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "path": str(self.path), "line": self.line,
                "case_id": self.case_id, "differs": self.differs}


# Fields that legitimately differ between two captures of the same failure.
_VOLATILE = {"captured_at", "actor", "incident", "metadata"}


@dataclass
class _Index:
    """What one append validated: the file's bytes then, its line count, each id's line."""

    data: bytes
    lines: int
    ids: dict[str, tuple[int, int, int]]  # id -> (line number, start offset, end offset)


class EvalSet:
    """The eval set file. Reading needs no lock; appending takes it.

    An instance remembers the bytes it last validated: the file is append-only, so the next
    append (in a long-lived process: a test suite, 16 concurrent capturers) checks that those
    bytes are still the file's prefix and parses only the lines added since. Any other change
    (a line fixed by hand) fails the prefix check and the whole file is parsed again.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._index: _Index | None = None

    def __repr__(self) -> str:
        return f"EvalSet({str(self.path)!r})"

    # --- reading ---------------------------------------------------------------------------

    def _scan(self, data: bytes, pos: int = 0, n: int = 1
              ) -> Iterator[tuple[int, int, int, dict[str, Any]]]:
        """(line number, start, end, case) for every non-blank line from offset `pos` (line
        `n`); StateFileError at the first bad one."""
        size = len(data)
        while pos < size:
            end = data.find(b"\n", pos)
            if end == -1:
                end = size
            raw = data[pos:end]
            if raw.strip():
                yield n, pos, end, self._decode(raw, n)
            pos, n = end + 1, n + 1

    def _parse(self, data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
        for n, _start, _end, case in self._scan(data):
            yield n, case

    def _indexed(self, data: bytes) -> _Index:
        """Validate `data` (only what follows the last validated prefix) and index its ids."""
        old = self._index
        if old is not None and data.startswith(old.data):
            ids, pos, n = dict(old.ids), len(old.data), old.lines + 1
        else:
            ids, pos, n = {}, 0, 1
        for line_no, start, end, case in self._scan(data, pos, n):
            ids.setdefault(case["id"], (line_no, start, end))
        lines = data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
        return _Index(data, lines, ids)

    def _decode(self, raw: bytes, n: int) -> dict[str, Any]:
        where = f"{self.path}:{n}"
        try:
            doc = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise self._corrupt(where, f"not UTF-8 (byte {exc.start + 1})") from None
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            col = f", column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise self._corrupt(where, f"not valid JSON ({msg}{col})") from None
        if not isinstance(doc, dict):
            raise self._corrupt(where, f"a JSON {type(doc).__name__}, not a case object")
        if not isinstance(doc.get("id"), str) or not doc["id"]:
            raise self._corrupt(where, "a case without a string 'id'")
        return doc

    @staticmethod
    def _corrupt(where: str, what: str) -> StateFileError:
        return StateFileError(
            f"{where}: corrupt eval-set line: {what}. The eval set is never rewritten: fix or "
            "remove that line by hand, then run again"
        )

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except IsADirectoryError:
            raise StateFileError(f"{self.path}: is a directory, not an eval-set file") from None

    def cases(self) -> list[dict[str, Any]]:
        """Every case in file order. Raises StateFileError naming the first corrupt line."""
        return [case for _n, case in self._parse(self._read_bytes())]

    def find(self, case_id: str) -> tuple[int, dict[str, Any]] | None:
        for n, case in self._parse(self._read_bytes()):
            if case["id"] == case_id:
                return n, case
        return None

    # --- appending -------------------------------------------------------------------------

    def append(self, case: dict[str, Any]) -> AppendResult:
        """Add `case` unless its id is already there. Atomic, under the lock."""
        case_id = case.get("id")
        if not isinstance(case_id, str) or not case_id:
            raise ValueError("a case needs a string id")
        line = encode_case(case)
        with locked(self.path, timeout=LOCK_TIMEOUT_S):
            self._remove_orphans()
            data = self._read_bytes()
            index = self._indexed(data)
            if case_id in index.ids:
                # remember only whole lines: a last line without its newline may still grow
                self._index = index if data.endswith(b"\n") else None
                n, start, end = index.ids[case_id]
                stored = json.loads(data[start:end].decode("utf-8"))
                differs = sorted(
                    k for k in set(stored) | set(case)
                    if k not in _VOLATILE and stored.get(k) != case.get(k)
                )
                return AppendResult("exists", self.path, n, case_id, differs, stored)
            if data and not data.endswith(b"\n"):
                data += b"\n"  # a hand-edited last line without its newline: complete it
            lines_before = data.count(b"\n")
            new = data + line + b"\n"
            atomic_write(self.path, new)
            index.ids[case_id] = (lines_before + 1, len(data), len(data) + len(line))
            self._index = _Index(new, lines_before + 1, index.ids)
            return AppendResult("added", self.path, lines_before + 1, case_id, [],
                                json.loads(line.decode("utf-8")))

    def _remove_orphans(self) -> None:
        """Temp files left by a writer killed mid-write (we hold the lock: nobody owns them)."""
        prefix = f".{self.path.name}."
        try:
            names = os.listdir(self.path.parent)
        except FileNotFoundError:
            return
        for name in names:
            if name.startswith(prefix) and name.endswith(".tmp"):
                try:
                    os.unlink(self.path.parent / name)
                except OSError:
                    pass


def evalset_for(runbook: Any) -> EvalSet:
    """The eval set that runbook.yaml names (evals.path, default evals/regressions.jsonl); for a
    drill's runbook (Runbook.for_drill) the drill eval set: gameday.evals, default
    <evals.path stem>.gameday.jsonl beside it, so drill cases never land in the real one."""
    path = runbook.resolve_path(runbook.model.evals.path)
    if getattr(runbook, "drill_scope", None):
        g = runbook.model.gameday.evals
        path = runbook.resolve_path(g) if g else path.with_name(f"{path.stem}.gameday{path.suffix or '.jsonl'}")
    return EvalSet(path)
