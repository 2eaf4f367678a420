"""Golden trajectories: known-good runs per input class, kept as files in runbook's golden.dir.

`<golden.dir>/<class>.json` = {"class", "trace_id", "saved_at", "saved_by", "source",
"trajectory": Trajectory.to_json()}. A golden run can also be named by trace id (read from the
trace store) or by a path to such a file (or to a JSON-lines file of observation rows).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentfire._files import atomic_write, locked
from agentfire.errors import StateFileError, UsageError
from agentfire.trajectory import Step, Trajectory, from_observations, iso, parse_time

CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def golden_dir(runbook: Any) -> Path:
    return runbook.resolve_path(runbook.model.golden.dir)


def check_class(name: str) -> str:
    if not CLASS_NAME.match(name or ""):
        raise UsageError(f"invalid golden class {name!r}: letters, digits, '.', '_' and '-' only (max 80)")
    return name


def save(directory: Path, traj: Trajectory, class_name: str, *, actor: str,
         replace: bool = False) -> tuple[Path, str]:
    """Write the golden file; returns (path, 'saved' | 'unchanged' | 'replaced')."""
    path = directory / f"{check_class(class_name)}.json"
    doc = {"class": class_name, "trace_id": traj.trace_id, "saved_at": iso(datetime.now(timezone.utc)),
           "saved_by": actor, "source": traj.source, "trajectory": traj.to_json()}
    with locked(path):
        outcome = "saved"
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            if old.get("trace_id") == traj.trace_id:
                return path, "unchanged"
            if not replace:
                raise UsageError(
                    f"{path} already holds trace {old.get('trace_id')!r} for class {class_name!r}; "
                    "pass --replace to overwrite it"
                )
            outcome = "replaced"
        atomic_write(path, (json.dumps(doc, ensure_ascii=False, indent=1, default=str) + "\n").encode())
    return path, outcome


def load_file(path: Path) -> Trajectory:
    """A golden file, a bare Trajectory.to_json() document, or JSON lines of observation rows."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{path}: cannot read golden trajectory: {exc}") from None
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except (ValueError, RecursionError) as exc:
                    raise StateFileError(f"{path}:{n}: not valid JSON ({_why(exc)})") from None
        tid = next((r.get("traceId") for r in rows if isinstance(r, dict) and r.get("traceId")), path.stem)
        return from_observations(str(tid), rows, source=f"golden:{path}")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise StateFileError(f"{path}: not valid JSON ({_why(exc)})") from None
    if isinstance(doc, dict) and isinstance(doc.get("trajectory"), dict):
        doc = doc["trajectory"]
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        raise StateFileError(f"{path}: not a golden trajectory (no 'steps' list)")
    try:
        return trajectory_from_json(doc, source=f"golden:{path}")
    except (TypeError, ValueError) as exc:  # a hand-edited field of the wrong type
        raise StateFileError(f"{path}: not a golden trajectory ({exc})") from None


def _why(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def trajectory_from_json(d: dict[str, Any], *, source: str = "") -> Trajectory:
    """The inverse of Trajectory.to_json()."""
    steps = []
    for n, s in enumerate(d.get("steps") or [], 1):
        if not isinstance(s, dict):
            continue
        steps.append(Step(
            index=int(s.get("index") or n), id=str(s.get("id") or n), parent_id=s.get("parent_id"),
            kind=str(s.get("kind") or "other"), name=str(s.get("name") or "(unnamed)"),
            input=s.get("input"), output=s.get("output"), start=parse_time(s.get("start")),
            end=parse_time(s.get("end")), level=str(s.get("level") or "DEFAULT"),
            status_message=s.get("status_message"), input_tokens=s.get("input_tokens"),
            output_tokens=s.get("output_tokens"), cost_usd=s.get("cost_usd"), model=s.get("model"),
            tool_call_id=s.get("tool_call_id"), plumbing=bool(s.get("plumbing")),
            not_recorded=[str(x) for x in s.get("not_recorded") or [] if isinstance(x, str)],
        ))
    return Trajectory(
        trace_id=str(d.get("trace_id") or ""), user_id=d.get("user_id"), session_id=d.get("session_id"),
        name=d.get("name"), start=parse_time(d.get("start")), end=parse_time(d.get("end")),
        status=str(d.get("status") or "finished"), cost_usd=float(d.get("cost_usd") or 0.0),
        root_input=d.get("root_input"), root_output=d.get("root_output"), model=d.get("model"),
        steps=steps, source=source or str(d.get("source") or ""),
    )


async def resolve(spec: str, runbook: Any, store: Any) -> tuple[Trajectory, str]:
    """--golden CLASS|TRACE_ID|FILE -> (trajectory, label). `store` is a TraceStore (async)."""
    p = Path(spec).expanduser()
    if p.is_file():
        return load_file(p), str(p)
    if CLASS_NAME.match(spec):
        f = golden_dir(runbook) / f"{spec}.json"
        if f.is_file():
            return load_file(f), f"class {spec} ({f})"
    from agentfire.providers.traces import TraceNotFound

    try:
        traj = await store.get_trajectory(spec)
    except TraceNotFound:
        raise UsageError(
            f"--golden {spec!r} is not a file, not a class in {golden_dir(runbook)}, "
            f"and not a trace in {store.target}"
        ) from None
    return traj, f"trace {spec}"
