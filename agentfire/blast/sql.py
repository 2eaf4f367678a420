"""The Signature as SQL, for DuckDB (the local files store, a Langfuse blob-storage export) and
ClickHouse (a self-hosted Langfuse's own database).

Two query shapes share one predicate builder:
- `hits_query` + `status_query` (DuckDB only): the local scan. Pass one groups only the rows
  that match a step pattern (the hits and their marks: Python resolves sequences); pass two reads
  the status inputs of the hit trajectories only (for one step, in the same statement as pass
  one). Memory follows the hits, not the store.
- `emit_query` (DuckDB or ClickHouse): a self-contained query a team runs on its own engine; one
  row per matching trajectory (trace id, user, still open, hit time), sequences resolved in SQL
  by a chain of "first match after the previous step's" aggregates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from agentfire.blast.signature import Signature, StepPattern, glob_regex, is_glob, path_parts


def lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Columns:
    """Where the observation fields live in a given source (SQL expressions)."""

    trace_id: str
    id: str
    type: str
    name: str
    start: str  # a timestamp
    end: str
    is_root: str  # a boolean expression
    user_id: str
    level: str
    input: str
    output: str
    model: str
    metadata: str  # JSON (DuckDB) or Map(String, String) (ClickHouse)


class Dialect:
    name = "duckdb"

    def lit(self, value: str) -> str:
        return lit(value)

    def json_path(self, path: str) -> str:
        out = "$"
        for p in path_parts(path):
            out += f"[{p}]" if isinstance(p, int) else '."' + p.replace('"', '\\"') + '"'
        return self.lit(out)

    def json_doc(self, col: str) -> str:
        # an input that is not valid JSON (truncated by the SDK, hand-written) holds no argument,
        # as in the Python matcher; json_extract on it would abort the whole scan
        return f"TRY_CAST({col} AS JSON)"

    def json_text(self, col: str, path: str) -> str:
        return f"json_extract_string({self.json_doc(col)}, {self.json_path(path)})"

    def json_exists(self, col: str, path: str) -> str:
        return f"(json_extract({self.json_doc(col)}, {self.json_path(path)}) IS NOT NULL)"

    def re_search(self, expr: str, pattern: str) -> str:
        return f"regexp_matches({expr}, {self.lit(pattern)})"

    def contains_ci(self, expr: str, text: str) -> str:
        return f"(strpos(lower({expr}), {self.lit(text.lower())}) > 0)"

    def meta_eq(self, col: str, key: str, value: str) -> str:
        path = self.lit('$."' + key.replace('"', '\\"') + '"')  # the whole key, dots included
        return f"(json_extract_string({col}, {path}) = {self.lit(value)})"

    def ts(self, dt: datetime) -> str:
        return f"TIMESTAMPTZ {self.lit(dt.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f+00'))}"

    def any_(self, cond: str) -> str:
        return f"bool_or({cond})"

    def min_if(self, expr: str, cond: str) -> str:
        return f"min({expr}) FILTER (WHERE {cond})"

    def first_by_if(self, expr: str, order: str, cond: str) -> str:
        return f"arg_min({expr}, {order}) FILTER (WHERE {cond})"

    def count_if(self, cond: str) -> str:
        return f"count(*) FILTER (WHERE {cond})"

    def mode(self, expr: str) -> str:
        return f"mode({expr})"


class ClickHouse(Dialect):
    name = "clickhouse"

    def lit(self, value: str) -> str:
        # ClickHouse string literals treat backslash as an escape (DuckDB's do not)
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def _keys(self, path: str) -> str:
        # ClickHouse JSON functions take keys and 1-based indexes as separate arguments
        return ", ".join(str(p + 1) if isinstance(p, int) else self.lit(p) for p in path_parts(path))

    def json_text(self, col: str, path: str) -> str:
        # as DuckDB's json_extract_string: NULL when missing or JSON null, strings unquoted,
        # other values as their JSON text (ClickHouse's extractors answer '' instead of NULL)
        k = self._keys(path)
        return (f"multiIf(NOT JSONHas({col}, {k}), NULL, JSONType({col}, {k}) = 'Null', NULL, "
                f"JSONType({col}, {k}) = 'String', JSONExtractString({col}, {k}), JSONExtractRaw({col}, {k}))")

    def json_exists(self, col: str, path: str) -> str:
        return f"JSONHas({col}, {self._keys(path)})"

    def re_search(self, expr: str, pattern: str) -> str:
        return f"match({expr}, {self.lit(pattern)})"

    def contains_ci(self, expr: str, text: str) -> str:
        return f"(positionCaseInsensitiveUTF8({expr}, {self.lit(text)}) > 0)"

    def meta_eq(self, col: str, key: str, value: str) -> str:
        return f"({col}[{self.lit(key)}] = {self.lit(value)})"

    def ts(self, dt: datetime) -> str:
        return f"toDateTime64({self.lit(dt.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f'))}, 6, 'UTC')"

    def any_(self, cond: str) -> str:
        return f"max({cond})"

    def min_if(self, expr: str, cond: str) -> str:
        return f"minIf({expr}, {cond})"

    def first_by_if(self, expr: str, order: str, cond: str) -> str:
        return f"argMinIf({expr}, {order}, {cond})"

    def count_if(self, cond: str) -> str:
        return f"countIf({cond})"

    def mode(self, expr: str) -> str:
        return f"anyHeavy({expr})"


def name_cond(d: Dialect, expr: str, pattern: str) -> str:
    if not is_glob(pattern):
        return f"({expr} = {d.lit(pattern)})"
    return d.re_search(expr, glob_regex(pattern))


def step_cond(d: Dialect, c: Columns, step: StepPattern, root_check: bool = True) -> str:
    """A row that matches the step. `root_check=False`: a root may pass too (the caller rules
    roots out where it reads the parent column anyway)."""
    # the root is the trajectory, not one of its steps
    parts: list[str] = [f"NOT {c.is_root}"] if root_check else []
    if step.tool is not None:
        parts.append(f"({c.type} = 'TOOL')")
        parts.append(name_cond(d, c.name, step.tool))
    if step.level is not None:
        parts.append(f"(coalesce({c.level}, 'DEFAULT') = {d.lit(step.level.upper())})")
    if step.output_matches is not None:
        parts.append(f"coalesce({d.re_search(c.output, step.output_matches)}, false)")
    for a in step.args:
        if a.op == "exists":
            parts.append(d.json_exists(c.input, a.path))
            continue
        text = d.json_text(c.input, a.path)
        if a.op == "=":
            parts.append(f"coalesce({text} = {d.lit(a.value or '')}, false)")
        elif a.op == "~":
            parts.append(f"coalesce({d.contains_ci(text, a.value or '')}, false)")
        else:
            parts.append(f"coalesce({d.re_search(text, a.value or '')}, false)")
    return "(" + " AND ".join(parts) + ")"


def trace_conds(d: Dialect, c: Columns, sig: Signature) -> list[str]:
    """Row-level conditions of which at least one row per trajectory must hold."""
    out = []
    if sig.model is not None:
        out.append(f"(({c.type} = 'GENERATION') AND {name_cond(d, c.model, sig.model)})")
    for key, value in sig.metadata:
        out.append(f"coalesce({d.meta_eq(c.metadata, key, value)}, false)")
    return out


def in_window(d: Dialect, c: Columns, start: datetime, end: datetime) -> str:
    return f"({c.start} >= {d.ts(start)} AND {c.start} < {d.ts(end)})"


def with_name_test(d: Dialect, c: Columns, step: StepPattern, cond: str) -> str:
    """`cond` behind a plain test of the step's tool name (when it names one tool): DuckDB pushes
    it into the scan, and Parquet skips the other columns of every row it rejects."""
    if step.tool is None or is_glob(step.tool):
        return cond
    return f"{c.name} IN ({d.lit(step.tool)}) AND ({cond})"


# --- sources ----------------------------------------------------------------------------------

# Only the columns a signature needs are parsed: output, model and metadata are the costly ones.
JSONL_TYPES = {
    "id": "VARCHAR", "traceId": "VARCHAR", "type": "VARCHAR", "name": "VARCHAR",
    "startTime": "VARCHAR", "endTime": "VARCHAR", "parentObservationId": "VARCHAR",
    "isRootObservation": "BOOLEAN", "userId": "VARCHAR", "level": "VARCHAR", "input": "VARCHAR",
    "output": "VARCHAR", "model": "VARCHAR", "metadata": "JSON",
}
# The files store and the Langfuse v2 API: camelCase rows.
FILES_COLUMNS = Columns(
    # an unreadable time is NULL (as agentfire.trajectory.parse_time makes it None), not an error
    trace_id="traceId", id="id", type="upper(type)", name="name",
    start="TRY_CAST(startTime AS TIMESTAMPTZ)", end="TRY_CAST(endTime AS TIMESTAMPTZ)",
    is_root="coalesce(isRootObservation, parentObservationId IS NULL)", user_id="userId",
    level="upper(level)", input="input", output="output", model="model", metadata="metadata",
)
# A Langfuse blob-storage export and the ClickHouse observations table: snake_case rows.
EXPORT_COLUMNS = Columns(
    trace_id="trace_id", id="id", type="upper(type)", name="name", start="start_time", end="end_time",
    is_root="(parent_observation_id IS NULL OR parent_observation_id = '')", user_id="user_id",
    level="upper(level)", input="input", output="output", model="provided_model_name",
    metadata="metadata",
)


def needed_columns(sig: Signature | None) -> dict[str, str]:
    """The observation fields a signature needs, with their DuckDB types."""
    skip: set[str] = set()
    if sig is not None:
        skip = {"output", "model", "metadata"}
        if any(s.output_matches is not None for s in sig.steps):
            skip.discard("output")
        if sig.model is not None:
            skip.discard("model")
        if sig.metadata:
            skip.discard("metadata")
    return {k: v for k, v in JSONL_TYPES.items() if k not in skip}


MAX_OBJECT = 16 << 20  # the JSON reader's line limit (its buffers are twice it, per thread); a store
# with longer lines is read again with BIG_OBJECT (files_scan)
BIG_OBJECT = 64 << 20  # read on one thread (lines up to 128 MB): its buffers fit the default memory limit


def files_source(paths: list[str], sig: Signature | None = None, types: dict[str, str] | None = None) -> str:
    """JSON lines, only the columns a signature needs (or `types`: column -> DuckDB type)."""
    files = "[" + ", ".join(lit(p) for p in paths) + "]"
    cols = "{" + ", ".join(f"{k}: '{v}'" for k, v in (types or needed_columns(sig)).items()) + "}"
    return (f"read_json({files}, format='newline_delimited', columns={cols}, "
            f"ignore_errors=false, maximum_object_size={MAX_OBJECT})")


# Where a Parquet row lives: its file's place in the list read and its row number in that file
# (virtual columns: nothing is decoded for them)
ROW_KEY_BITS = 40
ROW_KEY = f"(file_index::BIGINT << {ROW_KEY_BITS}) + file_row_number"


def parquet_source(paths: list[str], present: dict[str, str], sig: Signature | None = None,
                   types: dict[str, str] | None = None, row_key: bool = False) -> str:
    """Parquet files of the same camelCase rows (`present`: column -> its type); a column the
    files lack reads as NULL; times stay timestamps when they are (no round trip via text).
    `row_key`: each row's ROW_KEY as agentfire_k."""
    files = "[" + ", ".join(lit(p) for p in paths) + "]"
    sel = [f"{ROW_KEY} AS agentfire_k"] if row_key else []
    for k, v in (types or needed_columns(sig)).items():
        if k not in present:
            sel.append(f'CAST(NULL AS {v}) AS "{k}"')
        elif k in ("startTime", "endTime") and present[k].upper().startswith("TIMESTAMP"):
            sel.append(f'CAST("{k}" AS TIMESTAMPTZ) AS "{k}"')
        elif present[k].upper() == v:  # as it is (a cast would hide the column from filter pushdown)
            sel.append(f'"{k}"')
        elif v == "JSON":  # a number, a struct or JSON text: as the JSON reader reads it
            sel.append(f'TRY_CAST("{k}" AS JSON) AS "{k}"')
        else:
            sel.append(f'CAST("{k}" AS {v}) AS "{k}"')
    return f"(SELECT {', '.join(sel)} FROM read_parquet({files}, union_by_name=true))"


def union_source(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return "(" + " UNION ALL BY NAME ".join(f"SELECT * FROM {p}" for p in parts) + ")"


# --- the local scan: hits first, then the hit trajectories' status --------------------------

# What the second pass reads: the status inputs of a trajectory, never its inputs or outputs.
STATUS_TYPES = {k: JSONL_TYPES[k] for k in ("id", "traceId", "startTime", "endTime", "parentObservationId",
                                            "isRootObservation", "userId", "level")}


def last_step_query(sig: Signature, source: str, c: Columns, start: datetime, end: datetime) -> str:
    """A sequence's first read: the trajectories with a match of its last step in the window
    (the marks of the earlier steps, often a common tool, are then grouped for these only)."""
    d = Dialect()
    last = sig.steps[-1]
    cond = with_name_test(d, c, last, f"{step_cond(d, c, last)} AND {in_window(d, c, start, end)}")
    return f"SELECT DISTINCT {c.trace_id} AS trace_id FROM {source} WHERE {c.trace_id} IS NOT NULL AND {cond}"


def hits_query(sig: Signature, source: str, c: Columns, start: datetime, end: datetime) -> str:
    """Pass one of a one-step signature (a sequence: last_step_query, then sequence_query): only
    rows that match the step (or a trajectory condition) are projected and grouped, so the GROUP
    BY holds the matching rows, not the store. One row per trajectory whose step matched in the
    window: its first match (hit_t, tool, input)."""
    assert len(sig.steps) == 1, "a sequence: last_step_query and sequence_query"
    d = Dialect()
    (step,) = sig.steps
    mark = f"({step_cond(d, c, step)} AND {in_window(d, c, start, end)})"
    tconds = trace_conds(d, c, sig)
    # ties in time go to the lesser (name, input), so the observation id (10M distinct strings:
    # in Parquet the costliest column to read, 0.3 s of a 10M-row scan) is never read
    select = [f"{c.trace_id} AS trace_id", f"epoch_ms({c.start}) AS t", f"{c.name} AS name", f"{c.input} AS input",
              f"coalesce({mark}, false) AS m0"]
    select += [f"coalesce({t}, false) AS c{i}" for i, t in enumerate(tconds)]
    # the filter sits under the projection: the costly columns (times, JSON) are computed for
    # the matching rows only
    wanted = " OR ".join(f"coalesce({x}, false)" for x in [mark, *tconds])
    if not tconds:
        # one condition: a WHERE keeps a row only where it is true (NULL is not), so it needs no
        # coalesce, and bare its conjuncts (type, name, the window's times) are pushed into the
        # scan one by one (Parquet skips the row groups the window's times rule out and decodes
        # the other columns only for the rows that pass)
        wanted = with_name_test(d, c, step, mark)
    having = ["bool_or(m0)"] + [f"bool_or(c{i})" for i in range(len(tconds))]
    return f"""
WITH obs AS (
  SELECT {", ".join(select)}
  FROM (SELECT * FROM {source} WHERE {c.trace_id} IS NOT NULL AND ({wanted}))
),
per AS (
  SELECT trace_id, min({{'t': t, 'name': name, 'input': input}}) FILTER (WHERE m0) AS hit
  FROM obs GROUP BY trace_id HAVING {" AND ".join(having)}
)
SELECT trace_id, hit.t AS hit_t, hit.name AS tool, hit.input AS input FROM per
"""


# A trajectory's status inputs over its rows (user_id, t, open_end, is_root, level): its user,
# start, roots, the earliest root's end and level, and when that root started
TRAJECTORY_AGGREGATES = """min(user_id) AS user_id, min(t) AS start_ms,
    count(*) FILTER (WHERE is_root) AS roots,
    -- the earliest root; of its versions (a store that appends each one: open, then closed)
    -- a closed one, as an observation's end is set once and never unset
    arg_min(open_end, t * 2 + CASE WHEN open_end THEN 1 ELSE 0 END) FILTER (WHERE is_root) AS root_open,
    arg_min(level, t * 2 + CASE WHEN open_end THEN 1 ELSE 0 END) FILTER (WHERE is_root) AS root_level,
    min(t) FILTER (WHERE is_root) AS root_start_ms"""
# the status rules of agentfire.trajectory.from_observations, over those
STATUS_CASE = """CASE WHEN roots = 0 OR root_open THEN 'running'
       WHEN upper(coalesce(root_level, '')) = 'ERROR' THEN 'error' ELSE 'finished' END"""


def status_query(source: str, c: Columns, hits_table: str, hits: str | None = None,
                 distinct_ids: bool = False, hit_rows: bool = False) -> str:
    """Pass two, over the rows of the hit trajectories only (`hits_table`: trace_id, hit_t, tool,
    input; or `hits`, the query of pass one, computed first in the same statement under that
    name): user, start, status inputs, how many steps started before the hit (its index - 1), the
    hit, and when the earliest root started (files_scan's bounded read checks it). The inner join with the hits is the row filter: DuckDB pushes the hit ids into the
    scan (dynamic join filters), so a Parquet row group without any of them is skipped.
    `distinct_ids`: the store appends each version of an observation (its rows carry updatedAt):
    a step counts once in the hit's index, however many versions it has (the id is read only then:
    in Parquet it is the costliest column).
    `hit_rows`: the hits table names each hit's row (hit_t and hit_id, not tool and input: a
    sequence's lean marks); the tool and input are read from that row here."""
    first = f"{hits_table} AS MATERIALIZED ({hits}\n),\n" if hits is not None else ""
    id_col = f", o.{c.id} AS id" if distinct_ids else ""
    hit_row, hit_cols = "", "h.tool, h.input"
    if hit_rows:
        hit_row = (f",\n    CASE WHEN epoch_ms({c.start}) = h.hit_t AND coalesce(o.{c.id}, '') = coalesce(h.hit_id, '') "
                   f"THEN {{'name': o.{c.name}, 'input': o.{c.input}}} END AS hit_row")
        hit_cols = "hit.name AS tool, hit.input AS input"
    step = "NOT is_root AND t < hit_t"
    before = (f"count(DISTINCT id) FILTER (WHERE {step} AND id <> '') "
              f"+ count(*) FILTER (WHERE {step} AND coalesce(id, '') = '')"  # no id: each row is a step
              if distinct_ids else f"count(*) FILTER (WHERE {step})")
    # the join sits under the projection: times cast and status inputs computed for the hit
    # trajectories' rows only (computed before the join, they cost more than reading the store)
    return f"""
WITH {first}obs AS (
  SELECT h.trace_id AS trace_id, h.hit_t AS hit_t, {c.user_id} AS user_id, epoch_ms({c.start}) AS t,
    {c.end} IS NULL AS open_end, {c.is_root} AS is_root, {c.level} AS level{id_col}{hit_row}
  FROM {source} AS o JOIN {hits_table} AS h ON h.trace_id = o.{c.trace_id}
),
per AS (
  SELECT trace_id, {TRAJECTORY_AGGREGATES},
    {before} AS before{", min(hit_row) AS hit" if hit_rows else ""}
  FROM obs
  GROUP BY trace_id
)
SELECT per.trace_id, user_id, start_ms, {STATUS_CASE} AS status,
  CASE WHEN h.hit_t IS NOT NULL THEN before + 1 END AS step_index, h.hit_t, {hit_cols}, root_start_ms
FROM per JOIN {hits_table} AS h ON h.trace_id = per.trace_id
"""


def candidates_query(step: StepPattern, source: str, c: Columns, limit: int) -> str:
    """Pass one over a Parquet store whose every row started inside the window (its row groups'
    statistics say so): the rows matching a step (one step's, or a sequence's last), located by
    row (`source` carries agentfire_k), at most `limit`. It tests no time and no parent, so
    Parquet decodes neither column for it (the start times were a third of pass one); pass two
    picks the hit among them (located_status_query, sequence_query's `cands`), where both are
    read anyway."""
    d = Dialect()
    cond = with_name_test(d, c, step, step_cond(d, c, step, root_check=False))
    # named apart from the store's columns: pass two joins this table to them unqualified
    return (f"SELECT {c.trace_id} AS trace_id, agentfire_k AS row_key, {c.name} AS cand_name, {c.input} AS cand_input "
            f"FROM {source} WHERE {c.trace_id} IS NOT NULL AND {cond} LIMIT {int(limit)}")


def located_status_query(source: str, c: Columns, cands_table: str) -> str:
    """Pass two after candidates_query (`cands_table`: trace_id, row_key, cand_name, cand_input;
    `source` carries agentfire_k): the columns of status_query, the hit picked here as hits_query picks
    it: each trajectory's earliest candidate that is not its root and has a start (ties to the
    lesser name, input); a trajectory without one is no hit. Its index counts the steps that
    started before it (a list per trajectory: the hit's time is known only after the read)."""
    is_cand = f"cand.row_key IS NOT NULL AND NOT {c.is_root} AND {c.start} IS NOT NULL"
    hit_row = f"{{'t': epoch_ms({c.start}), 'name': cand.cand_name, 'input': cand.cand_input}}"
    return f"""
WITH traces AS MATERIALIZED (SELECT DISTINCT trace_id FROM {cands_table}),
obs AS (
  SELECT h.trace_id AS trace_id, {c.user_id} AS user_id, epoch_ms({c.start}) AS t,
    {c.end} IS NULL AS open_end, {c.is_root} AS is_root, {c.level} AS level,
    CASE WHEN {is_cand} THEN {hit_row} END AS hit_row
  FROM {source} AS o JOIN traces AS h ON h.trace_id = o.{c.trace_id}
  LEFT JOIN {cands_table} AS cand ON cand.row_key = o.agentfire_k
),
per AS (
  SELECT trace_id, {TRAJECTORY_AGGREGATES},
    min(hit_row) AS hit, list(t) FILTER (WHERE NOT is_root) AS step_ts
  FROM obs
  GROUP BY trace_id
)
SELECT trace_id, user_id, start_ms, {STATUS_CASE} AS status,
  len(list_filter(step_ts, lambda x: x < hit.t)) + 1 AS step_index, hit.t AS hit_t, hit.name AS tool,
  hit.input AS input, root_start_ms
FROM per WHERE hit IS NOT NULL
"""


def _first_embedding(n: int, per: str) -> tuple[str, str]:
    """CTEs over `per` (each trajectory's `marks` in time order, each with its `mask` of steps)
    giving p0..p{n-1}: where the greedy first embedding of the sequence puts each step (1-based;
    NULL: none), as Signature.match_step walks a trajectory: step k at the first mark after step
    k-1's whose mask has bit k. Returns the CTEs and the last one's name."""
    ctes, prev = [], per
    for k in range(n):
        after = "marks" if k == 0 else f"marks[p{k - 1} + 1:]"
        pos = f"list_position(list_transform({after}, lambda m: ((m.mask >> {k}) & 1) = 1), true)"
        ctes.append(f"e{k} AS (SELECT *, {pos if k == 0 else f'p{k - 1} + {pos}'} AS p{k} FROM {prev})")
        prev = f"e{k}"
    return ",\n".join(ctes), prev


def _marks_obs(sig: Signature, c: Columns, start: datetime, end: datetime,
               last_matched: str | None = None) -> tuple[str, str, list[str]]:
    """A sequence's per-row mask (bit k: the row matches step k; the last step's only inside the
    window), the trajectory conditions as columns c0.., and the HAVING that keeps a trajectory
    whose last step matched and whose conditions hold. `last_matched`: a condition that stands
    for the last step's match, bar the root and the window (pass one located the rows)."""
    d = Dialect()
    n = len(sig.steps)
    marks = [step_cond(d, c, s) for s in sig.steps]
    if last_matched is not None:
        marks[-1] = f"({last_matched} AND NOT {c.is_root})"
    marks[-1] = f"({marks[-1]} AND {in_window(d, c, start, end)})"
    tconds = trace_conds(d, c, sig)
    mask = " + ".join(f"(coalesce({m}, false)::INT << {i})" for i, m in enumerate(marks))
    conds = "".join(f", coalesce({t}, false) AS c{i}" for i, t in enumerate(tconds))
    having = [f"bool_or(((mask >> {n - 1}) & 1) = 1)"] + [f"bool_or(c{i})" for i in range(len(tconds))]
    return f"{mask} AS mask{conds}", " AND ".join(having), [*marks, *tconds]


def sequence_query(sig: Signature, source: str, c: Columns, start: datetime, end: datetime, only: str,
                   distinct_ids: bool = False, cands: str | None = None) -> str:
    """A sequence's hits and their trajectories' status in one read of the candidates' rows
    (`only`: a table of the trace ids whose last step matched in the window, last_step_query's),
    where the marks alone and then the hits' status took two reads of the store: per candidate
    its marks in time order, the first embedding's last mark (the hit), its status, and its
    index: the steps that started before it (`distinct_ids`: a step exported in several versions
    counts once, a row without an id each time). The columns of status_query.
    `cands`: pass one located the last step's rows (candidates_query's table; `source` carries
    agentfire_k): a row is the last step's where it is one of them (not a root, in the window),
    its input read from there, so this read decodes no input unless an earlier step tests it.
    Marks at one millisecond go in (name, steps, input) order: the observation id (the costliest
    column in Parquet) is read only for distinct_ids."""
    n = len(sig.steps)
    last_matched = "cand.row_key IS NOT NULL" if cands is not None else None
    mask, having, _conds = _marks_obs(sig, c, start, end, last_matched)
    embedding, last = _first_embedding(n, "per")
    if distinct_ids:
        step, before = "{'t': t, 'id': coalesce(id, '')}", (
            "len(list_distinct(list_transform(list_filter(steps, lambda s: s.t < hit.t AND s.id <> ''), "
            "lambda s: s.id))) + len(list_filter(steps, lambda s: s.t < hit.t AND s.id = ''))")
    else:
        step, before = "t", "len(list_filter(steps, lambda x: x < hit.t))"
    id_col = f", {c.id} AS id" if distinct_ids else ""
    row_input = "cand.cand_input" if cands is not None else c.input
    rows = f"(SELECT * FROM {source} WHERE {c.trace_id} IN (SELECT trace_id FROM {only}))"
    if cands is not None:
        rows += f" AS o LEFT JOIN {cands} AS cand ON cand.row_key = o.agentfire_k"
    return f"""
WITH obs AS (
  SELECT {c.trace_id} AS trace_id{id_col}, epoch_ms({c.start}) AS t, {c.name} AS name, {row_input} AS row_input,
    {mask}, {c.is_root} AS is_root, {c.end} IS NULL AS open_end, {c.level} AS level, {c.user_id} AS user_id
  FROM {rows}
),
marked AS (
  SELECT *, CASE WHEN ((mask >> {n - 1}) & 1) = 1 THEN row_input END AS input FROM obs
),
per AS (
  SELECT trace_id,
    list({{'t': t, 'mask': mask, 'name': name, 'input': input}} ORDER BY t, name, mask, input)
      FILTER (WHERE mask <> 0) AS marks,
    list({step} ORDER BY t) FILTER (WHERE NOT is_root AND t IS NOT NULL) AS steps,
    {TRAJECTORY_AGGREGATES}
  FROM marked
  GROUP BY trace_id
  HAVING {having}
),
{embedding}
SELECT trace_id, user_id, start_ms, {STATUS_CASE} AS status, {before} + 1 AS step_index, hit.t AS hit_t,
  hit.name AS tool, hit.input AS input, root_start_ms
FROM (SELECT *, marks[p{n - 1}] AS hit FROM {last} WHERE p{n - 1} IS NOT NULL)
"""


def sequence_marks_query(sig: Signature, source: str, c: Columns, start: datetime, end: datetime, only: str) -> str:
    """A sequence's hits located lean: per trajectory of `only`, its marks (time, steps, the
    row's id; no input, no status) and the first embedding's last one: trace_id, hit_t, hit_id.
    For many candidates (a sequence most trajectories match, such as a loop's), where
    sequence_query's inputs and step times for every candidate outgrow the memory limit; the
    hits' status and their rows' tool and input are then read apart (status_query's hit_rows)."""
    n = len(sig.steps)
    mask, having, wanted = _marks_obs(sig, c, start, end)
    embedding, last = _first_embedding(n, "per")
    return f"""
WITH obs AS (
  SELECT {c.trace_id} AS trace_id, {c.id} AS id, epoch_ms({c.start}) AS t, {mask}
  FROM (SELECT * FROM {source} WHERE ({" OR ".join(f"coalesce({x}, false)" for x in wanted)})
        AND {c.trace_id} IN (SELECT trace_id FROM {only}))
),
per AS (
  SELECT trace_id, list({{'t': t, 'mask': mask, 'id': id}} ORDER BY t, id) FILTER (WHERE mask <> 0) AS marks
  FROM obs GROUP BY trace_id HAVING {having}
),
{embedding}
SELECT trace_id, marks[p{n - 1}].t AS hit_t, marks[p{n - 1}].id AS hit_id FROM {last} WHERE p{n - 1} IS NOT NULL
"""


# --- the query a team runs on its own engine --------------------------------------------------


def emit_query(sig: Signature, dialect: str, start: datetime, end: datetime,
               source: str | None = None) -> str:
    """One row per matching trajectory: trace_id, user_id, still_open, hit_at."""
    d: Dialect = ClickHouse() if dialect == "clickhouse" else Dialect()
    c = EXPORT_COLUMNS
    if dialect == "clickhouse":
        # user ids live on the traces table; FINAL collapses not-yet-merged updates
        src = ("observations AS o FINAL LEFT JOIN (SELECT id, user_id FROM traces FINAL "
               "WHERE project_id = {project_id:String}) AS tr ON tr.id = o.trace_id "
               "WHERE o.project_id = {project_id:String}")
        c = Columns(**{**c.__dict__, "trace_id": "o.trace_id", "id": "o.id", "type": "upper(o.type)",
                       "name": "o.name", "start": "o.start_time", "end": "o.end_time",
                       "is_root": "(o.parent_observation_id IS NULL OR o.parent_observation_id = '')",
                       "user_id": "tr.user_id", "level": "upper(o.level)", "input": "o.input",
                       "output": "o.output", "model": "o.provided_model_name", "metadata": "o.metadata"})
    else:
        src = source or "read_json_auto('langfuse-export/observations/*.jsonl')"
        src = f"{src} WHERE true"
    marks = [step_cond(d, c, s) for s in sig.steps]
    marks[-1] = f"({marks[-1]} AND {in_window(d, c, start, end)})"
    tconds = trace_conds(d, c, sig)
    cols = [f"{c.trace_id} AS trace_id", f"{c.user_id} AS user_id", f"{c.start} AS t",
            f"{c.end} IS NULL AS open_end", f"{c.is_root} AS is_root"]
    cols += [f"{m} AS m{i}" for i, m in enumerate(marks)]
    cols += [f"{t} AS c{i}" for i, t in enumerate(tconds)]
    ctes = [f"obs AS (\n  SELECT {', '.join(cols)}\n  FROM {src}\n)"]
    ctes.append(
        "traj AS (\n  SELECT trace_id, " + d.mode("user_id") + " AS user_id, "
        + d.count_if("is_root") + " AS roots, "
        + d.first_by_if("open_end", "t", "is_root") + " AS root_open"
        + "".join(f", {d.any_(f'c{i}')} AS c{i}" for i in range(len(tconds)))
        + "\n  FROM obs GROUP BY trace_id\n)"
    )
    ctes.append("s0 AS (\n  SELECT trace_id, min(t) AS t FROM obs WHERE m0 GROUP BY trace_id\n)")
    for i in range(1, len(sig.steps)):
        ctes.append(
            f"s{i} AS (\n  SELECT obs.trace_id AS trace_id, min(obs.t) AS t FROM obs "
            f"JOIN s{i - 1} ON s{i - 1}.trace_id = obs.trace_id "
            f"WHERE obs.m{i} AND obs.t > s{i - 1}.t GROUP BY obs.trace_id\n)"
        )
    last = f"s{len(sig.steps) - 1}"
    where = " AND ".join([f"traj.c{i}" for i in range(len(tconds))] or ["true"])
    return (
        "-- agentfire blast: " + sig.describe().replace("\n", " ") + "\n"
        "WITH " + ",\n".join(ctes) + "\n"
        f"SELECT traj.trace_id AS trace_id, traj.user_id AS user_id,\n"
        f"  (traj.roots = 0 OR traj.root_open) AS still_open, {last}.t AS hit_at\n"
        f"FROM {last} JOIN traj ON traj.trace_id = {last}.trace_id\n"
        f"WHERE {where}\nORDER BY hit_at, trace_id\n"
    )
