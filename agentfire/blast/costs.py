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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from agentfire.blast.sql import Dialect

# What the aggregate reads (only these are parsed out of each JSON line).
COST_TYPES = {
    "id": "VARCHAR", "traceId": "VARCHAR", "type": "VARCHAR", "startTime": "VARCHAR", "endTime": "VARCHAR",
    "parentObservationId": "VARCHAR", "isRootObservation": "BOOLEAN", "level": "VARCHAR",
    "totalCost": "JSON", "costDetails": "JSON", "updatedAt": "VARCHAR",
    "model": "VARCHAR", "usageDetails": "JSON", "usage": "JSON",  # runbook prices: tokens x price
}
_NUM = "('UBIGINT', 'BIGINT', 'DOUBLE')"  # JSON numbers (isinstance(v, (int, float)) in _cost)
FETCH = 50_000


def cost_expr(total: str = "totalCost", details: str = "costDetails") -> str:
    """agentfire.trajectory._cost in SQL: totalCost when a number, else costDetails.total when a
    number, else the sum of costDetails' numeric values, else NULL (no cost)."""
    return (
        f"CASE WHEN json_type({total}) IN {_NUM} THEN CAST({total} AS DOUBLE) "
        f"WHEN json_type({details}) = 'OBJECT' THEN CASE "
        f"WHEN json_type({details}, '$.total') IN {_NUM} THEN CAST(json_extract({details}, '$.total') AS DOUBLE) "
        f"ELSE list_sum([CAST(v AS DOUBLE) FOR v IN map_values(CAST({details} AS MAP(VARCHAR, JSON))) "
        f"IF json_type(v) IN {_NUM}]) END END"
    )


def _falsy(j: str) -> str:
    """A JSON value Python reads as false (`x or y` takes y)."""
    return (f"({j} IS NULL OR json_type({j}) = 'NULL' OR CAST({j} AS VARCHAR) IN ('{{}}', '[]', '\"\"', 'false') "
            f"OR (json_type({j}) IN {_NUM} AND CAST({j} AS DOUBLE) = 0))")


def _int(j: str) -> str:
    """agentfire.trajectory._int of a JSON value: int(v) of a number, a bool or an integer string."""
    return (f"CASE WHEN json_type({j}) IN ('UBIGINT', 'BIGINT') THEN TRY_CAST({j} AS BIGINT) "
            f"WHEN json_type({j}) = 'DOUBLE' THEN TRY_CAST(trunc(CAST({j} AS DOUBLE)) AS BIGINT) "
            f"WHEN json_type({j}) = 'BOOLEAN' THEN CASE WHEN CAST({j} AS VARCHAR) = 'true' THEN 1 ELSE 0 END "
            f"WHEN json_type({j}) = 'VARCHAR' AND regexp_full_match(trim(json_extract_string({j}, '$')), '[+-]?[0-9_]+') "
            f"THEN TRY_CAST(replace(trim(json_extract_string({j}, '$')), '_', '') AS BIGINT) END")


def _tokens(u: str, *keys: str) -> str:
    """usage.get(k1, usage.get(k2, usage.get(k3))) as agentfire.trajectory._tokens reads it."""
    first, *rest = keys
    inner = f"json_extract({u}, '$.{rest[-1]}')"
    for k in reversed(rest[:-1]):
        inner = f"CASE WHEN json_exists({u}, '$.{k}') THEN json_extract({u}, '$.{k}') ELSE {inner} END"
    pick = f"CASE WHEN json_exists({u}, '$.{first}') THEN json_extract({u}, '$.{first}') ELSE {inner} END"
    return _int(f"(CASE WHEN json_type({u}) = 'OBJECT' THEN {pick} END)")


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


def _obs(source: str, prices: dict[str, Any]) -> str:
    """One row per observation: its own cost (_cost), else, for a model step with tokens, the
    runbook's price of them; `unpriced` when neither."""
    usage = f"CASE WHEN {_falsy('usageDetails')} THEN usage ELSE usageDetails END"
    return f"""SELECT trace_id, id, t, t_end, is_root, level, upd,
  CASE WHEN own IS NOT NULL OR is_root OR NOT generation OR (tin IS NULL AND tout IS NULL) THEN own
       ELSE {price_expr(prices)} END AS cost,
  (own IS NULL AND NOT is_root AND generation AND (tin IS NOT NULL OR tout IS NOT NULL)
   AND ({price_expr(prices)}) IS NULL) AS unpriced
FROM (
  SELECT traceId AS trace_id,
    CASE WHEN id IS NULL OR id = '' THEN uuid()::VARCHAR ELSE id END AS id,
    TRY_CAST(startTime AS TIMESTAMPTZ) AS t, TRY_CAST(endTime AS TIMESTAMPTZ) AS t_end,
    coalesce(isRootObservation, coalesce(parentObservationId, '') = '') AS is_root,
    upper(level) AS level, {cost_expr()} AS own, coalesce(updatedAt, '') AS upd,
    coalesce(upper(type) = 'GENERATION', false) AS generation, model,
    {_tokens(f"({usage})", "input", "prompt_tokens", "promptTokens")} AS tin,
    {_tokens(f"({usage})", "output", "completion_tokens", "completionTokens")} AS tout
  FROM {source}
  WHERE traceId IS NOT NULL AND traceId <> ''
)"""


def _per_trace(rows: str, start: datetime, end: datetime, extra: str = "") -> str:
    d = Dialect()
    never = "'infinity'::TIMESTAMPTZ"  # a root without a readable start sorts last (as as_of does)
    return f"""SELECT trace_id, min(t) AS start, coalesce(sum(cost), 0.0) AS cost,
  NOT coalesce(bool_or(unpriced), false) AS known,
  count(*) FILTER (WHERE is_root) AS roots,
  arg_min(t_end IS NULL, coalesce(t, {never})) FILTER (WHERE is_root) AS root_open,
  arg_min(coalesce(level, ''), coalesce(t, {never})) FILTER (WHERE is_root) AS root_level{extra}
FROM {rows}
GROUP BY trace_id
HAVING min(t) >= {d.ts(start)} AND min(t) < {d.ts(end)}"""


def query(source: str, start: datetime, end: datetime, prices: dict[str, Any] | None = None) -> str:
    """One pass: every trajectory that started in [start, end), and whether any of its rows is a
    versioned one (then `exact_query` recomputes it)."""
    return (f"WITH obs AS ({_obs(source, prices or {})})\n"
            + _per_trace("obs", start, end, ",\n  count(*) FILTER (WHERE upd <> '') AS versioned"))


def exact_query(source: str, start: datetime, end: datetime, prices: dict[str, Any] | None = None) -> str:
    """The trajectories in `versioned(trace_id)`: each observation id once, its newest version."""
    return f"""WITH obs AS ({_obs(source, prices or {})} WHERE trace_id IN (SELECT trace_id FROM versioned)),
newest AS (
  SELECT trace_id, id, arg_max(t, upd) AS t, arg_max(t_end, upd) AS t_end,
    arg_max(is_root, upd) AS is_root, arg_max(level, upd) AS level, arg_max(cost, upd) AS cost,
    arg_max(unpriced, upd) AS unpriced
  FROM obs GROUP BY trace_id, id
)
{_per_trace("newest", start, end)}"""


def _status(roots: int, root_open: Any, root_level: Any) -> str:
    if not roots or root_open:
        return "running"
    return "error" if str(root_level or "").upper() == "ERROR" else "finished"


def _rows(cur: Any) -> Iterator[tuple[Any, ...]]:
    while True:
        batch = cur.fetchmany(FETCH)
        if not batch:
            return
        yield from batch


def _per_trace_table(con: Any, files: list[Path], start: datetime, end: datetime, prices: dict[str, Any] | None) -> None:
    """TEMP TABLE per: one row per trajectory that started in the window (trace_id, start, cost,
    known, running), the versioned ones recomputed exactly. It stays in DuckDB."""
    import duckdb

    from agentfire.blast.files_scan import source

    src = source(con, files, types=COST_TYPES)
    make = "CREATE OR REPLACE TEMP TABLE raw AS "
    try:
        con.execute(make + query(src, start, end, prices))
    except duckdb.InvalidInputException as exc:
        if "json" not in str(exc).lower():
            raise
        src = src.replace("ignore_errors=false", "ignore_errors=true")  # torn lines: skipped
        con.execute(make + query(src, start, end, prices))
    running = "(roots = 0 OR root_open)"
    con.execute(f"CREATE OR REPLACE TEMP TABLE per AS SELECT trace_id, start, cost, known, {running} AS running, "
                "root_level FROM raw WHERE versioned = 0")
    (n,) = con.execute("SELECT count(*) FROM raw WHERE versioned > 0").fetchone()
    if n:
        con.execute("CREATE OR REPLACE TEMP TABLE versioned AS SELECT trace_id FROM raw WHERE versioned > 0")
        con.execute(f"INSERT INTO per SELECT trace_id, start, cost, known, {running}, root_level "
                    f"FROM ({exact_query(src, start, end, prices)})")
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
        cur = con.execute("SELECT trace_id, start, cost, known, running, root_level FROM per ORDER BY start, trace_id")
        return [WindowCost(tid, _utc(t0), "running" if running else _status(1, False, level), float(cost), known)
                for tid, t0, cost, known, running, level in _rows(cur)]
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
        running = con.execute("SELECT trace_id, cost FROM per WHERE running ORDER BY cost DESC, trace_id").fetchall()
        return CostSummary([float(c) for c in costs], [(t, float(c)) for t, c in running], int(unknown))
    finally:
        con.close()


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)
