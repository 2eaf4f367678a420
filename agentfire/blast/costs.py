"""Per-trajectory cost of a window over the local files store, as one DuckDB aggregate.

`freeze --to p50` needs, for every trajectory that started in the window, its summed cost and
whether it is still running: the same answers agentfire.trajectory.from_observations gives
(start = the earliest startTime of its observations; cost = the sum of each observation's cost,
read as trajectory._cost reads it; status from the earliest root), computed by DuckDB over the
store's JSON lines and Parquet files as blast scans them, never a parse of every trajectory.
Memory is the per-trajectory aggregate (a few numbers each), not the store.

Versions of one observation (rows sharing an id, told apart by `updatedAt`) count once, the
newest, as in from_observations: the trajectories holding such rows get a second, exact pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from agentfire.blast.sql import Dialect

# What the aggregate reads (only these are parsed out of each JSON line).
COST_TYPES = {
    "id": "VARCHAR", "traceId": "VARCHAR", "startTime": "VARCHAR", "endTime": "VARCHAR",
    "parentObservationId": "VARCHAR", "isRootObservation": "BOOLEAN", "level": "VARCHAR",
    "totalCost": "JSON", "costDetails": "JSON", "updatedAt": "VARCHAR",
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


@dataclass(frozen=True)
class WindowCost:
    trace_id: str
    start: datetime
    status: str  # running / finished / error
    cost_usd: float


def _obs(source: str) -> str:
    return f"""SELECT traceId AS trace_id,
  CASE WHEN id IS NULL OR id = '' THEN uuid()::VARCHAR ELSE id END AS id,
  TRY_CAST(startTime AS TIMESTAMPTZ) AS t, TRY_CAST(endTime AS TIMESTAMPTZ) AS t_end,
  coalesce(isRootObservation, coalesce(parentObservationId, '') = '') AS is_root,
  upper(level) AS level, {cost_expr()} AS cost, coalesce(updatedAt, '') AS upd
FROM {source}
WHERE traceId IS NOT NULL AND traceId <> ''"""


def _per_trace(rows: str, start: datetime, end: datetime, extra: str = "") -> str:
    d = Dialect()
    never = "'infinity'::TIMESTAMPTZ"  # a root without a readable start sorts last (as as_of does)
    return f"""SELECT trace_id, min(t) AS start, coalesce(sum(cost), 0.0) AS cost,
  count(*) FILTER (WHERE is_root) AS roots,
  arg_min(t_end IS NULL, coalesce(t, {never})) FILTER (WHERE is_root) AS root_open,
  arg_min(coalesce(level, ''), coalesce(t, {never})) FILTER (WHERE is_root) AS root_level{extra}
FROM {rows}
GROUP BY trace_id
HAVING min(t) >= {d.ts(start)} AND min(t) < {d.ts(end)}"""


def query(source: str, start: datetime, end: datetime) -> str:
    """One pass: every trajectory that started in [start, end), and whether any of its rows is a
    versioned one (then `exact_query` recomputes it)."""
    return (f"WITH obs AS ({_obs(source)})\n"
            + _per_trace("obs", start, end, ",\n  count(*) FILTER (WHERE upd <> '') AS versioned"))


def exact_query(source: str, start: datetime, end: datetime) -> str:
    """The trajectories in `versioned(trace_id)`: each observation id once, its newest version."""
    return f"""WITH obs AS ({_obs(source)} AND traceId IN (SELECT trace_id FROM versioned)),
newest AS (
  SELECT trace_id, id, arg_max(t, upd) AS t, arg_max(t_end, upd) AS t_end,
    arg_max(is_root, upd) AS is_root, arg_max(level, upd) AS level, arg_max(cost, upd) AS cost
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


def window_costs(files: list[Path], start: datetime, end: datetime) -> list[WindowCost]:
    """Every trajectory that started in [start, end) in these store files, ordered by start."""
    import duckdb

    from agentfire.blast.files_scan import connect, source

    if not files:
        return []
    con = connect()
    try:
        src = source(con, files, types=COST_TYPES)
        try:
            cur = con.execute(query(src, start, end))
        except duckdb.InvalidInputException as exc:
            if "json" not in str(exc).lower():
                raise
            src = src.replace("ignore_errors=false", "ignore_errors=true")  # torn lines: skipped
            cur = con.execute(query(src, start, end))
        out: dict[str, WindowCost] = {}
        versioned: list[str] = []
        for tid, t0, cost, roots, root_open, root_level, nver in _rows(cur):
            out[tid] = WindowCost(tid, _utc(t0), _status(roots, root_open, root_level), float(cost))
            if nver:
                versioned.append(tid)
        if versioned:
            con.execute("CREATE TEMP TABLE versioned(trace_id VARCHAR)")
            con.execute("INSERT INTO versioned SELECT unnest(?)", [versioned])
            for tid in versioned:
                del out[tid]
            for tid, t0, cost, roots, root_open, root_level in _rows(con.execute(exact_query(src, start, end))):
                out[tid] = WindowCost(tid, _utc(t0), _status(roots, root_open, root_level), float(cost))
    finally:
        con.close()
    return sorted(out.values(), key=lambda w: (w.start, w.trace_id))


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)
