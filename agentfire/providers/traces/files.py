"""The local `files` trace store (the embedded default).

JSON lines of Langfuse v2-observation-shaped rows (camelCase; `input`/`output` as raw JSON
strings), one file or a directory of `*.jsonl` files, and `*.parquet` files of the same rows
beside them (read through DuckDB, their rows as the JSON lines would hold them); the same parser
as the Langfuse provider (agentfire.trajectory.from_observations). Large-window scans (blast) use
DuckDB over the same files; this module serves single trajectories and window summaries.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from agentfire.config import FilesTraces
from agentfire.providers.traces import TraceNotFound, TraceStoreError, TrajectorySummary
from agentfire.trajectory import Trajectory, from_observations


def _duckdb(f: Path) -> Any:
    """A DuckDB connection for reading the store's Parquet files (memory capped, times in UTC)."""
    try:
        from agentfire.blast.files_scan import connect

        return connect()
    except ImportError as exc:
        raise TraceStoreError(f"reading {f} needs duckdb ({exc})") from None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class FilesTraceStore:
    kind = "files"

    def __init__(self, path: Path, prices: dict[str, Any] | None = None):
        self.path = path
        self.target = str(path)
        self.prices = dict(prices or {})  # runbook.yaml prices: for model steps without a cost

    def files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        if self.path.is_dir():
            return sorted(p for pattern in ("*.jsonl", "*.parquet") for p in self.path.rglob(pattern) if p.is_file())
        raise TraceStoreError(f"trace store {self.path} does not exist")

    def iter_rows(self, needle: str | None = None) -> Iterator[tuple[Path, int, dict[str, Any] | None, str]]:
        """(file, line number, row or None when unparsable, raw line); `needle` pre-filters (every
        caller passes a trace id or its start: in a Parquet file it is looked for in traceId)."""
        con = None  # one DuckDB connection for every Parquet file (opening one costs 50-100 ms)
        try:
            for f in self.files():
                if f.suffix == ".parquet":
                    if con is None:
                        con = _duckdb(f)
                    yield from self._parquet_rows(con, f, needle)
                    continue
                yield from self._json_rows(f, needle)
        finally:
            if con is not None:
                con.close()

    @staticmethod
    def _json_rows(f: Path, needle: str | None) -> Iterator[tuple[Path, int, dict[str, Any] | None, str]]:
        with open(f, encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if needle is not None and needle not in line:
                    continue
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError):  # corrupt, or nested past Python's limit
                    yield f, n, None, line
                    continue
                yield f, n, row if isinstance(row, dict) else None, line

    @staticmethod
    def _parquet_rows(con: Any, f: Path, needle: str | None) -> Iterator[tuple[Path, int, dict[str, Any] | None, str]]:
        """A Parquet file's rows as its JSON lines would hold them: DuckDB writes each as JSON, its
        times as ISO text in UTC (row number for line number). A file DuckDB cannot read is one
        unreadable row, as a torn line is, never the end of the others."""
        import duckdb

        from agentfire.blast.sql import lit

        try:
            src = f"read_parquet({lit(str(f))}, file_row_number=true)"
            cols = [(name, typ) for name, typ, *_ in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
                    if name != "file_row_number"]
            sel = ", ".join(
                f"{lit(name)}: " + (f"strftime(CAST({_q(name)} AS TIMESTAMPTZ), '%Y-%m-%dT%H:%M:%S.%fZ')"
                                    if typ.upper().startswith("TIMESTAMP") else _q(name))
                for name, typ in cols)
            where = ""
            params: list[Any] = []
            if needle is not None:
                if "traceId" not in {name for name, _ in cols}:
                    return
                where, params = "WHERE strpos(CAST(traceId AS VARCHAR), ?) > 0", [needle]
            if not cols:
                return
            cur = con.execute(f"SELECT file_row_number, to_json({{{sel}}})::VARCHAR FROM {src} {where}", params)
            while True:
                batch = cur.fetchmany(10_000)
                if not batch:
                    return
                for n, text in batch:
                    row = json.loads(text)
                    yield f, n + 1, row if isinstance(row, dict) else None, text
        except duckdb.Error as exc:
            yield f, 0, None, f"DuckDB could not read it: {str(exc).splitlines()[0][:200]}"

    def rows_for(self, trace_id: str) -> tuple[list[dict[str, Any]], list[str]]:
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        for f, n, row, line in self.iter_rows(needle=trace_id):
            if row is None:
                problems.append(f"{f.name}: {line}; skipped" if f.suffix == ".parquet"
                                else f"{f.name}:{n}: unreadable line (not JSON); skipped")
            elif row.get("traceId") == trace_id:
                rows.append(row)
        return rows, problems

    def get_trajectory_sync(self, trace_id: str) -> Trajectory:
        rows, problems = self.rows_for(trace_id)
        if not rows:
            raise TraceNotFound(f"trace {trace_id!r} not found in the files store {self.path}")
        traj = from_observations(trace_id, rows, as_of=self.as_of(), source=f"files:{self.path}",
                                 prices=self.prices)
        traj.problems[:0] = problems
        return traj

    def as_of(self) -> datetime:
        """Freshness: the newest write to the store (a local store is as fresh as its files)."""
        try:
            newest = max(f.stat().st_mtime for f in self.files())
        except ValueError:
            return datetime.now(timezone.utc)
        return datetime.fromtimestamp(newest, tz=timezone.utc)

    def list_trajectories_sync(self, start: datetime, end: datetime) -> list[TrajectorySummary]:
        by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for _f, _n, row, _line in self.iter_rows():
            if row is not None and row.get("traceId"):
                by_trace[row["traceId"]].append(row)
        out = []
        as_of = self.as_of()
        for tid, rows in by_trace.items():
            t = from_observations(tid, rows, as_of=as_of, prices=self.prices)
            if t.start is not None and start <= t.start < end:
                out.append(TrajectorySummary(tid, t.user_id, t.start, t.status, t.cost_usd, t.cost_known))
        out.sort(key=lambda s: (s.start, s.trace_id))
        return out

    def window_costs(self, start: datetime, end: datetime) -> list[Any]:
        """Trajectories that started in [start, end): trace id, start, status, cost (as in
        list_trajectories), from one DuckDB aggregate over the store's JSON lines and Parquet."""
        from agentfire.blast.costs import window_costs

        return self._aggregate(window_costs, start, end)

    def cost_summary(self, start: datetime, end: datetime) -> Any:
        """The same aggregate reduced for freeze: sorted costs, the running ones, the unpriced count."""
        from agentfire.blast.costs import cost_summary

        return self._aggregate(cost_summary, start, end)

    def _aggregate(self, fn: Any, start: datetime, end: datetime) -> Any:
        from agentfire.blast.files_scan import store_files
        from agentfire.errors import NotDoneError

        try:
            files = store_files(self.path)
        except NotDoneError as exc:
            raise TraceStoreError(str(exc)) from None
        try:
            import duckdb
        except ImportError as exc:
            raise TraceStoreError(f"the files store's cost aggregate needs duckdb ({exc})") from None
        try:
            return fn(files, start, end, self.prices)
        except duckdb.Error as exc:
            raise TraceStoreError(f"DuckDB could not read the files store {self.path}: {exc}") from None

    async def get_trajectory(self, trace_id: str) -> Trajectory:
        return await asyncio.to_thread(self.get_trajectory_sync, trace_id)

    async def list_trajectories(self, start: datetime, end: datetime) -> list[TrajectorySummary]:
        return await asyncio.to_thread(self.list_trajectories_sync, start, end)

    async def probe(self) -> str:
        files = await asyncio.to_thread(self.files)
        return f"{self.path}: {len(files)} file(s)"

    async def aclose(self) -> None:
        return None


def from_config(section: FilesTraces, runbook: Any) -> FilesTraceStore:
    path = runbook.resolve_path(section.path)
    if section.seed_scenario and not _has_data(path):
        # the embedded sandbox: a fresh clone gets a seeded incident on first use
        from agentfire.sandbox import seed_store

        seed_store(path, scenario=section.seed_scenario)
    return FilesTraceStore(path, getattr(getattr(runbook, "model", None), "prices", None))


def _has_data(path: Path) -> bool:
    """Anything the store's readers would scan (JSON lines or Parquet, empty or not): a store
    holding it is never seeded."""
    if path.is_file():
        return True
    return path.is_dir() and any(p.is_file() for pattern in ("*.jsonl", "*.parquet") for p in path.rglob(pattern))
