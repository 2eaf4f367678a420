"""Cost grows with the hits, not with the store (#15): freeze's window aggregate, the sandbox's
refusal to seed into a store holding data."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from agentfire.providers.traces.files import FilesTraceStore, from_config
from agentfire.sandbox import seed_store

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
if not DATASETS.is_dir():  # a worktree under /work/wt/<name>: shared/ sits beside the checkouts
    DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def row(tid: str, oid: str, start: float | None, end: float | None = None, **kw: Any) -> dict[str, Any]:
    r = {"id": oid, "traceId": tid, "type": "GENERATION", "name": "llm",
         "parentObservationId": f"{tid}-root", "startTime": ts(start) if start is not None else None,
         "endTime": ts(end) if end is not None else None, "input": "{}", "output": "{}"}
    r.update(kw)
    return r


def root(tid: str, start: float, end: float | None, **kw: Any) -> dict[str, Any]:
    return row(tid, f"{tid}-root", start, end, **{"type": "AGENT", "name": "agent", "parentObservationId": None, **kw})


def edge_rows() -> list[dict[str, Any]]:
    """Every way a cost or a status is read: totalCost, costDetails.total, costDetails summed,
    a string cost (no cost), versions of one observation, no root, an ERROR root, an open root,
    a root with an empty parent id, trajectories before, across and after the window."""
    return [
        root("a", 10, 60), row("a", "a1", 11, 12, totalCost=0.25), row("a", "a2", 13, 14, totalCost=1),
        root("b", 20, 80), row("b", "b1", 21, 22, costDetails={"input": 0.01, "output": 0.02, "note": "x"}),
        row("b", "b2", 23, 24, costDetails={"total": 0.5, "input": 9.0}),
        row("b", "b3", 25, 26, totalCost="0.7"),  # not a number: no cost, as _cost reads it
        row("b", "b4", 27, 28, totalCost=True),  # JSON true is not a price (Python's bool is an int)
        root("c", 30, None), row("c", "c1", 31, 32, totalCost=0.3),  # still running
        root("d", 40, 50, level="ERROR"), row("d", "d1", 41, 42, totalCost=0.05),
        row("e", "e1", 45, 46, totalCost=0.4),  # no root (yet): running
        # one observation in two versions: the newer (updatedAt) wins, the older's cost is gone
        root("f", 50, 90), row("f", "f1", 51, 52, totalCost=9.0, updatedAt="2026-11-23T12:00:52Z"),
        row("f", "f1", 51, 53, totalCost=0.2, updatedAt="2026-11-23T12:00:53Z"),
        root("g", 55, 70, parentObservationId=""), row("g", "g1", 56, 57, totalCost=0.125),
        row("g", "g2", 58, 59, costDetails={"total": True, "input": 0.0625, "cached": False}),
        # started before the window (its late steps are inside it): not in the window
        root("h", -600, 100), row("h", "h1", 30, 31, totalCost=5.0),
        # started inside, runs past the end: in, with all of its cost
        root("i", 3590, 3700), row("i", "i1", 3595, 3650, totalCost=0.6), row("i", "i2", 3660, 3690, totalCost=0.4),
        root("j", 3600, 3610), row("j", "j1", 3601, 3602, totalCost=0.9),  # starts at the end: out
    ]


PRICES = {"gpt-4o*": {"input_per_million": 2.5, "output_per_million": 10.0},
          "claude-x": {"input_per_million": 3.0, "output_per_million": 15.0}}


def priced_rows() -> list[dict[str, Any]]:
    """Model steps the store left without a cost: runbook.yaml prices: prices their tokens
    (usageDetails, else usage; input/prompt_tokens/promptTokens), a model no price names leaves
    the trajectory's cost unknown."""
    gen = {"type": "GENERATION"}
    return [
        root("k", 100, 200), row("k", "k1", 101, 102, model="gpt-4o-mini", usageDetails={"input": 1000, "output": 500}, **gen),
        row("k", "k2", 103, 104, model="gpt-4o-mini", totalCost=0.5, usageDetails={"input": 9, "output": 9}, **gen),
        root("l", 110, 200), row("l", "l1", 111, 112, model="claude-x", usage={"prompt_tokens": 2000, "completion_tokens": 100}, **gen),
        root("m", 120, 200), row("m", "m1", 121, 122, model="mystery", usageDetails={"input": 10}, **gen),
        row("m", "m2", 123, 124, totalCost=0.25, **gen),
        root("n", 130, 200), row("n", "n1", 131, 132, model="gpt-4o", usageDetails={}, usage={"promptTokens": "300"}, **gen),
        row("n", "n2", 133, 134, model="gpt-4o", usageDetails={"output": 2.9}, **gen),
        row("n", "n3", 135, 136, model="mystery", **gen),  # no tokens: nothing to price, cost still known
        root("o", 140, 200), row("o", "o1", 141, 142, type="TOOL", name="lookup", usageDetails={"input": 5}),
    ]


def write(path: Path, rows: list[dict[str, Any]], extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra)
    return path


def as_tuples(items: list[Any]) -> list[tuple[str, datetime | None, str, float, bool]]:
    return [(s.trace_id, s.start, s.status, round(s.cost_usd, 9), getattr(s, "cost_known", True)) for s in items]


def test_window_aggregate_prices_model_steps_as_the_trajectory_does(tmp_path: Path) -> None:
    store = FilesTraceStore(write(tmp_path / "obs.jsonl", priced_rows()), prices=PRICES)
    end = T0 + timedelta(hours=1)
    got = as_tuples(store.window_costs(T0, end))
    assert got == as_tuples(store.list_trajectories_sync(T0, end))
    assert {t: (c, k) for t, _s, _st, c, k in got} == {
        "k": (0.5075, True),  # 1000 x 2.5 + 500 x 10 per million, and the store's own 0.5
        "l": (0.0075, True), "m": (0.25, False), "n": (0.00077, True), "o": (0.0, True),
    }
    unpriced = as_tuples(FilesTraceStore(store.path).window_costs(T0, end))
    assert [(t, k) for t, *_r, k in unpriced] == [("k", False), ("l", False), ("m", False), ("n", False), ("o", True)]


def test_window_aggregate_reads_costs_and_status_as_the_trajectory_does(tmp_path: Path) -> None:
    store = FilesTraceStore(write(tmp_path / "s" / "obs.jsonl", edge_rows(), extra="{torn line\n").parent)
    end = T0 + timedelta(hours=1)
    got = as_tuples(store.window_costs(T0, end))
    assert got == as_tuples(store.list_trajectories_sync(T0, end))
    assert {t: (st, c) for t, _s, st, c, _k in got} == {
        "a": ("finished", 1.25), "b": ("finished", 0.53), "c": ("running", 0.3), "d": ("error", 0.05),
        "e": ("running", 0.4), "f": ("finished", 0.2), "g": ("finished", 0.1875), "i": ("finished", 1.0),
    }


def window_edge_rows(at: float) -> list[dict[str, Any]]:
    """Trajectories around a window that starts `at` seconds after T0: the aggregate does the
    per-row JSON work (cost, tokens, the root's end) only for rows at or after the window's start
    or without a start, so every way a row can sit on either side of it is here."""
    gen = {"type": "GENERATION", "model": "gpt-4o"}
    return [
        # started before the window, its costly steps inside it: out, whatever they cost
        root("p", at - 5, at + 50), row("p", "p1", at + 1, at + 2, totalCost=7.0),
        # a root exactly at the start, its cost on the root itself: in
        root("q", at, at + 9, totalCost=0.5), row("q", "q1", at + 1, at + 2, costDetails={"input": 0.25, "output": 0.5}),
        # a step without a start (or an unreadable one) counts toward a trajectory in the window
        root("r", at + 1, at + 9), row("r", "r1", None, None, totalCost=0.75),
        row("r", "r2", at + 3, at + 4, totalCost=0.125, startTime="not a time"),
        # a root without a start: the trajectory starts at its first step, still running
        root("s", 0, None, startTime=None), row("s", "s1", at + 5, at + 6, costDetails={"total": 0.0625, "x": 9}),
        # two roots: the earliest one decides (open: running; the later ERROR one does not count)
        root("t", at + 20, None), root("t", at + 21, at + 30, id="t-root2", level="ERROR"),
        row("t", "t1", at + 22, at + 23, totalCost=1.5),
        root("u", at + 25, at + 40, level="ERROR"), row("u", "u1", at + 26, at + 27, totalCost=0.0078125),
        # an unpriced model step before the window (out) and one inside it (cost unknown)
        root("v", at - 30, at - 1), row("v", "v1", at - 29, at - 28, usageDetails={"input": 100}, **gen),
        root("w", at + 31, at + 39), row("w", "w1", at + 32, at + 33, usageDetails={"input": 1000, "output": 10}, **gen),
        row("w", "w2", at + 34, at + 35, usageDetails={"input": 5}, model="mystery", type="GENERATION"),
        # an older version of a step dated before the window: the newest version is what counts
        root("x", at + 41, at + 49), row("x", "x1", at - 100, at - 99, totalCost=3.0, updatedAt="2026-11-23T11:00:00Z"),
        row("x", "x1", at + 42, at + 43, totalCost=0.03125, updatedAt="2026-11-23T13:00:00Z"),
        # trajectories well after the start, one of them past the end
        root("y", at + 60, at + 70), row("y", "y1", at + 61, at + 62, totalCost=0.25),
        root("z", at + 3599, at + 3700), row("z", "z1", at + 3650, at + 3660, totalCost=2.0),
        root("zz", at + 3600, at + 3601, totalCost=4.0),  # at the window's end: out
    ]


@pytest.mark.parametrize("at", [0, 600])
def test_the_window_start_prunes_rows_without_changing_an_answer(tmp_path: Path, at: float) -> None:
    """The aggregate skips the JSON work of rows before the window's start: the same trajectories,
    costs, statuses, unknown costs and p50 as the full parse, for trajectories across the start,
    steps without a start, roots without one, versions on both sides of it."""
    from agentfire.budget import percentile

    store = FilesTraceStore(write(tmp_path / "obs.jsonl", window_edge_rows(at)), prices={"gpt-4o": PRICES["gpt-4o*"]})
    start = T0 + timedelta(seconds=at)
    end = start + timedelta(hours=1)
    want = store.list_trajectories_sync(start, end)
    got = as_tuples(store.window_costs(start, end))
    assert got == as_tuples(want)
    assert {t: (st, c, k) for t, _s, st, c, k in got} == {
        "q": ("finished", 1.25, True), "r": ("finished", 0.875, True), "s": ("running", 0.0625, True),
        "t": ("running", 1.5, True), "u": ("error", 0.0078125, True), "w": ("finished", 0.0026, False),
        "x": ("finished", 0.03125, True), "y": ("finished", 0.25, True), "z": ("finished", 2.0, True),
    }
    summary = store.cost_summary(start, end)
    assert summary.costs == sorted(c for *_r, c, _k in got) and summary.unknown == 1
    assert percentile(summary.costs, 50) == percentile(sorted(w.cost_usd for w in want), 50) == 0.25
    assert summary.running == [("t", 1.5), ("s", 0.0625)]


def test_a_store_with_updated_at_on_every_row_recomputes_only_repeated_ids(tmp_path: Path) -> None:
    """Langfuse's exports carry updatedAt on every row: the exact pass (a second scan) runs for
    the trajectories where two rows share an id, not for all of them; the same answers as the
    full parse either way."""
    duckdb = pytest.importorskip("duckdb")
    from agentfire.blast import costs

    def upd(r: dict[str, Any], at: str | None = None) -> dict[str, Any]:
        return {**r, "updatedAt": at or r["startTime"] or "2026-11-23T12:30:00Z"}

    rows = [upd(r) for r in edge_rows() if r["traceId"] != "f"] + [
        # one step in two versions, the first without updatedAt: the newer one counts
        upd(root("f", 50, 90)), row("f", "f1", 51, 52, totalCost=9.0),
        upd(row("f", "f1", 51, 53, totalCost=0.2), "2026-11-23T12:00:53Z"),
        # an older version dated before the window: the trajectory is still in it
        upd(root("k", 100, 200)), upd(row("k", "k1", -100, -99, totalCost=3.0), "2026-11-23T11:00:00Z"),
        upd(row("k", "k1", 101, 102, totalCost=0.5), "2026-11-23T13:00:00Z"),
    ]
    path = write(tmp_path / "s" / "obs.jsonl", rows)
    plain = write(tmp_path / "p" / "obs.jsonl", [r for r in edge_rows() if r["traceId"] != "f"])
    store = FilesTraceStore(path.parent)
    end = T0 + timedelta(hours=1)
    got = as_tuples(store.window_costs(T0, end))
    assert got == as_tuples(store.list_trajectories_sync(T0, end))
    assert {t: c for t, _s, _st, c, _k in got if t in ("f", "k")} == {"f": 0.2, "k": 0.5}
    con = duckdb.connect()
    assert costs.carries_versions(con, [path]) and not costs.carries_versions(con, [plain])
    costs._per_trace_table(con, [path], T0, end, None)  # what window_costs and cost_summary run
    recomputed = con.execute("SELECT trace_id FROM versioned ORDER BY trace_id").fetchall()
    assert recomputed == [("f",), ("k",)]  # not the other trajectories, though every row has updatedAt


@pytest.mark.parametrize("scenario", ["wrong_recipient", "runaway_loop", "papered_error"])
def test_window_aggregate_matches_the_full_parse_on_a_seeded_store(tmp_path: Path, scenario: str) -> None:
    seed_store(tmp_path, scenario=scenario, traces=300, seed=5, now=T0)
    store = FilesTraceStore(tmp_path)
    for hours in (1, 6, 48):
        start = T0 - timedelta(hours=hours)
        want = store.list_trajectories_sync(start, T0)
        assert want and as_tuples(store.window_costs(start, T0)) == as_tuples(want)
        summary = store.cost_summary(start, T0)  # what freeze reads: the same, reduced in DuckDB
        assert summary.costs == pytest.approx(sorted(w.cost_usd for w in want))
        assert sorted(summary.running) == pytest.approx(sorted((w.trace_id, w.cost_usd) for w in want
                                                               if w.status == "running"))
        assert [c for _t, c in summary.running] == sorted((c for _t, c in summary.running), reverse=True)


def _tau_airline_store(root: Path) -> tuple[Path, datetime, datetime]:
    """The 200 real tau-bench airline runs and their golden traces as a JSON-lines store in
    `root`, and a window holding them all (the test skips without ../shared/datasets)."""
    real = DATASETS / "tau-airline" / "observations.jsonl"
    if not real.is_file():
        pytest.skip(f"{real} is not here")
    root.mkdir(parents=True)
    data = root / "observations.jsonl"
    shutil.copy(real, data)
    return data, datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("source", ["sandbox", "tau-airline"])
def test_a_parquet_store_serves_trajectories_as_its_json_lines(tmp_path: Path, source: str) -> None:
    """blast finds hits in Parquet files; triage, capture and the trajectory list must find the
    same trajectories there: a store as one Parquet file (times as TIMESTAMP WITH TIME ZONE)
    reads as the same trajectories, window and costs as its JSON lines (the seeded incident, and
    the 200 real tau-bench airline runs with their golden traces when ../shared/datasets is
    here); a trajectory whose rows are split between a JSON-lines file and a Parquet file reads
    whole; a Parquet file DuckDB cannot read is a named problem, the other files still read."""
    import duckdb

    if source == "sandbox":
        res = seed_store(tmp_path / "json", scenario="wrong_recipient", traces=300, seed=5, now=T0)
        data, start, end = res.data_file, T0 - timedelta(hours=6), T0
        picked = [f["trace_id"] for f in res.truth["failing"]][:3]
    else:
        data, start, end = _tau_airline_store(tmp_path / "json")
        picked = []
    pq = tmp_path / "pq"
    pq.mkdir()
    duckdb.sql(f"COPY (SELECT * REPLACE (CAST(startTime AS TIMESTAMPTZ) AS startTime, "
               f"CAST(endTime AS TIMESTAMPTZ) AS endTime) FROM read_json('{data}', format='newline_delimited')) "
               f"TO '{pq / 'export.parquet'}' (FORMAT PARQUET)")
    js, ps = FilesTraceStore(tmp_path / "json"), FilesTraceStore(pq)
    want = js.list_trajectories_sync(start, end)
    assert len(want) > 100 and as_tuples(ps.list_trajectories_sync(start, end)) == as_tuples(want)

    def steps(t: Any) -> list[tuple[Any, ...]]:
        return [(s.index, s.kind, s.name, s.input, s.output, s.start, s.level) for s in t.steps]

    picked += [w.trace_id for w in want[:3]]
    for tid in picked:
        a, b = js.get_trajectory_sync(tid), ps.get_trajectory_sync(tid)
        assert (b.status, b.user_id, b.start, b.cost_usd) == (a.status, a.user_id, a.start, a.cost_usd)
        assert steps(b) == steps(a) and steps(a) and b.problems == a.problems
    # one trajectory's rows split over both formats
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    tid = picked[0]
    mine = [r for r in rows if r["traceId"] == tid]
    split = tmp_path / "split"
    write(split / "a.jsonl", mine[::2])
    src = write(tmp_path / "half.jsonl", mine[1::2])
    duckdb.sql(f"COPY (SELECT * REPLACE (CAST(startTime AS TIMESTAMPTZ) AS startTime) "
               f"FROM read_json('{src}', format='newline_delimited')) TO '{split / 'b.parquet'}' (FORMAT PARQUET)")
    (split / "torn.parquet").write_bytes(b"PAR1 not a parquet file")
    got = FilesTraceStore(split).get_trajectory_sync(tid)
    assert steps(got) == steps(js.get_trajectory_sync(tid))
    assert any("torn.parquet" in p and "DuckDB could not read it" in p for p in got.problems)


def _written_by(writer: str, data: Path, target: Path) -> None:
    """A JSON-lines store as a data pipeline writes it to Parquet: pandas (times parsed to
    timestamp[us, tz=UTC], objects as structs, large strings) or Arrow's own JSON reader (its
    inferred types: ISO times it can read as timestamps, objects as structs); zstd row groups
    of 500 rows either way."""
    import pyarrow.json
    import pyarrow.parquet

    target.mkdir(parents=True)
    if writer == "pandas":
        import pandas as pd

        df = pd.read_json(data, lines=True, dtype=False)
        for col in ("startTime", "endTime"):
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        df.to_parquet(target / "export.parquet", engine="pyarrow", row_group_size=500, compression="zstd")
    else:
        table = pyarrow.json.read_json(data)
        pyarrow.parquet.write_table(table, target / "export.parquet", row_group_size=500, compression="zstd")


@pytest.mark.parametrize("writer", ["pandas", "arrow"])
@pytest.mark.parametrize("source", ["sandbox", "tau-airline"])
def test_a_parquet_store_written_by_pandas_or_arrow_reads_as_its_json_lines(
        tmp_path: Path, source: str, writer: str) -> None:
    """Stores are exported to Parquet by pandas and Arrow far more often than by DuckDB (the
    other tests' writer): their types (large strings, microsecond UTC timestamps or the ones
    Arrow infers, structs for metadata and token usage) must not change an answer. blast (the
    seeded incident's own signature and broad ones), the trajectories triage, capture and
    `traces` read, and freeze's window costs are the same as from the JSON lines: the seeded
    incident, and the 200 real tau-bench airline runs when ../shared/datasets is here."""
    from agentfire.blast import files_scan, from_flags, resolve
    from tests.test_blast_scenarios import truth_signature

    if source == "sandbox":
        res = seed_store(tmp_path / "json", scenario="wrong_recipient", traces=300, seed=5, now=T0)
        data, start, end = res.data_file, T0 - timedelta(hours=6), T0 + timedelta(seconds=1)
        sigs = [truth_signature(res.truth["signature"]), from_flags(tool="*", metadata=["channel=web"]),
                from_flags(tool="*", model="gpt*")]
    else:
        data, start, end = _tau_airline_store(tmp_path / "json")
        sigs = [from_flags(tool="book_reservation"), from_flags(tool="cancel_reservation", args=["reservation_id exists"]),
                from_flags(tool="get_reservation_details", then=["cancel_reservation"])]
    sigs += [from_flags(tool="*"), from_flags(level="ERROR"), from_flags(tool="*", then=["*"])]
    _written_by(writer, data, tmp_path / "pq")
    window = resolve(from_=start.isoformat(), to=end.isoformat())
    for sig in sigs:
        want, got = files_scan.scan(tmp_path / "json", sig, window), files_scan.scan(tmp_path / "pq", sig, window)
        assert got.complete and not got.warnings, (got.gaps, got.warnings)
        # the real runs' store (the window holding all of it, row groups of minutes): its matching
        # rows are located by row; the sandbox's 500-row groups span 1.5 h each: its times are read
        assert got.stats.located_by_row == (source == "tau-airline"), sig.describe()
        assert _found(got) == _found(want), sig.describe()
        assert (got.user_ids, sorted(got.still_open_ids)) == (want.user_ids, sorted(want.still_open_ids))
        assert {h.trace_id: h.hit_at for h in got.hits} == {h.trace_id: h.hit_at for h in want.hits}
    assert len(_found(files_scan.scan(tmp_path / "pq", sigs[0], window))) > 0
    js, ps = FilesTraceStore(tmp_path / "json"), FilesTraceStore(tmp_path / "pq")
    trajectories = js.list_trajectories_sync(start, end)
    assert len(trajectories) > 100
    assert as_tuples(ps.list_trajectories_sync(start, end)) == as_tuples(trajectories)
    assert as_tuples(ps.window_costs(start, end)) == as_tuples(js.window_costs(start, end))
    for t in trajectories[:5]:
        a, b = js.get_trajectory_sync(t.trace_id), ps.get_trajectory_sync(t.trace_id)
        assert (b.status, b.user_id, b.start, b.cost_usd, b.problems) == (a.status, a.user_id, a.start, a.cost_usd, a.problems)
        assert [(s.index, s.kind, s.name, s.input, s.output, s.start, s.level) for s in b.steps] == \
               [(s.index, s.kind, s.name, s.input, s.output, s.start, s.level) for s in a.steps]


def test_window_aggregate_matches_the_full_parse_on_real_traces(tmp_path: Path) -> None:
    data = DATASETS / "tau-airline" / "observations.jsonl"
    if not data.is_file():
        pytest.skip(f"{data} is not here")
    store = FilesTraceStore(data)
    start, end = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc)
    want = store.list_trajectories_sync(start, end)
    assert len(want) == 400  # 200 trajectories and their golden traces
    assert as_tuples(store.window_costs(start, end)) == as_tuples(want)


def test_window_aggregate_reads_parquet_beside_the_json_lines(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    rows = edge_rows()
    store_dir = tmp_path / "s"
    write(store_dir / "a.jsonl", [r for r in rows if r["traceId"] < "e"])
    staged = write(tmp_path / "staged.jsonl", [r for r in rows if r["traceId"] >= "e"])
    duckdb.sql(f"COPY (SELECT * FROM read_json_auto('{staged}')) TO '{store_dir / 'b.parquet'}' (FORMAT PARQUET)")
    whole = FilesTraceStore(write(tmp_path / "whole.jsonl", rows))
    end = T0 + timedelta(hours=1)
    assert as_tuples(FilesTraceStore(store_dir).window_costs(T0, end)) == as_tuples(whole.list_trajectories_sync(T0, end))


def test_freeze_p50_never_parses_a_trajectory(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The distribution comes from the aggregate: building a Trajectory per trajectory (the
    full parse that held 1M observations in 2 GB) would fail here."""
    from agentfire import budget, trajectory
    from agentfire.config import load_runbook

    now = datetime.now(timezone.utc).replace(microsecond=0)
    rows = []
    for i, cost in enumerate([0.1, 0.2, 0.3, 0.4, 5.0]):
        t = -1200 + i
        rows += [root(f"t{i}", t, None if i == 4 else t + 30), row(f"t{i}", f"t{i}-g", t + 1, t + 2, totalCost=cost)]
    shifted = [{**r, **{k: (datetime.fromisoformat(r[k].replace("Z", "+00:00")) - T0 + now).isoformat()
                        for k in ("startTime", "endTime") if r[k]}} for r in rows]
    write(sandbox / ".agentfire/traces/mine.jsonl", shifted)

    def boom(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("freeze parsed every trajectory")

    monkeypatch.setattr(trajectory, "from_observations", boom)
    monkeypatch.setattr("agentfire.providers.traces.files.from_observations", boom)
    dist = budget.cost_distribution(load_runbook(sandbox / "runbook.yaml"), 3600, now=now)
    assert dist.n == 5 and dist.pct("p50") == 0.3 and dist.running == [("t4", 5.0)]
    assert dist.above(1.0) == [("t4", 5.0)] and dist.source.startswith("files:")


# --- the sandbox never seeds into a store holding data ---------------------------------------


@pytest.mark.parametrize("name", ["export.parquet", "part/obs.parquet", "empty.jsonl", "wrong_recipient.jsonl"])
def test_a_store_holding_any_data_is_never_seeded(tmp_path: Path, name: str) -> None:
    from agentfire.config import load_runbook
    from agentfire.errors import UsageError

    repo_runbook = Path(__file__).resolve().parents[1] / "runbook.yaml"
    shutil.copy(repo_runbook, tmp_path / "runbook.yaml")
    rb = load_runbook(tmp_path / "runbook.yaml")
    store = rb.resolve_path(rb.traces.path)
    f = store / name
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b"" if name == "empty.jsonl" else b"PAR1 not really")
    before = sorted(p.name for p in store.rglob("*"))
    assert from_config(rb.traces, rb).path == store  # first use: no seeding
    assert sorted(p.name for p in store.rglob("*")) == before
    with pytest.raises(UsageError, match="did not write"):  # nor by `agentfire sandbox seed`
        seed_store(store, scenario="runaway_loop", traces=40)
    assert sorted(p.name for p in store.rglob("*")) == before


def test_the_sandbox_adds_scenarios_to_its_own_store(tmp_path: Path) -> None:
    seed_store(tmp_path, scenario="wrong_recipient", traces=40)
    seed_store(tmp_path, scenario="runaway_loop", traces=40)  # its own files are not foreign
    seed_store(tmp_path, scenario="wrong_recipient", traces=40, seed=9)  # re-seeding replaces
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["runaway_loop.jsonl", "wrong_recipient.jsonl"]


def test_sandbox_seed_cli_refuses_a_store_with_parquet(sandbox: Path, cli) -> None:
    store = sandbox / ".agentfire/traces"
    store.mkdir(parents=True)
    (store / "real.parquet").write_bytes(b"PAR1")
    r = cli("sandbox", "seed", "--scenario", "runaway_loop", "--traces", "40")
    assert r.exit_code == 2 and "did not write" in " ".join(r.stderr.split())
    assert [p.name for p in store.iterdir()] == ["real.parquet"]


# --- the benchmark fakes answer in their configured latency -----------------------------------


def _latencies(base_url: str, path: str, headers: dict[str, str], n: int = 15) -> list[float]:
    """Whole answers (headers and body) on one keep-alive connection, as the providers use it,
    timed with a plain socket: what the fake does, without an HTTP library's own wake-up cost
    (httpx adds 2-5 ms after a 100 ms wait on this machine, more when it is loaded)."""
    import socket
    import time
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    head = f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (head + "\r\n").encode()
    out = []
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        for _ in range(n):
            t = time.perf_counter()
            sock.sendall(request)
            got = b""
            while b"\r\n\r\n" not in got:
                got += sock.recv(65536) or b""
            top, _, body = got.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in top.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:  # the body as a second segment is what waited for the ACK
                body += sock.recv(65536) or b""
            out.append(time.perf_counter() - t)
            assert top.split()[1] == b"200", got[:300]
    return sorted(out)


def _ideal_server(delay: float) -> str:
    """The ideal of what the fakes should be: an HTTP server that reads a request, waits `delay`
    and answers in one write with TCP_NODELAY. Measured beside a fake, it is this machine's own
    round trip for such an answer (on this VM time.sleep and two thread wake-ups add 2-4 ms)."""
    import socket
    import threading
    import time

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, _, buf = buf.partition(b"\r\n\r\n")
                    time.sleep(delay)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}"


def assert_latency(measure: Any, want: float) -> None:
    """The fake's answers (`measure()`: sorted seconds) beside the ideal server's on this
    machine: the fastest within 5 ms of the ideal's (and never more than 5 ms early), the median
    under the ideal's + 25 ms. A delayed ACK adds ~40 ms to every keep-alive answer (fastest ~90
    ms for 50 ms, ~140 ms for 100 ms). One more try when the first is off: a shared machine
    sometimes adds scheduling delay to a whole run."""
    for attempt in (1, 2):
        got = measure()
        ideal = _latencies(_ideal_server(want), "/", {}, n=len(got))
        shown = (f"fake {[round(x * 1000, 1) for x in got]} ms, "
                 f"ideal {[round(x * 1000, 1) for x in ideal]} ms")
        ok = (got[0] >= want - 0.005 and got[0] - ideal[0] <= 0.005
              and got[len(got) // 2] < ideal[len(ideal) // 2] + 0.025)
        if ok or attempt == 2:
            break
    assert got[0] >= want - 0.005, shown
    assert got[0] - ideal[0] <= 0.005, shown
    assert got[len(got) // 2] < ideal[len(ideal) // 2] + 0.025, shown


def test_the_langfuse_fake_answers_in_its_configured_latency() -> None:
    """Headers and body went out as two writes: each keep-alive answer then waited for the
    client's delayed ACK (~40 ms), and the "50 ms" fake answered in ~90 ms."""
    import base64

    from tests.fakes.langfuse import FakeLangfuse

    rows = [root("a", 0, 10), row("a", "a1", 1, 2, totalCost=0.1)]
    with FakeLangfuse(rows=rows, latency=0.05) as fake:
        auth = base64.b64encode(f"{fake.public_key}:{fake.secret_key}".encode()).decode()
        assert_latency(lambda: _latencies(fake.base_url, "/api/public/v2/observations?traceId=a",
                                          {"Authorization": f"Basic {auth}"}), 0.050)


def test_the_unleash_fake_answers_in_its_configured_latency() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.Popen([sys.executable, str(REPO / "bench/fake_unleash.py"), "--envs", "2",
                             "--delay-ms", "100", "--token", "tok"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("PORT "), line
        assert_latency(lambda: _latencies(f"http://127.0.0.1:{int(line.split()[1])}",
                                          "/api/admin/projects/default/features/agent.enabled/environments/env-01",
                                          {"Authorization": "tok"}, n=9), 0.100)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- blast: memory follows the hits -----------------------------------------------------------


@pytest.fixture(scope="module")
def blast_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    from tests.test_blast import synthetic_rows, write_store

    rows = synthetic_rows()
    return write_store(tmp_path_factory.mktemp("store") / "obs.jsonl", rows), rows


def _blast_window(days: float = 0) -> Any:
    from agentfire.blast import resolve
    from tests.test_blast import NOW, _ts

    return resolve(from_=_ts(NOW - (timedelta(days=days) if days else timedelta(hours=6))), to=_ts(NOW))


def _found(result: Any) -> dict[str, tuple[Any, ...]]:
    return {h.trace_id: (h.user_id, h.status, h.step_index, h.tool, h.args) for h in result.hits}


def _reference_hits(rows: list[dict[str, Any]], sig: Any, window: Any) -> tuple[dict[str, tuple[Any, ...]],
                                                                               dict[str, datetime],
                                                                               dict[str, datetime | None]]:
    """The Python reference over whole trajectories: per hit trajectory (user, status, step
    index, tool, input), its hit's time and its earliest root's start (None: no root)."""
    from agentfire.trajectory import from_observations, parse_time
    from tests.test_blast import NOW

    by_trace: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_trace.setdefault(r["traceId"], []).append(r)
    want: dict[str, tuple[Any, ...]] = {}
    hit_at: dict[str, datetime] = {}
    root_start: dict[str, datetime | None] = {}
    for tid, rs in by_trace.items():
        traj = from_observations(tid, rs, as_of=NOW)
        step = sig.match_step(traj, window=(window.start, window.end))
        if step is not None:
            want[tid] = (traj.user_id, traj.status, step.index, step.name, step.input)
            hit_at[tid] = step.start
            roots = [parse_time(r["startTime"]) for r in rs if r["parentObservationId"] is None]
            root_start[tid] = min(roots) if roots else None  # type: ignore[type-var]
    return want, hit_at, root_start


def _mixed_store(root_dir: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The synthetic store plus trajectories made to catch a one-statement scan out: hits
    straddling the window (a match before its start and one inside; one only before; one only
    at its end, which is out), open roots, no root, an ERROR root; every trajectory's rows spread
    over two JSON-lines files and a Parquet file that DuckDB writes with real TIMESTAMP times."""
    import zlib

    import duckdb

    from tests.test_blast import NOW, _ts, synthetic_rows

    rows = synthetic_rows(n_traces=120, seed=11)
    edge = NOW - timedelta(hours=6)

    def obs(tid: str, k: int, at: datetime, name: str = "send_email", to: str = "landlord@rent.example",
            **kw: Any) -> dict[str, Any]:
        return {"id": f"{tid}-{k}", "traceId": tid, "type": "TOOL", "name": name, "parentObservationId": f"{tid}-root",
                "startTime": _ts(at), "endTime": _ts(at + timedelta(seconds=1)), "input": json.dumps({"to": to}),
                "output": "{}", "level": "DEFAULT", "userId": f"edge-{tid}", "model": None, "metadata": None, **kw}

    def top(tid: str, at: datetime, end: datetime | None, level: str = "DEFAULT") -> dict[str, Any]:
        return {**obs(tid, 0, at, name="agent", to=""), "id": f"{tid}-root", "type": "AGENT",
                "parentObservationId": None, "endTime": _ts(end) if end else None, "level": level}

    s = timedelta(seconds=1)
    rows += [  # straddles: a match 10 s before the window and one 5 s inside (the hit), still open
        top("edge-straddle", edge - 30 * s, None), obs("edge-straddle", 1, edge - 20 * s, name="read_inbox"),
        obs("edge-straddle", 2, edge - 10 * s), obs("edge-straddle", 3, edge + 5 * s),
        obs("edge-straddle", 4, edge + 6 * s),
        # only a match before the window: no hit; only at the window's end: no hit (the end is out)
        top("edge-before", edge - 60 * s, edge + 60 * s), obs("edge-before", 1, edge - 50 * s),
        top("edge-at-end", NOW - 5 * s, NOW + 60 * s), obs("edge-at-end", 1, NOW),
        # the first match inside the window, on the window's first millisecond: a hit, ERROR root
        top("edge-first-ms", edge - 5 * s, edge + 30 * s, level="ERROR"), obs("edge-first-ms", 1, edge),
        obs("edge-first-ms", 2, edge + 1 * s),
        # no root yet (running), the hit in the last second of the window
        obs("edge-rootless", 1, NOW - 1 * s, name="read_inbox"), obs("edge-rootless", 2, NOW - s / 2),
    ]
    parts: dict[str, list[dict[str, Any]]] = {"a.jsonl": [], "b.jsonl": [], "c.parquet": []}
    for i, r in enumerate(rows):  # each trajectory's rows land in all three files
        parts[list(parts)[(i + zlib.crc32(r["traceId"].encode())) % 3]].append(r)
    for name, part in parts.items():
        target = root_dir / name
        if name.endswith(".jsonl"):
            write(target, part)
            continue
        tmp = write(root_dir / "parquet-src.json", part)
        duckdb.sql(f"COPY (SELECT * FROM read_json('{tmp}', format='newline_delimited')) TO '{target}' (FORMAT PARQUET)")
        tmp.unlink()
    (types,) = duckdb.sql(f"SELECT typeof(startTime) FROM '{root_dir / 'c.parquet'}' LIMIT 1").fetchall()
    assert types[0].startswith("TIMESTAMP")  # Parquet's own times, not text
    return root_dir, rows


@pytest.mark.parametrize("flags", [dict(tool="send_email", args=["to~landlord"]), dict(tool="read_inbox"),
                                   dict(tool="send_*"), dict(level="ERROR"),
                                   dict(tool="read_inbox", then=["send_email"], args=["to~landlord"])],
                         ids=lambda f: json.dumps(f))
def test_one_statement_scan_of_mixed_files_agrees_with_the_reference(
        tmp_path: Path, flags: dict[str, Any]) -> None:
    """The hits and their trajectories' status in one statement (pass one a materialized CTE,
    the join with it pass two's only filter) over JSON lines and Parquet together give the
    Python reference's hits, counts, distinct users, still-running ids and first/last hit."""
    from agentfire.blast import files_scan, from_flags

    store, rows = _mixed_store(tmp_path / "store")
    sig, window = from_flags(**flags), _blast_window()
    want, hit_at, _roots = _reference_hits(rows, sig, window)
    got = files_scan.scan(store, sig, window)
    assert got.complete and not got.warnings and got.stats.pages == 3
    assert _found(got) == want and len(want) > 3
    assert {h.trace_id: h.hit_at for h in got.hits} == hit_at
    s = got.summary_json()
    assert s["trajectories"] == len(got.hits) == len(want)
    assert got.user_ids == sorted({v[0] for v in want.values() if v[0]})
    assert s["distinct_users"] == len(got.user_ids)
    running = sorted(t for t, v in want.items() if v[1] == "running")
    assert sorted(got.still_open_ids) == running and (s["still_open_count"] > 0) == bool(running)
    assert (got.first_hit, got.last_hit) == (min(hit_at.values()), max(hit_at.values()))
    if flags.get("tool") == "send_email":  # the edge trajectories are where they should be
        assert {"edge-straddle", "edge-first-ms"} <= set(want) and not {"edge-before", "edge-at-end"} & set(want)
        assert want["edge-straddle"][1] == "running" and want["edge-first-ms"][1] == "error"
        assert want["edge-straddle"][2] == 3  # read_inbox and the match before the window came first
    if flags.get("tool") == "read_inbox" and not flags.get("then"):
        assert want["edge-rootless"][1] == "running"


@pytest.mark.parametrize("flags", [dict(tool="read_inbox", then=["send_email"], args=["to~landlord"]),
                                   dict(tool="read_inbox", then=["read_inbox", "read_inbox"]),
                                   dict(tool="*", then=["send_*"], level="DEFAULT")],
                         ids=lambda f: json.dumps(f))
def test_a_sequence_with_many_candidates_reads_lean_marks_and_agrees_with_the_reference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: dict[str, Any]) -> None:
    """Past LEAN_SEQUENCE_CANDIDATES trajectories whose last step matched (a loop's signature on
    a busy store: every trajectory), a sequence's marks carry no input and the hits' status and
    rows are read apart, so memory holds a few numbers per candidate: the hits, users, statuses,
    step indexes, tools, inputs and times are the Python reference's and the one-read path's,
    over JSON lines and Parquet together."""
    from agentfire.blast import files_scan, from_flags

    store, rows = _mixed_store(tmp_path / "store")
    sig, window = from_flags(**flags), _blast_window()
    want, hit_at, _roots = _reference_hits(rows, sig, window)
    one_read = files_scan.scan(store, sig, window)
    lean_runs = _count_calls(monkeypatch, files_scan, "sequence_marks_query")
    monkeypatch.setattr(files_scan, "LEAN_SEQUENCE_CANDIDATES", 0)
    lean = files_scan.scan(store, sig, window)
    assert lean_runs == [1] and lean.complete and not lean.warnings
    assert _found(lean) == _found(one_read) == want and len(want) > 3
    assert {h.trace_id: h.hit_at for h in lean.hits} == hit_at
    assert (lean.user_ids, sorted(lean.still_open_ids)) == (one_read.user_ids, sorted(one_read.still_open_ids))


@pytest.mark.parametrize("flags", [dict(tool="get_user_details", then=["get_reservation_details", "cancel_reservation"]),
                                   dict(tool="get_reservation_details", then=["get_reservation_details"] * 2),
                                   dict(tool="search_direct_flight", then=["update_reservation_flights"])],
                         ids=lambda f: json.dumps(f))
def test_sequences_over_real_runs_agree_with_the_reference_lean_or_in_one_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: dict[str, Any]) -> None:
    """The 200 real tau-bench airline runs and their golden traces (skips without
    ../shared/datasets): sequences real agents make (look the user up, read a reservation,
    cancel it; read reservations again and again; search, then change the flights) give the
    Python reference's hits, users, statuses, step indexes, tools, inputs and hit times, read in
    one read and lean."""
    from agentfire.blast import files_scan, from_flags, resolve

    data, start, end = _tau_airline_store(tmp_path / "store")
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    sig, window = from_flags(**flags), resolve(from_=start.isoformat(), to=end.isoformat())
    want, hit_at, _roots = _reference_hits(rows, sig, window)
    assert len(want) > 3
    threshold = files_scan.LEAN_SEQUENCE_CANDIDATES
    for lean in (False, True):
        monkeypatch.setattr(files_scan, "LEAN_SEQUENCE_CANDIDATES", 0 if lean else threshold)
        got = files_scan.scan(tmp_path / "store", sig, window)
        assert got.complete and not got.warnings, lean
        assert _found(got) == want, lean
        assert {h.trace_id: h.hit_at for h in got.hits} == hit_at, lean


def _count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """A list that gains an item each time module.name is called (it still runs)."""
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(module, name, counted)
    return calls


def _parquet_store(root_dir: Path, rows: list[dict[str, Any]], files: int = 3) -> Path:
    """The rows as Parquet files of real TIMESTAMP times, each file in time order (as an export
    writes them), a trajectory's rows spread over all of them."""
    import zlib

    import duckdb

    root_dir.mkdir(parents=True, exist_ok=True)
    parts: list[list[dict[str, Any]]] = [[] for _ in range(files)]
    for i, r in enumerate(rows):
        parts[(i + zlib.crc32(r["traceId"].encode())) % files].append(r)
    for k, part in enumerate(parts):
        tmp = write(root_dir / f"src-{k}.json", part)
        duckdb.sql(f"COPY (SELECT * FROM read_json('{tmp}', format='newline_delimited') ORDER BY startTime) "
                   f"TO '{root_dir / f'part-{k}.parquet'}' (FORMAT PARQUET, ROW_GROUP_SIZE 2048)")
        tmp.unlink()
    return root_dir


def _edge_rows() -> list[dict[str, Any]]:
    """Trajectories at the edges of the status pass's time bound: one that started two hours
    before the first hit (read again over the whole store), a step that starts before its root
    (clock skew, inside the margin), a root exported open and then closed, one without a root."""
    from tests.test_blast import NOW, _ts

    def row(tid: str, k: Any, at: datetime, name: str = "send_email", parent: str | None = "root",
            **kw: Any) -> dict[str, Any]:
        return {"id": f"{tid}-{k}", "traceId": tid, "type": "TOOL" if parent else "AGENT", "name": name,
                "parentObservationId": f"{tid}-root" if parent else None, "startTime": _ts(at),
                "endTime": _ts(at + timedelta(seconds=1)), "input": json.dumps({"to": "landlord@rent.example"}),
                "output": "{}", "level": "DEFAULT", "userId": f"u-{tid}", "model": None, "metadata": None, **kw}

    m = timedelta(minutes=1)
    long_start, skew_root, versioned = NOW - 8 * 60 * m, NOW - 3 * 60 * m, NOW - 2 * 60 * m
    return [
        row("edge-long", "root", long_start, name="agent", parent=None, endTime=None),
        row("edge-long", 1, long_start + m, name="read_inbox"), row("edge-long", 2, NOW - 90 * m),
        row("edge-skew", "root", skew_root, name="agent", parent=None),
        row("edge-skew", 1, skew_root - m / 2, name="read_inbox"), row("edge-skew", 2, skew_root + m / 6),
        row("edge-versioned", "root", versioned, name="agent", parent=None, endTime=None),
        row("edge-versioned", "root", versioned, name="agent", parent=None, level="ERROR"),
        row("edge-versioned", 1, versioned + m / 6),
        row("edge-rootless", 1, NOW - 30 * m, name="read_inbox"), row("edge-rootless", 2, NOW - 29 * m),
    ]


@pytest.mark.parametrize("flags", [dict(tool="send_email", args=["to~landlord"]), dict(tool="read_inbox"),
                                   dict(level="ERROR"), dict(tool="*"),
                                   dict(tool="read_inbox", then=["send_email"], args=["to~landlord"])],
                         ids=lambda f: json.dumps(f))
def test_parquet_status_pass_reads_a_bounded_span_and_agrees_with_the_reference(
        tmp_path: Path, flags: dict[str, Any]) -> None:
    """An all-Parquet store: pass two reads from 15 minutes before the first hit to the last one
    (not the whole store), and the trajectories reaching outside it are read again, so the hits,
    statuses, users and step indexes are the Python reference's over whole trajectories (a
    sequence reads its candidates' status with their marks, whole)."""
    from agentfire.blast import files_scan, from_flags
    from agentfire.blast.files_scan import ROOT_SKEW_MS, STATUS_LOOKBACK_MS
    from tests.test_blast import synthetic_rows

    rows = synthetic_rows(n_traces=120, seed=5) + _edge_rows()
    store = _parquet_store(tmp_path / "store", rows)
    sig, window = from_flags(**flags), _blast_window()
    want, hit_at, root_start = _reference_hits(rows, sig, window)
    got = files_scan.scan(store, sig, window)
    assert got.complete and not got.warnings
    assert _found(got) == want and len(want) > 3
    assert {h.trace_id: h.hit_at for h in got.hits} == hit_at
    spans = got.stats.status_spans
    if flags.get("then"):  # a sequence reads its candidates' status with their marks, over the whole store
        assert spans is None and got.stats.reread == 0
        return
    assert spans  # the bounded read ran
    look = timedelta(milliseconds=STATUS_LOOKBACK_MS)
    ms = timedelta(milliseconds=1)
    for t in hit_at.values():  # every hit's lookback was read
        assert any(a <= t - look and t < b for a, b in spans), t
    assert spans[0][0] <= min(hit_at.values()) - look and spans[-1][1] <= max(hit_at.values()) + ms
    # read again: no root yet, or a root that is not a clock-skew margin inside its hit's lookback
    reread = {t for t, s in root_start.items()
              if s is None or s < hit_at[t] - look + timedelta(milliseconds=ROOT_SKEW_MS)}
    assert got.stats.reread == len(reread)
    if flags.get("tool") == "send_email":
        assert {"edge-long", "edge-skew", "edge-versioned"} <= set(want) and "edge-long" in reread
        assert want["edge-long"][1:3] == ("running", 2) and want["edge-skew"][2] == 2
        assert want["edge-versioned"][1] == "error"
    doc = got.stats.to_json()
    assert doc["status_read"]["reread_whole_store"] == len(reread)


def test_parquet_status_pass_skips_row_groups_outside_its_span(tmp_path: Path) -> None:
    """A store with last month's export beside today's: the incident's blast reads none of last
    month's data pages (here deliberately unreadable: DuckDB fails on any of them it decodes),
    in pass one (the window) and in pass two (its time bound; the hit ids alone rule out no row
    group, as trace ids are random)."""
    import hashlib

    from agentfire.blast import files_scan, from_flags
    from tests.test_blast import synthetic_rows

    def hexed(rs: list[dict[str, Any]], salt: str, shift: timedelta) -> list[dict[str, Any]]:
        out = []
        for r in rs:
            tid = hashlib.md5((salt + r["traceId"]).encode()).hexdigest()  # W3C-shaped trace ids
            out.append({**r, "traceId": tid, "id": f"{salt}{r['id']}",
                        "parentObservationId": r["parentObservationId"] and f"{salt}{r['parentObservationId']}",
                        "startTime": _shift(r["startTime"], shift), "endTime": r["endTime"] and _shift(r["endTime"], shift)})
        return out

    rows = synthetic_rows(n_traces=100, seed=3)
    rooted = {r["traceId"] for r in rows if r["parentObservationId"] is None}
    # no trajectory without a root: one would be read again over the whole store (the other
    # test); over 50 hits: with fewer, DuckDB itself prunes by the hit ids (Parquet bloom filters)
    today = [r for salt in ("new", "now") for r in hexed([r for r in rows if r["traceId"] in rooted], salt,
                                                        timedelta(0))]
    old = hexed(synthetic_rows(n_traces=200, seed=4), "old", -timedelta(days=30))
    store = _parquet_store(tmp_path / "store", today, files=1)
    _parquet_store(tmp_path / "old", old, files=1)
    old_file = store / "last-month.parquet"
    shutil.move(str(tmp_path / "old" / "part-0.parquet"), old_file)
    sig, window = from_flags(tool="*"), _blast_window()
    want = _found(files_scan.scan(store, sig, window))
    assert len(want) > 50
    _scramble_data_pages(old_file)
    got = files_scan.scan(store, sig, window)
    assert got.complete, got.gaps
    assert _found(got) == want and got.stats.reread == 0
    # the file is unreadable wherever it is decoded: a read of the whole store fails
    got_all = files_scan.scan(store, sig, _blast_window(days=60))
    assert not got_all.complete and "DuckDB could not scan" in got_all.gaps[0].reason


def test_parquet_status_pass_reads_only_around_sparse_hits(tmp_path: Path) -> None:
    """Hits five hours apart with a busy store between them: pass two reads the two hits'
    lookbacks, not the hours between (whose status-only columns are unreadable here; pass one
    reads the others, as it must)."""
    import hashlib

    from agentfire.blast import files_scan, from_flags
    from tests.test_blast import NOW, _ts

    def traj(tid: str, at: datetime, tool: str) -> list[dict[str, Any]]:
        tid = hashlib.md5(tid.encode()).hexdigest()
        base = {"traceId": tid, "output": "{}", "level": "DEFAULT", "userId": f"u-{tid[:6]}", "model": None,
                "metadata": None, "input": json.dumps({"to": "landlord@rent.example"})}
        return [{**base, "id": f"{tid}-root", "type": "AGENT", "name": "agent", "parentObservationId": None,
                 "startTime": _ts(at), "endTime": _ts(at + timedelta(seconds=9))},
                {**base, "id": f"{tid}-1", "type": "TOOL", "name": tool, "parentObservationId": f"{tid}-root",
                 "startTime": _ts(at + timedelta(seconds=2)), "endTime": _ts(at + timedelta(seconds=3))}]

    early, late = NOW - timedelta(hours=5, minutes=50), NOW - timedelta(minutes=20)
    hits = [r for k in range(3) for at in (early, late) for r in traj(f"hit-{at}-{k}", at + timedelta(seconds=k), "send_email")]
    between = [r for k in range(600) for r in traj(f"busy-{k}", early + timedelta(minutes=30, seconds=25 * k), "search")]
    store = _parquet_store(tmp_path / "store", hits, files=1)
    _parquet_store(tmp_path / "mid", between, files=1)
    mid = store / "between.parquet"
    shutil.move(str(tmp_path / "mid" / "part-0.parquet"), mid)
    sig, window = from_flags(tool="send_email", args=["to~landlord"]), _blast_window()
    want = _found(files_scan.scan(store, sig, window))
    assert len(want) == 6
    _scramble_data_pages(mid, columns=("endTime", "userId", "level"))
    got = files_scan.scan(store, sig, window)
    assert got.complete, got.gaps
    assert _found(got) == want and got.stats.reread == 0 and len(got.stats.status_spans) == 2
    # pass two over the whole store decodes the scrambled columns and fails
    got_all = files_scan.scan(store, from_flags(tool="search"), window)
    assert not got_all.complete and "DuckDB could not scan" in got_all.gaps[0].reason


def _time_ordered_store(root_dir: Path, rows: list[dict[str, Any]], files: int = 3,
                        bucket: timedelta = timedelta(minutes=10)) -> Path:
    """The rows as an export job writes Parquet with Arrow: each file in time order, a row group
    per ten minutes (its statistics then bound its rows' times closely), real UTC timestamps; a
    trajectory's rows spread over all the files (the same row numbers in each)."""
    import zlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from agentfire.trajectory import parse_time

    root_dir.mkdir(parents=True, exist_ok=True)
    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema([(k, ts if k in ("startTime", "endTime") else pa.string())
                        for k in ("id", "traceId", "type", "name", "parentObservationId", "startTime", "endTime",
                                  "input", "output", "level", "userId", "model", "metadata")])
    parts: list[list[dict[str, Any]]] = [[] for _ in range(files)]
    for i, r in enumerate(rows):
        parts[(i + zlib.crc32(r["traceId"].encode())) % files].append(r)
    for k, part in enumerate(parts):
        buckets: dict[int, list[dict[str, Any]]] = {}
        for r in part:
            start = parse_time(r["startTime"]) if r["startTime"] else None
            # a row without a start joins the first bucket (a row group of only NULL times has no statistics)
            key = int(start.timestamp() // bucket.total_seconds()) if start else -1
            buckets.setdefault(key, []).append({
                **{c: r.get(c) for c in schema.names}, "startTime": start,
                "endTime": parse_time(r["endTime"]) if r.get("endTime") else None,
                "metadata": json.dumps(r["metadata"]) if r.get("metadata") is not None else None})
        if -1 in buckets:
            buckets[min(b for b in buckets if b != -1)] += buckets.pop(-1)
        with pq.ParquetWriter(root_dir / f"part-{k}.parquet", schema) as out:
            for key in sorted(buckets):
                out.write_table(pa.Table.from_pylist(
                    sorted(buckets[key], key=lambda r: (r["startTime"] is None, r["startTime"] or 0)), schema=schema))
    return root_dir


def _located_edge_rows() -> list[dict[str, Any]]:
    """What pass one cannot rule out when it locates rows without their times and parents: a
    root that matches the step (alone, before a step that matches, after a step of a sequence's
    first), a match without a start before one with, two matches at the same millisecond."""
    from tests.test_blast import NOW, _ts

    def row(tid: str, k: Any, at: datetime | None, name: str = "send_email", to: str = "landlord@rent.example",
            parent: bool = True, typ: str = "TOOL") -> dict[str, Any]:
        return {"id": f"{tid}-{k}", "traceId": tid, "type": typ, "name": name,
                "parentObservationId": f"{tid}-root" if parent else None, "startTime": at and _ts(at),
                "endTime": at and _ts(at + timedelta(seconds=1)), "input": json.dumps({"to": to}), "output": "{}",
                "level": "DEFAULT", "userId": f"u-{tid}", "model": None, "metadata": None}

    at, s = NOW - timedelta(hours=2), timedelta(seconds=1)
    return [
        row("loc-root-tool", "root", at, parent=False), row("loc-root-tool", 1, at + s, name="read_inbox"),
        row("loc-root-then", "root", at, parent=False), row("loc-root-then", 1, at + s, name="read_inbox"),
        row("loc-root-then", 2, at + 2 * s),
        row("loc-no-start", "root", at, name="agent", parent=False, typ="AGENT"), row("loc-no-start", 1, None),
        row("loc-no-start", 2, at + 3 * s, name="read_inbox"), row("loc-no-start", 3, at + 4 * s, to="the landlord"),
        # a root that matches a sequence's last step after a step of its first (clock skew)
        row("loc-root-late", "root", at + s, parent=False), row("loc-root-late", 1, at, name="read_inbox"),
        row("loc-tie", "root", at, name="agent", parent=False, typ="AGENT"),
        row("loc-tie", 1, at + s, to="b.landlord@x"), row("loc-tie", 2, at + s, to="a.landlord@x"),
        row("loc-tie", 3, at, name="read_inbox"),
    ]


@pytest.mark.parametrize("flags", [dict(tool="send_email", args=["to~landlord"]), dict(tool="read_inbox"),
                                   dict(level="ERROR"), dict(tool="*"), dict(tool="send_*"),
                                   dict(tool="read_inbox", then=["send_email"], args=["to~landlord"]),
                                   dict(tool="*", then=["send_*"], level="DEFAULT"),
                                   dict(tool="read_inbox", then=["read_inbox"])],
                         ids=lambda f: json.dumps(f))
def test_a_parquet_store_inside_the_window_locates_hits_by_row_and_agrees_with_the_reference(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: dict[str, Any]) -> None:
    """A time-ordered Parquet store wholly inside the window: pass one locates the matching rows
    (a sequence: its last step's) by file and row without reading a time or a parent, pass two
    picks each hit there (a sequence: without reading the inputs of the last step). The hits,
    users, statuses, step indexes, tools, inputs and hit times are the Python reference's and
    those of the scan that reads the times in pass one; roots that match the step, matches
    without a start and ties at one millisecond included, over three files whose row numbers
    repeat. A window that does not hold the whole store, too many candidates or too many bytes of
    their inputs read the times."""
    from agentfire.blast import files_scan, from_flags, resolve
    from tests.test_blast import NOW, _ts, synthetic_rows

    rows = synthetic_rows(n_traces=120, seed=5) + _edge_rows() + _located_edge_rows()
    store = _time_ordered_store(tmp_path / "store", rows)
    sig = from_flags(**flags)
    window = resolve(from_=_ts(NOW - timedelta(hours=9)), to=_ts(NOW + timedelta(hours=5)))
    want, hit_at, _roots = _reference_hits(rows, sig, window)
    got = files_scan.scan(store, sig, window)
    assert got.stats.located_by_row and got.complete and not got.warnings
    assert got.stats.to_json()["located_by_row"] is True
    monkeypatch.setattr(files_scan._Scan, "_row_groups_fit", lambda self: False)
    timed = files_scan.scan(store, sig, window)
    assert (got.user_ids, sorted(got.still_open_ids)) == (timed.user_ids, sorted(timed.still_open_ids))
    assert _found(got) == _found(timed) and len(want) > 3
    assert {h.trace_id: h.hit_at for h in got.hits} == hit_at
    # two matches at one millisecond: SQL takes the lesser (name, input), as it never reads the
    # ids; the Python reference takes the first exported
    def untied(hits: dict[str, Any]) -> dict[str, Any]:
        return {t: v for t, v in hits.items() if t != "loc-tie"}

    assert untied(_found(got)) == untied(want)
    if flags.get("tool") == "send_email":
        assert want["loc-root-then"][2] == 2 and want["loc-no-start"][2:] == (2, "send_email", {"to": "the landlord"})
        assert _found(got)["loc-tie"][4] == {"to": "a.landlord@x"} and "loc-root-tool" not in want
        assert "edge-long" in want and got.stats.reread >= 1  # its root started hours before the hit
    if flags.get("then") == ["send_email"]:
        assert _found(got)["loc-tie"][4] == {"to": "a.landlord@x"} and "loc-root-late" not in want
    monkeypatch.undo()
    # the store runs from eight hours before NOW to four after
    starts_inside = resolve(from_=_ts(NOW - timedelta(hours=6)), to=_ts(NOW + timedelta(hours=5)))
    ends_inside = resolve(from_=_ts(NOW - timedelta(hours=9)), to=_ts(NOW))
    for other_window, max_located, max_bytes in ((starts_inside, files_scan.MAX_LOCATED, files_scan.MAX_LOCATED_BYTES),
                                                 (ends_inside, files_scan.MAX_LOCATED, files_scan.MAX_LOCATED_BYTES),
                                                 (window, 2, files_scan.MAX_LOCATED_BYTES), (window, 10**6, 100)):
        monkeypatch.setattr(files_scan, "MAX_LOCATED", max_located)
        monkeypatch.setattr(files_scan, "MAX_LOCATED_BYTES", max_bytes)
        other = files_scan.scan(store, sig, other_window)
        assert other.complete and untied(_found(other)) == untied(_reference_hits(rows, sig, other_window)[0])
        # a window holding a part of the store, too many candidates, or too many bytes of their
        # inputs: the times are read in pass one
        assert not other.stats.located_by_row and "located_by_row" not in other.stats.to_json()


def test_fewest_spans_closes_the_smallest_gaps() -> None:
    from agentfire.blast.files_scan import _fewest_spans

    spans = [(0, 1), (5, 6), (7, 8), (20, 21)]
    assert _fewest_spans(spans, 4) == spans
    assert _fewest_spans(spans, 3) == [(0, 1), (5, 8), (20, 21)]
    assert _fewest_spans(spans, 2) == [(0, 8), (20, 21)]
    assert _fewest_spans(spans, 1) == [(0, 21)]


def _shift(ts: str, by: timedelta) -> str:
    from agentfire.trajectory import iso, parse_time

    return iso(parse_time(ts) + by)


def _scramble_data_pages(path: Path, columns: tuple[str, ...] | None = None) -> None:
    """Overwrite the column chunks of a Parquet file (of these columns, or all), its footer,
    schema and statistics intact: DuckDB fails on any page of them it decodes."""
    import duckdb

    only = f"WHERE path_in_schema IN ({', '.join(repr(c) for c in columns)})" if columns else ""
    chunks = duckdb.sql(f"SELECT coalesce(dictionary_page_offset, data_page_offset), total_compressed_size "
                        f"FROM parquet_metadata('{path}') {only}").fetchall()
    assert chunks
    data = bytearray(path.read_bytes())
    for first, size in chunks:
        data[first:first + size] = bytes((i * 7 + 13) % 251 for i in range(size))
    path.write_bytes(bytes(data))


def test_out_of_memory_rescans_on_one_thread_and_completes(
        blast_store: tuple[Path, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    from agentfire.blast import files_scan, from_flags

    path, _rows = blast_store
    sig, window = from_flags(tool="send_email", args=["to~landlord"]), _blast_window()
    want = _found(files_scan.scan(path, sig, window))
    real = files_scan._Scan.run
    threads: list[int] = []

    def run(self: Any) -> Any:
        (n,) = self.con.execute("SELECT current_setting('threads')").fetchone()
        threads.append(int(n))
        if int(n) > 1:
            raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of size 256.0 KiB")
        return real(self)

    monkeypatch.setattr(files_scan._Scan, "run", run)
    monkeypatch.setattr(files_scan.os, "cpu_count", lambda: 2)
    got = files_scan.scan(path, sig, window)
    if threads[0] == 1:
        pytest.skip("DuckDB runs one thread on this machine: no fallback to take")
    assert threads[-1] == 1 and got.complete and _found(got) == want
    assert any("ran out of memory" in w and "one thread" in w for w in got.warnings)


def test_a_sequence_out_of_memory_in_one_read_is_read_lean_and_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sequence under the lean threshold whose marks' inputs still outgrow the memory limit
    (big tool arguments): the scan reads it again lean, says so, and the hits are the
    reference's."""
    import duckdb

    from agentfire.blast import files_scan, from_flags

    store, rows = _mixed_store(tmp_path / "store")
    sig, window = from_flags(tool="read_inbox", then=["send_email"], args=["to~landlord"]), _blast_window()
    want, _hit_at, _roots = _reference_hits(rows, sig, window)
    one_read = files_scan._Scan._sequence_hits
    tries: list[bool] = []

    def sequence_hits(self: Any, create: str) -> bool:
        tries.append(self.lean)
        if not self.lean:
            raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of size 256.0 KiB")
        return one_read(self, create)

    monkeypatch.setattr(files_scan._Scan, "_sequence_hits", sequence_hits)
    got = files_scan.scan(store, sig, window)
    assert tries == [False, True] and got.complete and _found(got) == want and len(want) > 3
    assert any("ran out of memory" in w and "sequence" in w for w in got.warnings)


def test_out_of_memory_on_one_thread_too_is_a_named_gap(
        blast_store: tuple[Path, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    from agentfire.blast import files_scan, from_flags

    def run(self: Any) -> Any:
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")

    monkeypatch.setattr(files_scan._Scan, "run", run)
    monkeypatch.setenv("AGENTFIRE_DUCKDB_MEMORY", "300MB")
    got = files_scan.scan(blast_store[0], from_flags(tool="send_email"), _blast_window())
    assert not got.complete and "300MB" in got.gaps[0].reason and "AGENTFIRE_DUCKDB_MEMORY" in got.gaps[0].reason


def test_a_line_longer_than_the_json_reader_buffer_is_still_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfire.blast import files_scan, from_flags
    from agentfire.blast.sql import MAX_OBJECT

    # a 33 MB line takes DuckDB past the default 768 MB cap (the scan then names the gap and the
    # env to raise): this store's on-call has raised it
    monkeypatch.setenv("AGENTFIRE_DUCKDB_MEMORY", "1500MB")

    big = {"to": "landlord@example.com", "body": "x" * (2 * MAX_OBJECT + 1024)}  # past the buffer
    rows = [root("big", 10, 60), row("big", "big-1", 11, 12, type="TOOL", name="send_email", input=json.dumps(big)),
            root("small", 20, 60), row("small", "small-1", 21, 22, type="TOOL", name="send_email",
                                       input=json.dumps({"to": "landlord@example.com"}))]
    path = write(tmp_path / "obs.jsonl", rows)
    from agentfire.blast import resolve

    window = resolve(from_=ts(0), to=ts(3600))
    got = files_scan.scan(path, from_flags(tool="send_email", args=["to~landlord"]), window)
    assert got.complete and not got.warnings
    assert sorted(h.trace_id for h in got.hits) == ["big", "small"]
    assert next(h for h in got.hits if h.trace_id == "big").args["body"] == big["body"]


def test_the_memory_limit_comes_from_the_machine_unless_the_env_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfire.blast import files_scan

    monkeypatch.delenv("AGENTFIRE_DUCKDB_MEMORY", raising=False)
    monkeypatch.setattr(files_scan, "machine_memory", lambda: 4 << 30)
    assert files_scan.memory_limit() == f"{int((4 << 30) * 0.10) >> 20}MB"  # a tenth
    monkeypatch.setattr(files_scan, "machine_memory", lambda: 24 << 30)
    assert files_scan.memory_limit() == "768MB"  # the ceiling
    monkeypatch.setattr(files_scan, "machine_memory", lambda: 1 << 30)
    assert files_scan.memory_limit() == "256MB"  # the floor
    monkeypatch.setenv("AGENTFIRE_DUCKDB_MEMORY", "700MB")
    assert files_scan.memory_limit() == "700MB"
    con = files_scan.connect()
    try:
        (limit,) = con.execute("SELECT current_setting('memory_limit')").fetchone()
    finally:
        con.close()
    assert limit.replace(" ", "").upper().startswith(("700MB", "667.5MIB", "667MIB", "700.0MB"))
    real = files_scan.machine_memory()
    assert real is None or real > 0


# --- start-up: what can wait ------------------------------------------------------------------


@pytest.mark.parametrize("argv, name", [
    (["status"], "status"), (["--config", "x.yaml", "--incident", "inc-1", "kill", "--region", "all"], "kill"),
    (["--json", "sandbox", "seed"], "sandbox"), (["--help"], None), ([], None), (["--actor", "kill"], None),
])
def test_the_invoked_command_is_found_after_the_global_options(argv: list[str], name: str | None) -> None:
    from agentfire.cli import _invoked

    assert _invoked(argv) == name


def test_main_builds_only_the_invoked_command_and_restores_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import typer.main

    from agentfire.cli import app, main

    built: list[list[str]] = []
    real = typer.main.get_group

    def get_group(t: Any) -> Any:
        group = real(t)
        built.append(sorted(group.commands))
        return group

    monkeypatch.setattr(typer.main, "get_group", get_group)
    before = (list(app.registered_commands), list(app.registered_groups))
    monkeypatch.setattr(sys, "argv", ["agentfire", "--json", "status", "--help"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0 and built == [["status"]]
    assert (app.registered_commands, app.registered_groups) == before
    monkeypatch.setattr(sys, "argv", ["agentfire", "kil"])  # unknown: every command, and a suggestion
    with pytest.raises(SystemExit):
        main()
    assert len(built[-1]) > 10 and "kill" in built[-1]


def test_commands_and_groups_still_run_as_processes(sandbox: Path) -> None:
    from tests.conftest import run_agentfire

    r = run_agentfire("--json", "status")
    assert r.exit_code == 0 and json.loads(r.stdout)
    r = run_agentfire("sandbox", "scenarios")
    assert r.exit_code == 0 and "runaway_loop" in r.stdout
    r = run_agentfire("kil")
    assert r.exit_code == 2 and "kill" in r.stderr


def test_the_runbook_is_read_without_pydantic_plugin_discovery(sandbox: Path) -> None:
    """Discovery reads the entry points of every installed distribution at each start."""
    import subprocess
    import sys

    code = (
        "import importlib.metadata as m, os, sys\n"
        "calls = []\n"
        "real = m.distributions\n"
        "m.distributions = lambda *a, **k: (calls.append(1), real(*a, **k))[1]\n"
        "from agentfire.config import load_runbook\n"
        "load_runbook(sys.argv[1])\n"
        "print(len(calls), os.environ.get('PYDANTIC_DISABLE_PLUGINS'))\n"
    )
    from tests.conftest import REPO

    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    env.pop("PYDANTIC_DISABLE_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", code, str(sandbox / "runbook.yaml")], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "None"]  # no scan, and the environment as it was


@pytest.mark.parametrize("flags", [dict(tool="read_inbox"), dict(level="ERROR"),
                                   dict(tool="read_inbox", then=["send_email"], args=["to~landlord"])],
                         ids=lambda f: json.dumps(f))
def test_hits_kept_in_duckdb_sum_up_and_stream_as_the_python_objects_do(
        blast_store: tuple[Path, list[dict[str, Any]]], flags: dict[str, Any]) -> None:
    """A files-store blast keeps its hits in DuckDB (HitRows): the counts, distinct users,
    still-open ids and first/last hit computed there, and the hits streamed as JSON text, equal
    what the Python objects give (and the Python reference matcher)."""
    import dataclasses

    from agentfire.blast import files_scan, from_flags
    from tests.test_blast import reference

    path, rows = blast_store
    sig, window = from_flags(**flags), _blast_window()
    want = reference(rows, sig, window)
    got = files_scan.scan(path, sig, window)
    assert isinstance(got.hits, files_scan.HitRows) and len(want) > 3
    plain = dataclasses.replace(got, hits=list(got.hits))  # the per-object path of every other store
    assert _found(got) == _found(plain) == want
    assert got.user_ids == plain.user_ids == sorted({u for u, *_ in want.values() if u})
    running = {t for t, (_u, status, *_r) in want.items() if status == "running"}
    assert set(got.still_open_ids) == running and got.still_open_ids == plain.still_open_ids
    assert (got.first_hit, got.last_hit) == (plain.first_hit, plain.last_hit) and got.first_hit is not None
    assert got.summary_json() == plain.summary_json()
    assert got.summary_json()["trajectories"] == len(want)
    # the streamed document is the object path's document, hit for hit and in the same order
    parts: list[str] = []
    got.write_json(parts.append, {"kill_switch": {"x": 1}})
    doc = json.loads("".join(parts))
    assert doc["kill_switch"] == {"x": 1}
    assert {k: v for k, v in doc.items() if k != "kill_switch"} == json.loads(json.dumps(plain.to_json(), default=str))
    assert [json.loads(t) for t in got.hit_json_lines()] == [h.to_json() for h in plain.hits]
    # slices and indexes read single rows in hit order
    assert [h.trace_id for h in got.hits[1:3]] == [h.trace_id for h in plain.hits[1:3]]
    assert got.hits[-1].trace_id == plain.hits[-1].trace_id


def test_streamed_blast_json_redacts_secrets_also_as_json_escapes_them(
        blast_store: tuple[Path, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch) -> None:
    from agentfire import secrets
    from agentfire.blast import files_scan, from_flags

    monkeypatch.setattr(secrets, "_SEEN", {"landlord"})
    got = files_scan.scan(blast_store[0], from_flags(tool="send_email", args=["to~landlord"]), _blast_window())
    parts: list[str] = []
    got.write_json(parts.append, indent=2)
    text = "".join(parts)
    assert "landlord" not in text and "***" in text and json.loads(text)["trajectories"] == len(got.hits) > 0
    monkeypatch.setattr(secrets, "_SEEN", {'tok"en\\x'})
    assert secrets.redact_json_text(json.dumps({"a": 'say tok"en\\x now'})) == '{"a": "say *** now"}'


def test_hits_kept_in_duckdb_write_the_csv_the_hit_objects_write(
        blast_store: tuple[Path, list[dict[str, Any]]]) -> None:
    """--out FILE.csv from the hits DuckDB keeps (times formatted there, no Hit object) is byte
    for byte the CSV the Hit objects give."""
    import dataclasses

    from agentfire.blast import files_scan, from_flags
    from agentfire.blast.result import render_out

    for flags in (dict(tool="read_inbox"), dict(tool="send_email", args=["to~landlord"])):
        got = files_scan.scan(blast_store[0], from_flags(**flags), _blast_window())
        assert isinstance(got.hits, files_scan.HitRows) and len(got.hits) > 0
        plain = dataclasses.replace(got, hits=list(got.hits))
        fast, slow = render_out(got, Path("a.csv")), render_out(plain, Path("a.csv"))
        assert fast == slow and fast.count(b"\n") == len(got.hits) + 1


@pytest.mark.parametrize("layout", ["missing", "empty-dir", "txt-only", "empty-jsonl", "nested-parquet", "a-file"])
def test_blast_counts_a_store_as_holding_data_as_the_store_provider_does(tmp_path: Path, layout: str) -> None:
    """blast checks for data itself (the provider module is imported only to seed): the same
    answer as the provider's check, so a store with data is never seeded by either."""
    from agentfire.blast.files_scan import holds_data
    from agentfire.providers.traces.files import _has_data

    path = tmp_path / "store"
    if layout != "missing" and layout != "a-file":
        path.mkdir()
    if layout == "txt-only":
        (path / "notes.txt").write_text("x")
    if layout == "empty-jsonl":
        (path / "obs.jsonl").write_text("")
    if layout == "nested-parquet":
        (path / "2026" / "11").mkdir(parents=True)
        (path / "2026" / "11" / "obs.parquet").write_bytes(b"PAR1")
    if layout == "a-file":
        path.write_text("{}\n")
    assert holds_data(path) == _has_data(path) == (layout in ("empty-jsonl", "nested-parquet", "a-file"))


def test_blast_over_a_store_with_data_starts_without_the_store_provider(sandbox: Path) -> None:
    """The files store's provider module (asyncio, the trajectory parser) is imported by a blast
    only to seed an empty sandbox store: a blast of a store holding data runs without it, and a
    blast of the empty sandbox store still seeds it and finds the seeded incident."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import json, sys\n"
        "from agentfire.config import load_runbook\n"
        "from agentfire.blast import from_flags, resolve, run\n"
        "rb = load_runbook(sys.argv[1])\n"
        "r = run(rb, from_flags(tool='*'), resolve(since='3650d'))\n"
        "print(json.dumps([len(r.hits), 'agentfire.providers.traces.files' in sys.modules]))\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    rb = str(sandbox / "runbook.yaml")

    def blast() -> list[Any]:
        out = subprocess.run([sys.executable, "-c", code, rb], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    hits, imported = blast()  # empty: seeded through the provider
    assert hits > 0 and imported and any((sandbox / ".agentfire" / "traces").rglob("*.jsonl"))
    again, imported = blast()  # holding data now: the same hits, no provider
    assert again == hits and not imported


def test_blast_reads_a_runbook_validated_before_without_pydantic(sandbox: Path, tmp_path: Path) -> None:
    """A blast's scan reads the runbook's fields only: once these bytes validated, the next blast
    reads them from agentfire.runbook's cache (no agentfire.config) and finds the same hits,
    users and still-open ids; its repeatable --arg needs no TypeAdapter: no pydantic at all."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import json, runpy, sys\n"
        "sys.argv = ['agentfire', 'blast', '--tool', 'send_email', '--arg', 'to exists', '--since', '3650d', '--json']\n"
        "try:\n"
        "    runpy.run_module('agentfire', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(['agentfire.config' in sys.modules, 'pydantic' in sys.modules,\n"
        "                  sorted(m for m in sys.modules if m == 'rich' or m.startswith(('rich.', 'agentfire.cli.')))]),\n"
        "      file=sys.stderr)\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "AGENTFIRE_CACHE_DIR": str(tmp_path / "cache"),
           "AGENTFIRE_CONFIG": str(sandbox / "runbook.yaml")}

    def blast() -> tuple[dict[str, Any], list[bool]]:
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=sandbox)
        doc = json.loads(p.stdout)
        return ({k: doc[k] for k in ("trajectories", "distinct_users", "still_open_count", "hits")},
                json.loads(p.stderr.strip().splitlines()[-1]))

    first, (config, _pyd, _mods) = blast()  # validated (and kept)
    assert config and first["trajectories"] > 0 and first["still_open_count"] > 0
    again, (config, pyd, mods) = blast()
    assert again == first and not config and not pyd
    # --json, piped, still-open trajectories (the loud STILL OPEN line): no Rich, and of the
    # command modules only blast's own
    assert [m for m in mods if m == "rich" or m.startswith("rich.")] == [], mods
    assert not {m for m in mods if m.startswith("agentfire.cli.")} & {
        "agentfire.cli.kill", "agentfire.cli.freeze", "agentfire.cli.triage", "agentfire.cli.capture"}, mods


@pytest.mark.parametrize("values", [("to~landlord",), ("to~landlord", "cc exists", "n=2"), ("to = é ✓",), ()])
def test_a_repeatable_str_option_is_the_list_typers_adapter_makes(values: tuple[str, ...]) -> None:
    """blast's --arg/--then/--metadata (list[str]) skip typer's pydantic TypeAdapter: the value
    is the list the adapter gives for the same strings."""
    import typer.core as tc
    from typer._coercion import build_runtime_param

    from agentfire.cli import app  # every command registered; _app installs the coercion

    group = __import__("typer.main", fromlist=["get_group"]).get_group(app)
    params = {p.name: p for p in group.commands["blast"].params}
    for name in ("arg", "then", "metadata"):
        p = params[name]
        assert isinstance(p, tc._TyperParameter) and p.type_descriptor.annotation == list[str]
        p._runtime_param = None
        fast = p.get_runtime_param()._coerce_value(values, param=p, ctx=None)
        slow = build_runtime_param(p.type_descriptor)._coerce_value(values, param=p, ctx=None)
        assert fast == slow and type(fast) is type(slow) is list
