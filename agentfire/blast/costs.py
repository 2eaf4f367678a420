"""Per-trajectory cost of a window over the local files store, as one DuckDB aggregate.

`freeze --to p50` needs, for every trajectory that started in the window, its summed cost and
whether it is still running: the same answers agentfire.trajectory.from_observations gives
(start = the earliest startTime of its observations; cost = the sum of each observation's cost,
read as trajectory._cost reads it, a model step without one priced from its tokens by runbook.yaml
`prices:` as trajectory._price does; status from the earliest root), computed by DuckDB over the
store's JSON lines and Parquet files as blast scans them, never a parse of every trajectory.
Memory is the per-trajectory aggregate (a few numbers each), not the store.

Versions of one observation (rows sharing an id, told apart by `updatedAt`) count once, the
newest, as in from_observations: the trajectories holding such rows get a second, exact pass.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from agentfire.blast.sql import Dialect, lit

# What the aggregate reads (only these are parsed out of each JSON line).
COST_TYPES = {
    "id": "VARCHAR", "traceId": "VARCHAR", "type": "VARCHAR", "startTime": "VARCHAR", "endTime": "VARCHAR",
    "parentObservationId": "VARCHAR", "isRootObservation": "BOOLEAN", "level": "VARCHAR",
    "totalCost": "JSON", "costDetails": "JSON", "updatedAt": "VARCHAR",
    "model": "VARCHAR", "usageDetails": "JSON", "usage": "JSON",  # runbook prices: tokens x price
}
_NUM = "('UBIGINT', 'BIGINT', 'DOUBLE')"  # JSON numbers (isinstance(v, (int, float)) in _cost)
FETCH = 50_000


def _num(j: str) -> str:
    """A JSON value as a DOUBLE when it is a number, else NULL. A cast of its text: the JSON text
    of a number casts, of anything else (a string keeps its quotes, true, null, an object) does
    not; cheaper than json_type, which parses the value again."""
    return f"TRY_CAST(CAST({j} AS VARCHAR) AS DOUBLE)"


def cost_expr(total: str = "totalCost", details: str = "costDetails") -> str:
    """agentfire.trajectory._cost in SQL: totalCost when a number, else costDetails.total when a
    number, else the sum of costDetails' numeric values, else NULL (no cost). COALESCE evaluates
    its next argument only for the rows still NULL, so costDetails is read where totalCost is not
    a number."""
    inner_total = f"json_extract({details}, '$.total')"
    return (
        f"coalesce({_num(total)}, CASE WHEN json_type({details}) = 'OBJECT' THEN coalesce({_num(inner_total)}, "
        f"list_sum([CAST(v AS DOUBLE) FOR v IN map_values(CAST({details} AS MAP(VARCHAR, JSON))) "
        f"IF json_type(v) IN {_NUM}])) END)"
    )


def _falsy(j: str) -> str:
    """A JSON value Python reads as false (`x or y` takes y)."""
    return (f"({j} IS NULL OR json_type({j}) = 'NULL' OR CAST({j} AS VARCHAR) IN ('{{}}', '[]', '\"\"', 'false') "
            f"OR (json_type({j}) IN {_NUM} AND TRY_CAST({j} AS DOUBLE) = 0))")


def _int(j: str) -> str:
    """agentfire.trajectory._int of a JSON value: int(v) of a number, a bool or an integer string."""
    return (f"CASE WHEN json_type({j}) IN ('UBIGINT', 'BIGINT') THEN TRY_CAST({j} AS BIGINT) "
            f"WHEN json_type({j}) = 'DOUBLE' THEN TRY_CAST(trunc(CAST({j} AS DOUBLE)) AS BIGINT) "
            f"WHEN json_type({j}) = 'BOOLEAN' THEN CASE WHEN CAST({j} AS VARCHAR) = 'true' THEN 1 ELSE 0 END "
            f"WHEN json_type({j}) = 'VARCHAR' AND regexp_full_match(trim(json_extract_string({j}, '$')), '[+-]?[0-9_]+') "
            f"THEN TRY_CAST(replace(trim(json_extract_string({j}, '$')), '_', '') AS BIGINT) END")


# usage.get(k1, usage.get(k2, usage.get(k3))) for the input tokens, then the output tokens, as
# agentfire.trajectory._tokens reads them: one json_extract of all six paths (a missing key is
# NULL, a key present with null is JSON null, so the first non-NULL is the first key present;
# a usage that is not an object has none of them).
TOKEN_KEYS = (("input", "prompt_tokens", "promptTokens"), ("output", "completion_tokens", "completionTokens"))
TOKEN_PATHS = "[" + ", ".join(f"'$.{k}'" for keys in TOKEN_KEYS for k in keys) + "]"


def _tokens(tok: str, which: int) -> str:
    """The input (0) or output (1) tokens out of json_extract(usage, TOKEN_PATHS), as _int reads them."""
    first = 1 + 3 * which
    return _int(f"coalesce({tok}[{first}], {tok}[{first + 1}], {tok}[{first + 2}])")


def price_expr(prices: dict[str, Any]) -> str:
    """The runbook's `prices:` (model name or glob -> USD per million input/output tokens) as one
    CASE over the model, first match wins (as agentfire.trajectory._price looks them up); NULL
    for a model no entry prices."""
    d = Dialect()
    whens = []
    for pattern, p in prices.items():
        get = (lambda k: getattr(p, k, None) if not isinstance(p, dict) else p.get(k))
        rate_in, rate_out = float(get("input_per_million") or 0), float(get("output_per_million") or 0)
        regex = fnmatch.translate(pattern).replace("\\Z", "\\z")
        whens.append(f"WHEN model = {d.lit(pattern)} OR regexp_matches(model, {d.lit(regex)}) "
                     f"THEN (coalesce(tin, 0) * {rate_in!r} + coalesce(tout, 0) * {rate_out!r}) / 1e6")
    return f"CASE {' '.join(whens)} END" if whens else "CAST(NULL AS DOUBLE)"


@dataclass(frozen=True)
class WindowCost:
    trace_id: str
    start: datetime
    status: str  # running / finished / error
    cost_usd: float
    cost_known: bool = True  # False: model steps with tokens that neither the store nor prices: priced


# A trajectory's status as one small number, from its earliest root (NULL: no root yet).
RUNNING, ERROR, FINISHED = 2, 1, 0
RUNNING_SQL = f"coalesce(root_code = {RUNNING}, true)"
NEVER = "'infinity'::TIMESTAMPTZ"  # a root without a readable start sorts last (as as_of does)


def _read(source: str) -> str:
    """The store's rows as the aggregate reads them: only casts of plain columns here (every row
    pays for these), the JSON columns passed on as they are."""
    return f"""SELECT traceId AS trace_id, id, TRY_CAST(startTime AS TIMESTAMPTZ) AS t, endTime, level, type, model,
    totalCost, costDetails, usage, usageDetails, coalesce(updatedAt, '') AS upd,
    coalesce(isRootObservation, coalesce(parentObservationId, '') = '') AS is_root
  FROM {source}
  WHERE traceId IS NOT NULL AND traceId <> ''"""


def _costed(rows: str, start: datetime, prices: dict[str, Any], extra: str = "") -> str:
    """One row per observation: its trace id, start, own cost (_cost), else, for a model step
    with tokens, the runbook's price of them; `unpriced` when neither; `code` (RUNNING, ERROR,
    FINISHED) on a root. The per-row JSON work (cost, tokens, the root's end) is done only for
    rows at or after the window's start (or without a start): a row before it puts its
    trajectory out of the window whatever it costs, so only its start is kept. DuckDB's CASE
    evaluates a branch for the rows that take it only, so the guard prunes the work itself (each
    guarded expression is written once, so no common-subexpression pass hoists it out)."""
    d = Dialect()
    keep = f"(t IS NULL OR t >= {d.ts(start)})"
    usage = f"CASE WHEN {_falsy('usageDetails')} THEN usage ELSE usageDetails END"
    price = price_expr(prices)
    # (each CASE branch costs something per chunk of rows even when no row takes it: the
    # branches that rows rarely take are kept small)
    return f"""SELECT trace_id, t, code{extra},
    CASE WHEN own IS NOT NULL OR NOT gen OR (tin IS NULL AND tout IS NULL) THEN own ELSE {price} END AS cost,
    (own IS NULL AND gen AND (tin IS NOT NULL OR tout IS NOT NULL) AND ({price}) IS NULL) AS unpriced
  FROM (
    SELECT *, CASE WHEN tok IS NOT NULL THEN {_tokens("tok", 0)} END AS tin,
      CASE WHEN tok IS NOT NULL THEN {_tokens("tok", 1)} END AS tout
  FROM (
    SELECT *, CASE WHEN own IS NULL AND gen THEN json_extract({usage}, {TOKEN_PATHS}) END AS tok
    FROM (
      SELECT * EXCLUDE (totalCost, costDetails, endTime, level, type),
        CASE WHEN {keep} THEN {cost_expr()} END AS own,
        CASE WHEN is_root AND {keep} THEN CASE WHEN TRY_CAST(endTime AS TIMESTAMPTZ) IS NULL THEN {RUNNING}
             WHEN upper(level) = 'ERROR' THEN {ERROR} ELSE {FINISHED} END END AS code,
        coalesce({keep} AND NOT is_root AND upper(type) = 'GENERATION', false) AS gen
      FROM ({rows})
    )
  ))"""


def _per_trace(rows: str, start: datetime, end: datetime, extra: str = "", or_having: str = "") -> str:
    d = Dialect()
    return f"""SELECT trace_id, min(t) AS start, coalesce(sum(cost), 0.0) AS cost,
  NOT coalesce(bool_or(unpriced), false) AS known,
  arg_min(code, coalesce(t, {NEVER})) FILTER (WHERE code IS NOT NULL) AS root_code{extra}
FROM ({rows})
GROUP BY trace_id
HAVING (min(t) >= {d.ts(start)} AND min(t) < {d.ts(end)}){or_having}"""


def query(source: str, start: datetime, end: datetime, prices: dict[str, Any] | None = None,
          versions: bool = False) -> str:
    """One pass: every trajectory that started in [start, end) (cost, known, root_code), and
    whether any of its rows is a versioned one (then `exact_query` recomputes it). A versioned
    trajectory is kept when its newest versions may start in the window (an older version of a
    step dated before the window does not put it out): some row at or after the start, the
    earliest before the end.

    `versions` (a store whose rows carry updatedAt, as Langfuse's exports do on every row): a
    trajectory counts as versioned only when two of its rows share an id, so the exact pass (a
    second scan grouping every observation) runs for the trajectories that hold versions, not for
    every one; the answers are the same either way (the exact pass of a trajectory without a
    repeated id changes nothing), only the cost moves."""
    d = Dialect()
    extra = ", upd <> '' AS versioned" + (", CASE WHEN id <> '' THEN id END AS rid" if versions else "")
    rows = _costed(_read(source), start, prices or {}, extra=extra)
    versioned = "bool_or(versioned)" + (" AND count(rid) > count(DISTINCT rid)" if versions else "")
    return _per_trace(rows, start, end, f",\n  {versioned} AS versioned",
                      f"\n  OR ({versioned} AND min(t) < {d.ts(end)} AND max(t) >= {d.ts(start)})")


def exact_query(source: str, start: datetime, end: datetime, prices: dict[str, Any] | None = None) -> str:
    """The trajectories in `versioned(trace_id)`: each observation id once, its newest version."""
    rows = f"""SELECT * REPLACE (CASE WHEN id IS NULL OR id = '' THEN uuid()::VARCHAR ELSE id END AS id)
  FROM ({_read(source)}) WHERE trace_id IN (SELECT trace_id FROM versioned)"""
    costed = _costed(rows, start, prices or {}, extra=", id, upd")
    newest = f"""SELECT trace_id, id, arg_max(t, upd) AS t, arg_max(code, upd) AS code, arg_max(cost, upd) AS cost,
    arg_max(unpriced, upd) AS unpriced
  FROM ({costed}) GROUP BY trace_id, id"""
    return _per_trace(newest, start, end)


def _status(code: Any) -> str:
    return "error" if code == ERROR else "finished" if code == FINISHED else "running"


def _rows(cur: Any) -> Iterator[tuple[Any, ...]]:
    while True:
        batch = cur.fetchmany(FETCH)
        if not batch:
            return
        yield from batch


_UPDATED_AT = re.compile(rb'"updatedAt"\s*:\s*"')
PEEK = 1 << 16


def carries_versions(con: Any, files: list[Path]) -> bool:
    """Whether the store's rows carry updatedAt (a look at the head of each JSON-lines file; a
    Parquet file: whether it has the column). Only which query runs depends on it, never an answer."""
    for f in files:
        try:
            if f.suffix == ".parquet":
                cols = con.execute(f"DESCRIBE SELECT * FROM read_parquet({lit(str(f))})").fetchall()
                if any(c[0] == "updatedAt" for c in cols):
                    return True
            else:
                with open(f, "rb") as fh:
                    if _UPDATED_AT.search(fh.read(PEEK)):
                        return True
        except Exception:  # an unreadable file: the scan itself reports it
            continue
    return False


def _per_trace_table(con: Any, files: list[Path], start: datetime, end: datetime, prices: dict[str, Any] | None) -> None:
    """TEMP TABLE per: one row per trajectory that started in the window (trace_id, start, cost,
    known, root_code), the versioned ones recomputed exactly. It stays in DuckDB."""
    import duckdb

    from agentfire.blast.files_scan import source

    src = source(con, files, types=COST_TYPES)
    make = "CREATE OR REPLACE TEMP TABLE raw AS "
    versions = carries_versions(con, files)
    try:
        con.execute(make + query(src, start, end, prices, versions))
    except duckdb.InvalidInputException as exc:
        if "json" not in str(exc).lower():
            raise
        src = src.replace("ignore_errors=false", "ignore_errors=true")  # torn lines: skipped
        con.execute(make + query(src, start, end, prices, versions))
    (n,) = con.execute("SELECT count(*) FROM raw WHERE versioned").fetchone()
    if not n:  # the usual store: the aggregate is the answer
        con.execute("ALTER TABLE raw DROP COLUMN versioned")
        con.execute("ALTER TABLE raw RENAME TO per")
        return
    con.execute("CREATE OR REPLACE TEMP TABLE per AS SELECT * EXCLUDE (versioned) FROM raw WHERE NOT versioned")
    con.execute("CREATE OR REPLACE TEMP TABLE versioned AS SELECT trace_id FROM raw WHERE versioned")
    con.execute(f"INSERT INTO per SELECT * FROM ({exact_query(src, start, end, prices)})")
    con.execute("DROP TABLE raw")


def window_costs(files: list[Path], start: datetime, end: datetime,
                 prices: dict[str, Any] | None = None) -> list[WindowCost]:
    """Every trajectory that started in [start, end) in these store files, ordered by start
    (`prices`: runbook.yaml prices:, for model steps the store left without a cost)."""
    from agentfire.blast.files_scan import connect

    if not files:
        return []
    con = connect()
    try:
        _per_trace_table(con, files, start, end, prices)
        cur = con.execute("SELECT trace_id, start, cost, known, root_code FROM per ORDER BY start, trace_id")
        return [WindowCost(tid, _utc(t0), _status(code), float(cost), known)
                for tid, t0, cost, known, code in _rows(cur)]
    finally:
        con.close()


@dataclass
class CostSummary:
    """What freeze needs of a window: every trajectory's cost (sorted), the running ones (trace
    id, cost; the costliest first) and how many have a cost no one priced."""

    costs: list[float]
    running: list[tuple[str, float]]
    unknown: int


def cost_summary(files: list[Path], start: datetime, end: datetime,
                 prices: dict[str, Any] | None = None) -> CostSummary:
    """window_costs reduced in DuckDB: one list of costs, not an object per trajectory."""
    from agentfire.blast.files_scan import connect

    if not files:
        return CostSummary([], [], 0)
    con = connect()
    try:
        _per_trace_table(con, files, start, end, prices)
        costs, unknown = con.execute(
            "SELECT coalesce(list(cost ORDER BY cost), []), count(*) FILTER (WHERE NOT known) FROM per").fetchone()
        running = con.execute(f"SELECT trace_id, cost FROM per WHERE {RUNNING_SQL} ORDER BY cost DESC, trace_id").fetchall()
        return CostSummary([float(c) for c in costs], [(t, float(c)) for t, c in running], int(unknown))
    finally:
        con.close()


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)
