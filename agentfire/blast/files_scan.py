"""Blast over the local files store with DuckDB, over the JSON lines (and any Parquet files of
the same rows beside them), the signature pushed into SQL, memory following the hits, not the
store: the rows matching a step are filtered before they are grouped (the hits), then only the
hit trajectories' rows are read for their status and step index. For one step over JSON lines
both run as one statement (the hits a materialized CTE whose join is pass two's filter: DuckDB
pushes the hit ids into the scan). Over a Parquet store written in time order and wholly inside
the window, one step's matching rows (a sequence's last step's) are located by file and row (no
time or parent decoded in pass one) and the hits picked in pass two. A sequence reads the
trajectories whose last step matched,
then their rows once for their marks, first embedding and status together (past
LEAN_SEQUENCE_CANDIDATES, lean marks, then the hits' status apart).
The hits stay in DuckDB (HitRows):
the summary (distinct users, still-open ids, first and last hit) is computed there and the hits
stream out as JSON text, so a non-selective blast (500,000 hits) builds no Python object per hit.

Measured: bench/blast_bench.py (figures in the README). DuckDB's own memory is capped
(memory_limit()) and spills to a temp dir.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from agentfire.blast.result import BlastResult, Gap, Hit, HitsSummary, ScanStats, _parsed_args
from agentfire.blast.signature import Signature, StepPattern
from agentfire.blast.sql import (
    BIG_OBJECT, FILES_COLUMNS, MAX_OBJECT, ROW_KEY_BITS, STATUS_TYPES, Dialect, candidates_query, files_source,
    hits_query, last_step_query, lit, located_status_query, parquet_source, sequence_marks_query, sequence_query,
    status_query, trace_conds, union_source,
)
from agentfire.blast.window import Window
from agentfire.errors import NotDoneError

MEMORY_ENV = "AGENTFIRE_DUCKDB_MEMORY"
MEMORY_FRACTION = 0.10  # of the machine's (or the container's) memory, when the env does not say
MEMORY_FLOOR = 256 << 20
# DuckDB fills its buffer pool up to the limit (a non-selective 10M-row scan reached 2.2 GB under
# a 2.4 GB limit, and completed in 1 GB under 768 MB, spilling): an on-call tool on a shared box
# stays under a gigabyte unless the env says otherwise
MEMORY_CEILING = 768 << 20
ProgressHook = Callable[[dict[str, Any]], None]
# A Parquet store's status pass reads from this long before the first hit (agent runs take
# seconds to minutes; a trajectory that started earlier is read again over the whole store)
STATUS_LOOKBACK_MS = 15 * 60_000
# A step may start this much before its root (clocks of different processes): a root closer than
# this to the read's start may have steps before it, so its trajectory is read again
ROOT_SKEW_MS = 60_000


MAX_SPANS = 16  # time ranges pass two tests each row against, at most
# A sequence whose last step matched in more trajectories than this reads their marks lean and
# their status apart (two reads, not one): every candidate's inputs and step times in one
# aggregate ran out of memory under the default limit (500,000 candidates of 20 rows)
LEAN_SEQUENCE_CANDIDATES = 50_000
# A one-step signature over a Parquet store inside the window locates its candidate rows without
# reading their times, up to this many (more: pass one reads their times after all, as the join
# by row and each hit trajectory's list of step times grow with them)
MAX_LOCATED = 20_000
# ... and up to this many bytes of their inputs (pass two joins them all; big tool inputs, 60 KB
# a call, on a tool called again and again would fill the memory limit where the hits alone fit)
MAX_LOCATED_BYTES = 64 << 20


class StatusBound(NamedTuple):
    spans: list[tuple[datetime, datetime]]  # what pass two read, start inclusive, end exclusive
    reread: int  # hit trajectories read again over the whole store


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
    of the machine's memory, at least 256 MB and at most 768 MB: a shared on-call box keeps the rest."""
    env = os.environ.get(MEMORY_ENV, "").strip()
    if env:
        return env
    total = machine_memory()
    if not total:
        return "1GB"
    return f"{min(MEMORY_CEILING, max(MEMORY_FLOOR, int(total * MEMORY_FRACTION))) >> 20}MB"


def connect(limit: str | None = None, threads: int | None = None) -> Any:
    """A DuckDB connection for a scan of the files store: memory capped, spilling to a temp dir."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{limit or memory_limit()}'")
    con.execute("SET preserve_insertion_order=false")
    # times without an offset are UTC, as agentfire.trajectory.parse_time reads them (DuckDB's
    # default is the machine's zone: on a laptop in New York they read five hours late)
    con.execute("SET TimeZone='UTC'")
    # every join here is the store (probe) against the hits (build), as written: DuckDB guesses a
    # JSON scan at ~42 rows and flipped the sides, building a hash table of the whole store (the
    # status pass of a sequence took 7.4 s and 800 MB instead of 3.4 s)
    con.execute("SET disabled_optimizers='build_side_probe_side'")
    con.execute(f"SET temp_directory='{tempfile.gettempdir()}/agentfire-duckdb'")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    return con


def source(con: Any, files: list[Path], sig: Signature | None = None,
           types: dict[str, str] | None = None, present: dict[str, str] | None = None,
           row_key: bool = False) -> str:
    """The store's JSON lines and Parquet files as one relation (the columns `sig` or `types` name;
    `present`: the Parquet files' columns and types, when parquet_columns() read them before;
    `row_key`: an all-Parquet store's rows carry sql.ROW_KEY as agentfire_k)."""
    jsonl = [str(f) for f in files if f.suffix != ".parquet"]
    parquet = [str(f) for f in files if f.suffix == ".parquet"]
    assert not (row_key and jsonl), "rows are located by row in Parquet only"
    parts = [files_source(jsonl, sig, types)] if jsonl else []
    if parquet:
        parts.append(parquet_source(parquet, present if present is not None else parquet_columns(con, files), sig,
                                    types, row_key))
    return union_source(parts)


def parquet_columns(con: Any, files: list[Path]) -> dict[str, str]:
    """The columns of the store's Parquet files (all of them, by name) and their types."""
    parquet = [str(f) for f in files if f.suffix == ".parquet"]
    if not parquet:
        return {}
    listed = "[" + ", ".join(lit(p) for p in parquet) + "]"
    return {row[0]: row[1] for row in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({listed}, union_by_name=true)").fetchall()}


def holds_data(path: Path) -> bool:
    """What agentfire.providers.traces.files counts as data (a store holding any is never
    seeded): a file, or a directory with a JSON-lines or Parquet file, empty or not."""
    if path.is_file():
        return True
    return path.is_dir() and any(p.is_file() for pattern in ("*.jsonl", "*.parquet") for p in path.rglob(pattern))


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


_UNPARSED = object()


class _ScannedHit(Hit):
    """A Hit whose arguments stay JSON text until they are read (a non-selective blast holds
    hundreds of thousands of hits; the table shows twenty)."""

    __slots__ = ("_text", "_parsed")

    def __init__(self, trace_id: str, user_id: str | None, start: datetime | None, status: str,
                 step_index: int | None, tool: str | None, text: Any, hit_at: datetime | None) -> None:
        # the fields set directly: the dataclass __init__ with keywords costs twice as much
        self.trace_id, self.user_id, self.start, self.status = trace_id, user_id, start, status
        self.step_index, self.tool, self.hit_at = step_index, tool, hit_at
        self._text, self._parsed = text, _UNPARSED

    @property  # type: ignore[override]
    def args(self) -> Any:
        if self._parsed is _UNPARSED:
            self._parsed = _parsed_args(self._text)
        return self._parsed

    @args.setter
    def args(self, value: Any) -> None:
        self._parsed = value


FETCH = 20_000  # result rows per fetch: results stream, never one list of every row


def _stream(cur: Any) -> Any:
    while True:
        batch = cur.fetchmany(FETCH)
        if not batch:
            return
        yield from batch


def _iso_sql(ms: str) -> str:
    """agentfire.trajectory.iso of epoch milliseconds, in DuckDB."""
    return f"strftime(epoch_ms({ms}), '%Y-%m-%dT%H:%M:%S.%gZ')"


RESULT_TABLE = "agentfire_result"
# Hit.to_json as DuckDB writes it: args parsed when they are JSON text, else the text
HIT_JSON = ("to_json({'trace_id': trace_id, 'user_id': user_id, 'start': " + _iso_sql("start_ms")
            + ", 'status': status, 'still_open': status = 'running', 'step_index': step_index, 'tool': tool, "
            "'args': CASE WHEN json_valid(input) THEN json(input) ELSE to_json(input) END, "
            "'hit_at': " + _iso_sql("hit_t") + "})::VARCHAR")
HIT_COLUMNS = "trace_id, user_id, start_ms, status, step_index, hit_t, tool, input"


class HitRows(Sequence[Hit]):
    """The hits of one scan, kept in DuckDB in hit order (hit time, then trace id): the summary
    (distinct users, the still-open ids, first and last hit) is computed there, the hits stream
    out in batches (as JSON text for --json and --out, as Hit objects for what reads them), and a
    Python object is built only for a hit something reads (the table shows twenty)."""

    def __init__(self, con: Any, n: int, order: str) -> None:
        self._con, self._n, self._order = con, n, order
        users, still_open, first, last = con.execute(
            "SELECT list(DISTINCT user_id ORDER BY user_id) FILTER (WHERE user_id IS NOT NULL AND user_id <> ''), "
            f"list(trace_id ORDER BY {order}) FILTER (WHERE status = 'running'), min(hit_t), max(hit_t) "
            f"FROM {RESULT_TABLE}").fetchone()
        self.summary = HitsSummary(users or [], still_open or [], _ms(first), _ms(last))

    def __len__(self) -> int:
        return self._n

    def _rows(self, select: str, limit: int | None = None, offset: int = 0) -> Iterator[tuple[Any, ...]]:
        import duckdb

        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        try:
            yield from _stream(self._con.cursor().execute(
                f"SELECT {select} FROM {RESULT_TABLE} ORDER BY {self._order}{page}"))
        except duckdb.Error as exc:
            # the hits are kept in DuckDB's memory: very large tool inputs of many hits can fill
            # its limit after the scan completed (a named failure, not a traceback)
            raise NotDoneError(f"the {self._n} hits were found but could not be read back from DuckDB "
                               f"({str(exc).splitlines()[0][:200]}); raise {MEMORY_ENV}") from None

    @staticmethod
    def _hit(row: tuple[Any, ...]) -> Hit:
        trace_id, user_id, start_ms, status, step_index, hit_t, tool, inp = row
        return _ScannedHit(trace_id, user_id, _ms(start_ms), status, step_index, tool, inp, _ms(hit_t))

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            start, stop, step = i.indices(self._n)
            if step != 1:
                return list(self)[i]
            return [self._hit(r) for r in self._rows(HIT_COLUMNS, max(0, stop - start), start)]
        k = i + self._n if i < 0 else i
        if not 0 <= k < self._n:
            raise IndexError(i)
        return next(self._hit(r) for r in self._rows(HIT_COLUMNS, 1, k))

    def __iter__(self) -> Iterator[Hit]:
        return (self._hit(r) for r in self._rows(HIT_COLUMNS))

    def csv_rows(self) -> Iterator[tuple[Any, ...]]:
        """result.CSV_COLUMNS, times formatted as iso() does and args as stored (JSON text)."""
        return self._rows(f"trace_id, user_id, {_iso_sql('start_ms')}, status, status = 'running', step_index, "
                          f"tool, input, {_iso_sql('hit_t')}")

    def json_lines(self) -> Iterator[str]:
        return (text for (text,) in self._rows(HIT_JSON))


class _Scan:
    """The two passes on one connection (hits, then the hit trajectories' status)."""

    def __init__(self, con: Any, files: list[Path], sig: Signature, window: Window,
                 hook: ProgressHook | None, ignore_errors: bool, big_lines: bool, lean: bool = False):
        self.con, self.files, self.sig, self.window, self.hook = con, files, sig, window, hook
        self.ignore_errors, self.big_lines = ignore_errors, big_lines
        self.lean = lean  # a sequence's marks without inputs, its hits' status read apart
        self.stats_bound: StatusBound | None = None
        self.located = False  # pass one found the matching rows by file and row
        # only Parquet has row groups with min/max times, and rows one can point at
        self.all_parquet = all(f.suffix == ".parquet" for f in files)
        self._present: dict[str, str] | None = None
        self._carries_versions: bool | None = None

    def _src(self, **kw: Any) -> str:
        if self._present is None:  # the Parquet footers read once for both passes
            self._present = parquet_columns(self.con, self.files)
        src = source(self.con, self.files, present=self._present, **kw)
        if self.ignore_errors:
            src = src.replace("ignore_errors=false", "ignore_errors=true")
        if self.big_lines:
            src = src.replace(f"maximum_object_size={MAX_OBJECT}", f"maximum_object_size={BIG_OBJECT}")
        return src

    def run(self) -> tuple[Sequence[Hit], int]:
        sig, w, con = self.sig, self.window, self.con
        status_src = self._src(types=STATUS_TYPES)
        # Parquet's row groups carry min/max times: pass two reads only the time its hit
        # trajectories can span (JSON lines have no statistics: a bound would not skip a byte)
        bounded = self.all_parquet
        # a table of the in-memory database (not TEMP): the hits stream out through cursors
        create = f"CREATE OR REPLACE TABLE {RESULT_TABLE} AS "
        if len(sig.steps) == 1 and not bounded:
            # one statement: the hits (a materialized CTE), then their trajectories' status; the
            # join with the hits is the only filter pass two needs: DuckDB pushes the hit ids into
            # the scan itself (Parquet row groups whose bloom filters and min/max rule them out are
            # skipped), a literal IN list as well only added a second probe
            query = hits_query(sig, self._src(sig=sig), FILES_COLUMNS, w.start, w.end)
            _execute(con, create + status_query(status_src, FILES_COLUMNS, "agentfire_hits", hits=query,
                                             distinct_ids=self._versions()),
                     self.hook, 0.0, 1.0)
        elif len(sig.steps) == 1 and not self._located_hits(create):
            query = hits_query(sig, self._src(sig=sig), FILES_COLUMNS, w.start, w.end)
            _execute(con, f"CREATE OR REPLACE TEMP TABLE agentfire_hits AS {query}", self.hook, 0.0, 0.5)
            self.stats_bound = self._bounded_status(
                status_src, create, "agentfire_hits", f"SELECT hit_t - {STATUS_LOOKBACK_MS} AS s, hit_t + 1 AS e "
                "FROM agentfire_hits", lambda src, hits: status_query(src, FILES_COLUMNS, hits,
                                                                         distinct_ids=self._versions()))
        elif len(sig.steps) > 1 and not self._sequence_hits(create):
            return [], 0
        (n,) = con.execute(f"SELECT count(*) FROM {RESULT_TABLE}").fetchone()
        if not n:
            return [], 0
        start_ms = int(w.start.timestamp() * 1000)
        return HitRows(con, n, f"coalesce(hit_t, {start_ms}), trace_id"), n

    def _located_hits(self, create: str) -> bool:
        """A one-step signature over a Parquet store written in time order whose every row
        started inside the window (its row groups' statistics say so: an incident's own export,
        a store younger than --since): pass one locates the matching rows by row and reads no
        time (sql.candidates_query), pass two picks the hits and reads their status, bounded by
        the times of the row groups holding them. False (the hits still to be found) when the
        store or the signature does not qualify, or past _located_candidates' limits."""
        sig, c = self.sig, FILES_COLUMNS
        # the trajectory conditions are tested in pass one only (hits_query's HAVING)
        if self._versions() or trace_conds(Dialect(), c, sig) or not self._located_candidates(sig.steps[0]):
            return False
        rows = (1 << ROW_KEY_BITS) - 1
        # each candidate's row group's times (pass two reads its lookback, as for a hit's time)
        intervals = (f"SELECT epoch_ms(g.t_min) - {STATUS_LOOKBACK_MS} AS s, epoch_ms(g.t_max) + 1 AS e "
                     f"FROM (SELECT DISTINCT row_key >> {ROW_KEY_BITS} AS file_index, row_key & {rows} AS row_number "
                     "FROM agentfire_cands) AS k JOIN agentfire_row_groups AS g ON g.file_index = k.file_index "
                     "AND k.row_number >= g.first_row AND k.row_number < g.end_row")
        self.stats_bound = self._bounded_status(
            self._src(types=STATUS_TYPES, row_key=True), create, "agentfire_cands", intervals,
            lambda src, cands: located_status_query(src, c, cands))
        return True

    def _located_candidates(self, step: StepPattern) -> bool:
        """Over an all-Parquet store in time order wholly inside the window (_row_groups_fit):
        the rows matching `step` (bar the root and the window) located by row into
        agentfire_cands, with no time or parent decoded. False (the times are to be read)
        otherwise, or past MAX_LOCATED candidates or MAX_LOCATED_BYTES of their inputs."""
        assert self._present is not None
        timestamps = self._present.get("startTime", "").upper().startswith("TIMESTAMP")
        if not self.all_parquet or not timestamps or not self._row_groups_fit():
            return False
        _execute(self.con, "CREATE OR REPLACE TEMP TABLE agentfire_cands AS "
                 + candidates_query(step, self._src(sig=self.sig, row_key=True), FILES_COLUMNS, MAX_LOCATED + 1),
                 self.hook, 0.0, 0.3)
        (n, size) = self.con.execute(
            "SELECT count(*), coalesce(sum(strlen(cand_input)), 0) FROM agentfire_cands").fetchone()
        self.located = n <= MAX_LOCATED and size <= MAX_LOCATED_BYTES
        return self.located

    def _row_groups_fit(self) -> bool:
        """Whether the statistics of every row group of the store's Parquet files put its start
        times inside the window, each row group within a STATUS_LOOKBACK (a store written in
        time order: a row group's times then bound its hits' as closely as their own would; a
        row group without statistics: no). Kept as agentfire_row_groups (file_index, first_row,
        end_row, t_min, t_max): the footers only, no data page."""
        d, w = Dialect(), self.window
        paths = [str(f) for f in self.files]
        listed = ", ".join(f"({i}, {lit(p)})" for i, p in enumerate(paths))
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE agentfire_row_groups AS
            SELECT f.i AS file_index, sum(row_group_num_rows) OVER g - row_group_num_rows AS first_row,
              sum(row_group_num_rows) OVER g AS end_row,
              TRY_CAST(stats_min_value AS TIMESTAMPTZ) AS t_min, TRY_CAST(stats_max_value AS TIMESTAMPTZ) AS t_max
            FROM parquet_metadata([{", ".join(lit(p) for p in paths)}]) AS m
              LEFT JOIN (VALUES {listed}) AS f(i, path) ON f.path = m.file_name
            WHERE m.path_in_schema = 'startTime'
            WINDOW g AS (PARTITION BY f.i ORDER BY m.row_group_id)""")
        # a row group of a file not named as it was listed would place no candidate: not located
        (groups, fit) = self.con.execute(
            f"SELECT count(*), bool_and(coalesce(file_index IS NOT NULL AND t_min >= {d.ts(w.start)} "
            f"AND t_max < {d.ts(w.end)} AND epoch_ms(t_max) - epoch_ms(t_min) <= {STATUS_LOOKBACK_MS}, false)) "
            "FROM agentfire_row_groups").fetchone()
        return bool(groups and fit)

    def _versions(self) -> bool:
        """Whether the store's rows carry updatedAt (a store appending each version of an
        observation): the Parquet files' columns, the head of each JSON-lines file."""
        if self._carries_versions is None:
            from agentfire.blast.costs import carries_versions

            if self._present is None:
                self._present = parquet_columns(self.con, self.files)
            self._carries_versions = "updatedAt" in self._present or carries_versions(
                self.con, [f for f in self.files if f.suffix != ".parquet"])
        return bool(self._carries_versions)

    def _sequence_hits(self, create: str) -> bool:
        """A sequence: the trajectories whose last step matched in the window first (a selective
        read), then one read of those only for their marks, first embedding (the hit) and status
        (an earlier step is often a tool every trajectory calls: grouping its marks store-wide
        cost 10 s at 10M rows for no hit; reading the hits' status apart cost a third read of
        the store). The hits go to RESULT_TABLE. False when there is none."""
        sig, w, con = self.sig, self.window, self.con
        src = self._src(sig=sig)
        # (not when lean: the one read that ran out of memory is this one)
        cands = not self.lean and self._located_candidates(sig.steps[-1])
        if cands:  # the last step's rows located by row: no time, parent or input read for them
            src = self._src(sig=sig, row_key=True)
            con.execute("CREATE OR REPLACE TEMP TABLE agentfire_last AS SELECT DISTINCT trace_id FROM agentfire_cands")
        else:
            _execute(con, "CREATE OR REPLACE TEMP TABLE agentfire_last AS "
                     + last_step_query(sig, src, FILES_COLUMNS, w.start, w.end), self.hook, 0.0, 0.3)
        (candidates,) = con.execute("SELECT count(*) FROM agentfire_last").fetchone()
        if not candidates:
            return False
        distinct = self._versions()
        if cands:
            query = sequence_query(sig, src, FILES_COLUMNS, w.start, w.end, "agentfire_last", distinct_ids=distinct,
                                   cands="agentfire_cands")
        elif self.lean or candidates > LEAN_SEQUENCE_CANDIDATES:
            # many candidates (a loop's signature on a busy store): their marks lean, then the
            # hits' status and rows in another read, so memory holds a few numbers per candidate
            _execute(con, "CREATE OR REPLACE TEMP TABLE agentfire_hits AS "
                     + sequence_marks_query(sig, src, FILES_COLUMNS, w.start, w.end, "agentfire_last"),
                     self.hook, 0.3, 0.35)
            (hits,) = con.execute("SELECT count(*) FROM agentfire_hits").fetchone()
            if not hits:
                return False
            query = status_query(src, FILES_COLUMNS, "agentfire_hits", distinct_ids=distinct, hit_rows=True)
        else:
            query = sequence_query(sig, src, FILES_COLUMNS, w.start, w.end, "agentfire_last", distinct_ids=distinct)
        _execute(con, create + query, self.hook, 0.65, 0.35)
        return True

    def _bounded_status(self, status_src: str, create: str, hits: str, intervals: str,
                        status: Callable[[str, str], str]) -> StatusBound | None:
        """Pass two over the rows that started in the STATUS_LOOKBACK before some hit, not the
        whole store: a trajectory's root starts before its steps and its hit, and nothing after
        the hit changes its status inputs (the root's later versions share its start; user,
        start and step index come from rows before it). A trajectory whose earliest root is not
        at least ROOT_SKEW inside its hit's lookback (it started earlier, or has no root yet) is
        read again over the whole store, so the answer is the unbounded one.
        Parquet skips the row groups whose times fall outside (an incident window over a month's
        store reads about the window; twenty hits in a week read twenty spans), where the hit
        ids alone rule out no row group (trace ids are random).
        `hits`: pass one's table; `intervals`: a query of the (s, e) each hit needs read, in
        epoch ms (s NULL: a hit without a time); `status(source, hits table)`: pass two's query."""
        con, look = self.con, STATUS_LOOKBACK_MS
        c = FILES_COLUMNS
        # each hit's lookback, up to its millisecond, whole (a root that started in it,
        # microseconds after the hit, is still the trajectory's root); spans closer than a
        # lookback merged (reading the gap costs less than another range to test)
        rows = con.execute(f"""
            SELECT min(s), max(e), bool_or(s IS NULL) FROM (
              SELECT s, e, sum(CASE WHEN s > prev_e + {look} THEN 1 ELSE 0 END) OVER (ORDER BY s) AS grp FROM (
                SELECT s, e, max(e) OVER (ORDER BY s ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_e
                FROM ({intervals})))
            GROUP BY grp ORDER BY 1""").fetchall()
        if not rows or any(no_time for _s, _e, no_time in rows):  # a hit without a time: nothing to bound by
            _execute(con, create + status(status_src, hits), self.hook, 0.5, 0.5)
            return None
        spans = _fewest_spans([(s, e) for s, e, _ in rows], MAX_SPANS)
        d = Dialect()
        within = " OR ".join(f"({c.start} >= {d.ts(_ms(s))} AND {c.start} < {d.ts(_ms(e))})"  # type: ignore[arg-type]
                             for s, e in spans)
        src = f"(SELECT * FROM {status_src} WHERE {within} OR {c.start} IS NULL)"
        _execute(con, create + status(src, hits), self.hook, 0.5, 0.4)
        con.execute(f"CREATE OR REPLACE TEMP TABLE agentfire_reread AS SELECT h.* FROM {hits} AS h "
                    f"JOIN {RESULT_TABLE} AS r ON r.trace_id = h.trace_id "
                    f"WHERE r.root_start_ms IS NULL OR r.root_start_ms < r.hit_t - {look - ROOT_SKEW_MS}")
        (reread,) = con.execute("SELECT count(DISTINCT trace_id) FROM agentfire_reread").fetchone()
        if reread:
            con.execute(f"DELETE FROM {RESULT_TABLE} WHERE trace_id IN (SELECT trace_id FROM agentfire_reread)")
            _execute(con, f"INSERT INTO {RESULT_TABLE} BY NAME " + status(status_src, "agentfire_reread"),
                     self.hook, 0.9, 0.1)
        return StatusBound([(_ms(s), _ms(e)) for s, e in spans], int(reread))  # type: ignore[misc]


def _fewest_spans(spans: list[tuple[int, int]], most: int) -> list[tuple[int, int]]:
    """At most `most` spans covering these (sorted, disjoint): the smallest gaps are closed."""
    if len(spans) <= most:
        return spans
    gaps = sorted(range(1, len(spans)), key=lambda i: spans[i][0] - spans[i - 1][1])
    cut = sorted(gaps[len(gaps) - (most - 1):])  # the widest gaps stay open
    out, begin = [], 0
    for i in cut + [len(spans)]:
        out.append((spans[begin][0], spans[i - 1][1]))
        begin = i
    return out


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
    limit, threads, ignore_errors, big_lines, lean = memory_limit(), None, False, False, False
    hits: Sequence[Hit] = []
    while True:
        con = connect(limit, threads)
        try:
            run = _Scan(con, files, sig, window, hook, ignore_errors, big_lines, lean)
            hits, stats.candidates = run.run()
            if run.stats_bound is not None:
                stats.status_spans, stats.reread = run.stats_bound
            stats.located_by_row = run.located
            break
        except duckdb.InvalidInputException as exc:
            text = str(exc).lower()
            if ("maximum_object_size" in text or "maximum object size" in text) and not big_lines:
                # a line longer than the reader's buffer: read again with room for it, one thread
                big_lines, threads = True, 1
                continue
            if "json" not in text or ignore_errors:
                result.gaps.append(Gap(window.start, window.end, f"DuckDB could not scan {path}: {exc}"))
                break
            # a torn or corrupt line: scan the rest, say so loudly (never silently partial)
            ignore_errors = True
            result.warnings.append(
                "some lines in the store are not valid JSON and were skipped "
                f"(first error: {str(exc).splitlines()[0][:200]})")
        except duckdb.OutOfMemoryException as exc:
            if len(sig.steps) > 1 and not lean:
                # fewer candidates than the lean threshold, but inputs big enough to outgrow the
                # limit in one read: the lean reads hold a few numbers per candidate
                lean = True
                result.warnings.append(f"DuckDB ran out of memory under {limit} reading the sequence's marks with "
                                       "their inputs; read them without, then the hits apart (slower)")
                continue
            if threads == 1:
                result.gaps.append(Gap(window.start, window.end,
                                       f"DuckDB ran out of memory scanning {path} under {limit} even on one "
                                       f"thread (raise {MEMORY_ENV}): {str(exc).splitlines()[0][:200]}"))
                break
            # the fallback that completes: one thread (half the reader's buffers, an aggregate that
            # spills to the temp dir in order) rather than a failed scan
            threads = 1
            result.warnings.append(f"DuckDB ran out of memory under {limit} on {os.cpu_count()} threads; "
                                   "scanned again on one thread (slower)")
        except duckdb.Error as exc:
            result.gaps.append(Gap(window.start, window.end, f"DuckDB could not scan {path}: {exc}"))
            break
        finally:
            if not isinstance(hits, HitRows):  # the hits stay in the connection until read
                con.close()
    if result.gaps:
        stats.seconds = time.monotonic() - started
        return result
    result.hits = hits  # type: ignore[assignment]  # in hit order (HitRows sorts in DuckDB)
    stats.pages = len(files)
    stats.seconds = time.monotonic() - started
    if hook:
        hook({"fraction": 1.0, "hits": len(result.hits), "covered_to": window.end})
    return result


def _execute(con: Any, query: str, hook: ProgressHook | None, base: float, span: float) -> Any:
    """Run a query (its result is then fetched in batches), DuckDB's own progress to the hook."""
    if hook is None:
        return con.execute(query)
    done = threading.Event()

    def poll() -> None:  # DuckDB reports its own progress; show it
        while not done.wait(0.2):
            try:
                pct = con.query_progress()
            except Exception:
                return
            if pct is not None and pct >= 0:
                hook({"fraction": min(base + span * pct / 100.0, 0.99)})

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        return con.execute(query)
    finally:
        done.set()
        watcher.join(timeout=1)
