"""Blast over the local files store with DuckDB: one pass over the JSON lines (and any Parquet
files of the same rows beside them), the signature pushed into SQL, Python only for the hit
trajectories' marks.

Measured (bench/blast_bench.py): 10 million observations (3.3 GB of JSON lines) in about 7 s and
about 350 MB on two cores. DuckDB's own memory is capped (memory_limit()) and spills to a temp dir.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from agentfire.blast.result import BlastResult, Gap, Hit, ScanStats
from agentfire.blast.signature import Signature
from agentfire.blast.sql import FILES_COLUMNS, files_source, lit, parquet_source, scan_query, union_source
from agentfire.blast.window import Window
from agentfire.errors import NotDoneError

MEMORY_ENV = "AGENTFIRE_DUCKDB_MEMORY"
MEMORY_FRACTION = 0.10  # of the machine's (or the container's) memory, when the env does not say
MEMORY_FLOOR = 256 << 20
ProgressHook = Callable[[dict[str, Any]], None]


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the physical memory, or the cgroup's limit if lower."""
    total: int | None = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(f).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) > 0:
            total = min(total, int(raw)) if total else int(raw)
    return total


def memory_limit() -> str:
    """DuckDB's memory limit: $AGENTFIRE_DUCKDB_MEMORY (like 700MB or 2GB) when set, else a tenth
    of the machine's memory (at least 256 MB): a shared on-call box keeps the rest."""
    env = os.environ.get(MEMORY_ENV, "").strip()
    if env:
        return env
    total = machine_memory()
    if not total:
        return "1GB"
    return f"{max(MEMORY_FLOOR, int(total * MEMORY_FRACTION)) >> 20}MB"


def connect(limit: str | None = None, threads: int | None = None) -> Any:
    """A DuckDB connection for a scan of the files store: memory capped, spilling to a temp dir."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{limit or memory_limit()}'")
    con.execute("SET preserve_insertion_order=false")
    con.execute(f"SET temp_directory='{tempfile.gettempdir()}/agentfire-duckdb'")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    return con


def source(con: Any, files: list[Path], sig: Signature | None = None,
           types: dict[str, str] | None = None) -> str:
    """The store's JSON lines and Parquet files as one relation (the columns `sig` or `types` name)."""
    jsonl = [str(f) for f in files if f.suffix != ".parquet"]
    parquet = [str(f) for f in files if f.suffix == ".parquet"]
    parts = [files_source(jsonl, sig, types)] if jsonl else []
    if parquet:
        listed = "[" + ", ".join(lit(p) for p in parquet) + "]"
        present = {row[0]: row[1] for row in con.execute(
            f"DESCRIBE SELECT * FROM read_parquet({listed}, union_by_name=true)").fetchall()}
        parts.append(parquet_source(parquet, present, sig, types))
    return union_source(parts)


def store_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for pattern in ("*.jsonl", "*.parquet") for p in path.rglob(pattern)
                      if p.is_file() and p.stat().st_size > 0)
    raise NotDoneError(f"trace store {path} does not exist")


def _ms(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def resolve_hit(sig: Signature, row: dict[str, Any]) -> Hit | None:
    """From one trajectory's aggregate row: the first embedding of the sequence, the step index
    of its last step, the status (the same rules as agentfire.trajectory.from_observations)."""
    n = len(sig.steps)
    want, hit = 0, None
    for mark in row["marks"] or []:
        if mark["mask"] & (1 << want):
            want += 1
            if want == n:
                hit = mark
                break
    if hit is None:
        return None
    if row["roots"] == 0 or row["root_open"]:
        status = "running"
    elif (row["root_level"] or "").upper() == "ERROR":
        status = "error"
    else:
        status = "finished"
    times = [t for t in (row["step_times"] or []) if t is not None]
    index = sum(1 for t in times if t < hit["t"]) + 1 if hit["t"] is not None else None
    args: Any = hit["input"]
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (json.JSONDecodeError, RecursionError):
            pass
    return Hit(trace_id=row["trace_id"], user_id=row["user_id"], start=_ms(row["start_ms"]),
               status=status, step_index=index, tool=hit["name"], args=args, hit_at=_ms(hit["t"]))


def scan(path: Path, sig: Signature, window: Window, *, hook: ProgressHook | None = None) -> BlastResult:
    import duckdb

    started = time.monotonic()
    stats = ScanStats(engine=f"duckdb {duckdb.__version__}")
    result = BlastResult(signature=sig, window=window, store=f"files:{path}", hits=[], stats=stats,
                         as_of=datetime.now(timezone.utc))
    try:
        files = store_files(path)
    except NotDoneError as exc:
        result.gaps.append(Gap(window.start, window.end, str(exc)))
        return result
    if not files:
        result.warnings.append(f"the files store {path} holds no *.jsonl or *.parquet files: nothing to scan")
        return result
    con = connect()
    try:
        query = scan_query(sig, source(con, files, sig), FILES_COLUMNS, window.start, window.end)
        try:
            rows = _run(con, query, hook)
        except duckdb.InvalidInputException as exc:
            if "JSON" not in str(exc) and "json" not in str(exc):
                raise
            # a torn or corrupt line: scan the rest, say so loudly (never silently partial)
            result.warnings.append(
                "some lines in the store are not valid JSON and were skipped "
                f"(first error: {str(exc).splitlines()[0][:200]})")
            rows = _run(con, query.replace("ignore_errors=false", "ignore_errors=true"), hook)
    except duckdb.Error as exc:
        result.gaps.append(Gap(window.start, window.end, f"DuckDB could not scan {path}: {exc}"))
        stats.seconds = time.monotonic() - started
        return result
    finally:
        con.close()
    stats.candidates = len(rows)
    for row in rows:
        hit = resolve_hit(sig, row)
        if hit is not None:
            result.hits.append(hit)
    result.hits.sort(key=lambda h: (h.hit_at or window.start, h.trace_id))
    stats.pages = len(files)
    stats.seconds = time.monotonic() - started
    if hook:
        hook({"fraction": 1.0, "hits": len(result.hits), "covered_to": window.end})
    return result


def _run(con: Any, query: str, hook: ProgressHook | None) -> list[dict[str, Any]]:
    done = threading.Event()

    def poll() -> None:  # DuckDB reports its own progress; show it
        while not done.wait(0.2):
            try:
                pct = con.query_progress()
            except Exception:
                return
            if hook and pct is not None and pct >= 0:
                hook({"fraction": min(pct / 100.0, 0.99)})

    watcher = threading.Thread(target=poll, daemon=True) if hook else None
    if watcher:
        watcher.start()
    try:
        cur = con.execute(query)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]
    finally:
        done.set()
        if watcher:
            watcher.join(timeout=1)
