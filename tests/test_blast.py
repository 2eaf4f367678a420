"""blast: signature parsing, the DuckDB scan against the Python reference matcher, the emitted
SQL over an export-shaped file, the CLI (exit codes, --json, --out, journal, still-open)."""

from __future__ import annotations

import json
import os
import random
import stat
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agentfire.blast import files_scan, from_document, from_flags, resolve
from agentfire.blast.signature import ArgCondition, glob_regex, name_matches
from agentfire.errors import UsageError
from agentfire.trajectory import from_observations

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
TOOLS = ["search", "read_inbox", "lookup_contact", "send_email", "run_sql", "refund"]


def _ts(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def synthetic_rows(n_traces: int = 80, seed: int = 7) -> list[dict]:
    """Langfuse v2-observation-shaped rows: varied tools, arguments, levels, models, metadata,
    running trajectories (no root yet, or a root without end), an error root."""
    rnd = random.Random(seed)
    rows: list[dict] = []
    for t in range(n_traces):
        tid = f"tr-{t:04d}"
        user = f"user-{t % 23}"
        start = NOW - timedelta(hours=8) + timedelta(minutes=6 * t)
        shape = t % 7
        steps = []
        for k in range(rnd.randint(2, 7)):
            tool = rnd.choice(TOOLS)
            args: dict = {"query": f"q{k}"}
            if tool == "send_email":
                args = {"to": rnd.choice(["lawyer@firm.example", "Landlord <ll@rent.example>", "ops@x.example"]),
                        "cc": ["a@b.example"] if rnd.random() < 0.3 else [], "n": rnd.randint(1, 3)}
            if tool == "run_sql":
                args = {"sql": rnd.choice(["SELECT 1", "DELETE FROM users", "delete from orders where id=1"]),
                        "target": {"db": rnd.choice(["prod", "staging"])}}
            steps.append(("GENERATION", "llm", {"messages": k}, rnd.choice(["gpt-4o", "claude-x", "gpt-4o-mini"])))
            steps.append(("TOOL", tool, args, None))
        root_id = f"{tid}-root"
        for i, (typ, name, inp, model) in enumerate(steps):
            st = start + timedelta(seconds=3 * i + 1)
            level = "ERROR" if (typ == "TOOL" and rnd.random() < 0.1) else "DEFAULT"
            out = {"status": "failed"} if level == "ERROR" else {"ok": True, "text": rnd.choice(["done", "sent to landlord", "ok"])}
            rows.append({
                "id": f"{tid}-{i}", "traceId": tid, "type": typ, "name": name,
                "parentObservationId": root_id, "startTime": _ts(st), "endTime": _ts(st + timedelta(seconds=1)),
                "input": json.dumps(inp), "output": json.dumps(out), "level": level, "userId": user,
                "model": model, "metadata": {"env": "prod" if t % 3 else "staging", "region": "eu"},
            })
        if shape != 0:  # shape 0: still running, no root exported yet
            end = None if shape == 1 else _ts(start + timedelta(seconds=3 * len(steps) + 2))
            rows.append({
                "id": root_id, "traceId": tid, "type": "AGENT", "name": "support-agent",
                "parentObservationId": None, "startTime": _ts(start), "endTime": end,
                "input": json.dumps({"ticket": t}), "output": json.dumps("bye"),
                "level": "ERROR" if shape == 2 else "DEFAULT", "userId": user, "model": None,
                "metadata": {"env": "prod" if t % 3 else "staging"},
            })
    rnd.shuffle(rows)
    return rows


def write_store(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return path


def reference(rows: list[dict], sig, window) -> dict[str, tuple]:
    """The Python matcher over whole trajectories: the reference the SQL must agree with."""
    by_trace: dict[str, list] = defaultdict(list)
    for r in rows:
        by_trace[r["traceId"]].append(r)
    out = {}
    for tid, rs in by_trace.items():
        traj = from_observations(tid, rs, as_of=NOW)
        step = sig.match_step(traj, window=(window.start, window.end))
        if step is not None:
            out[tid] = (traj.user_id, traj.status, step.index, step.name, step.input)
    return out


SIGNATURES = [
    dict(tool="send_email", args=["to~landlord"]),
    dict(tool="send_*"),
    dict(tool="run_sql", args=["sql re (?i)^delete", "target.db=prod"]),
    dict(tool="send_email", args=["cc[0] exists"]),
    dict(tool="send_email", args=["n=2"]),
    dict(tool="read_inbox", then=["send_email"], args=["to~landlord"]),
    dict(tool="search", then=["lookup_contact", "refund"]),
    dict(level="ERROR"),
    dict(tool="refund", output_matches="fail(ed)?"),
    dict(tool="send_email", model="gpt-4o-*"),
    dict(tool="lookup_contact", metadata=["env=staging"]),
    dict(tool="[rs]*", args=["query~q1"]),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, list[dict]]:
    rows = synthetic_rows()
    path = write_store(tmp_path_factory.mktemp("store") / "obs.jsonl", rows)
    return path, rows


@pytest.mark.parametrize("flags", SIGNATURES, ids=lambda f: json.dumps(f))
def test_duckdb_scan_agrees_with_python_reference(store, flags):
    path, rows = store
    sig = from_flags(**flags)
    window = resolve(from_=_ts(NOW - timedelta(hours=6)), to=_ts(NOW))
    want = reference(rows, sig, window)
    got = files_scan.scan(path, sig, window)
    assert got.complete and not got.warnings
    assert {h.trace_id: (h.user_id, h.status, h.step_index, h.tool, h.args) for h in got.hits} == want
    assert want, "each signature is chosen to match something in the synthetic store"
    assert got.user_ids == sorted({v[0] for v in want.values()})
    assert set(got.still_open_ids) == {t for t, v in want.items() if v[1] == "running"}


def test_window_excludes_hits_outside(store):
    path, rows = store
    sig = from_flags(tool="send_*")
    narrow = resolve(from_=_ts(NOW - timedelta(hours=2)), to=_ts(NOW - timedelta(hours=1)))
    wide = resolve(from_=_ts(NOW - timedelta(hours=9)), to=_ts(NOW))
    a, b = files_scan.scan(path, sig, narrow), files_scan.scan(path, sig, wide)
    assert 0 < len(a.hits) < len(b.hits)
    assert all(narrow.start <= h.hit_at < narrow.end for h in a.hits)


def test_emitted_duckdb_sql_over_export_shaped_file(store, tmp_path):
    """The distributed path at small scale: the SQL a team runs on a Langfuse blob-storage
    export (snake_case rows) gives the same trajectories, users and still-open."""
    import duckdb

    from agentfire.blast.sql import emit_query

    _path, rows = store
    export = tmp_path / "observations.jsonl"
    with open(export, "w") as fh:
        for r in rows:
            fh.write(json.dumps({
                "id": r["id"], "trace_id": r["traceId"], "type": r["type"], "name": r["name"],
                "parent_observation_id": r["parentObservationId"], "start_time": r["startTime"],
                "end_time": r["endTime"], "input": r["input"], "output": r["output"], "level": r["level"],
                "user_id": r["userId"], "provided_model_name": r["model"], "metadata": r["metadata"],
            }) + "\n")
    window = resolve(from_=_ts(NOW - timedelta(hours=6)), to=_ts(NOW))
    for flags in SIGNATURES:
        sig = from_flags(**flags)
        want = reference(rows, sig, window)
        sql = emit_query(sig, "duckdb", window.start, window.end,
                         source=f"read_json_auto('{export}', format='newline_delimited')")
        got = duckdb.sql(sql).project("trace_id, user_id, still_open").fetchall()
        assert {r[0]: (r[1], bool(r[2])) for r in got} == {
            t: (v[0], v[1] == "running") for t, v in want.items()}, flags


def test_emitted_clickhouse_sql_shape():
    from agentfire.blast.sql import emit_query

    sig = from_flags(tool="send_*", args=[r"to re \d+", "cc exists"], metadata=["env=prod"])
    sql = emit_query(sig, "clickhouse", NOW - timedelta(hours=1), NOW)
    assert "observations AS o FINAL" in sql and "{project_id:String}" in sql
    assert "match(o.name, '^send_.*$')" in sql
    assert r"'\\d+'" in sql  # ClickHouse literals escape backslashes
    assert "JSONHas(o.input, 'cc')" in sql and "o.metadata['env'] = 'prod'" in sql


# --- signature parsing -------------------------------------------------------------------------


@pytest.mark.parametrize("text,expect", [
    ("to~landlord", ("to", "~", "landlord")),
    ("to=a@b.c", ("to", "=", "a@b.c")),
    ("sql re (?i)^delete\\b", ("sql", "re", "(?i)^delete\\b")),
    ("cc exists", ("cc", "exists", None)),
    ("target.db = prod", ("target.db", "=", "prod")),
    ("recipients[1].email~x", ("recipients[1].email", "~", "x")),
])
def test_arg_parse(text, expect):
    a = ArgCondition.parse(text)
    assert (a.path, a.op, a.value) == expect


@pytest.mark.parametrize("text", ["~x", "to", "to re (", "a..b=1", "to exists now"])
def test_arg_parse_rejects(text):
    with pytest.raises(UsageError):
        ArgCondition.parse(text)


def test_globs():
    assert name_matches("send_*", "send_email") and not name_matches("send_*", "resend")
    assert name_matches("run_sq?", "run_sql") and name_matches("[rs]*", "search")
    assert not name_matches("send_email", "send_emails")
    assert glob_regex("a.b*") == "^a\\.b.*$"


def test_signature_file_roundtrip_and_unknown_field(tmp_path):
    sig = from_flags(tool="read_inbox", then=["send_email"], args=["to~landlord"], model="gpt-*",
                     metadata=["env=prod"])
    again = from_document(__import__("yaml").safe_load(sig.to_yaml()))
    assert again == sig
    with pytest.raises(UsageError, match="unknown field 'tol'"):
        from_document({"tol": "send_email"})
    with pytest.raises(UsageError, match="unknown field 'arg'"):
        from_document({"sequence": [{"tool": "a", "arg": []}]})


# --- the command -------------------------------------------------------------------------------


@pytest.fixture
def blast_sandbox(sandbox, store):
    """The embedded sandbox runbook pointed at the synthetic store."""
    path, _rows = store
    rb = (sandbox / "runbook.yaml").read_text()
    rb = rb.replace("path: .agentfire/traces", f"path: {path}")
    (sandbox / "runbook.yaml").write_text(rb)
    return sandbox


WINDOW = ["--from", _ts(NOW - timedelta(hours=6)), "--to", _ts(NOW)]


@pytest.mark.parametrize("args,msg", [
    (["--tool", "send_email", "--arg", "to re ("], "bad regular expression"),
    (["--tool", "x", "--output-matches", "a[b"], "bad regular expression"),
    (["--tool", "x", "--from", "2026-11-23T10:00:00Z", "--to", "2026-11-23T09:00:00Z"], "empty window"),
    (["--tool", "x", "--since", "6 parsecs"], "bad duration"),
    (["--tool", "x", "--level", "LOUD"], "unknown level"),
    (["--arg", "to~x"], "need a tool"),
    ([], "no signature"),
    (["--tool", "x", "--out", "list.xlsx"], "use a .csv or .json"),
    (["--tool", "x", "--emit-sql", "oracle"], "clickhouse or duckdb"),
])
def test_bad_input_exit_2(blast_sandbox, cli, args, msg):
    r = cli("blast", *args)
    assert r.exit_code == 2, r
    assert msg in r.stderr and "Traceback" not in r.stderr


def test_bad_signature_file_exit_2(blast_sandbox, cli, tmp_path):
    f = tmp_path / "sig.yaml"
    f.write_text("tool: send_email\nargz: [to~x]\n")
    r = cli("blast", "--signature", str(f))
    assert r.exit_code == 2 and "unknown field 'argz'" in r.stderr, r


def test_json_out_csv_and_journal(blast_sandbox, cli, store, tmp_path):
    path, rows = store
    sig_file = tmp_path / "sig.yaml"
    sig_file.write_text("tool: send_email\nargs: ['to~landlord']\n")
    out = tmp_path / "affected.csv"
    r = cli("--incident", "inc-blast-1", "--new", "blast", "--signature", str(sig_file), *WINDOW,
            "--out", str(out), "--json")
    assert r.exit_code == 0, r
    doc = r.json()
    sig = from_flags(tool="send_email", args=["to~landlord"])
    want = reference(rows, sig, resolve(from_=WINDOW[1], to=WINDOW[3]))
    assert doc["trajectories"] == len(want) and doc["complete"] is True
    assert doc["distinct_users"] == len({v[0] for v in want.values()})
    assert doc["still_open"] == any(v[1] == "running" for v in want.values())
    assert sorted(doc["still_open_trace_ids"]) == sorted(t for t, v in want.items() if v[1] == "running")
    assert {h["trace_id"] for h in doc["hits"]} == set(want)
    if doc["still_open"]:
        assert {k["region"] for k in doc["kill_switch"]} == {"us-east", "eu-west", "ap-south"}
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    lines = out.read_text().splitlines()
    assert lines[0].startswith("trace_id,user_id,start,status") and len(lines) == len(want) + 1
    entries = [json.loads(line) for line in (blast_sandbox / ".agentfire/incidents/inc-blast-1.jsonl").read_text().splitlines()]
    blast_entries = [e for e in entries if e["action"] == "blast"]
    assert blast_entries and blast_entries[-1]["trajectories"] == len(want)


def test_hits_that_cannot_be_read_back_are_a_named_failure(blast_sandbox, cli, monkeypatch):
    """The scan completed but DuckDB cannot hand the hits back (their tool inputs fill its
    memory limit): one line naming the count and the setting to raise, exit 1, no traceback."""
    import duckdb

    from agentfire.blast import files_scan

    def full(cur):
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data of size 16.0 MiB")
        yield  # a generator, as _stream is

    monkeypatch.setattr(files_scan, "_stream", full)
    r = cli("blast", "--tool", "send_email", "--arg", "to~landlord", *WINDOW, "--json")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert "hits were found but could not be read back" in r.stderr and "AGENTFIRE_DUCKDB_MEMORY" in r.stderr


def test_terminal_summary_and_still_open_warning(blast_sandbox, cli):
    r = cli("blast", "--tool", "send_*", *WINDOW)
    assert r.exit_code == 0, r
    assert "trajectories" in r.stdout and "distinct users" in r.stdout
    assert "STILL OPEN" in r.stderr and "kill switch, live" in r.stderr


def test_incident_default_window(blast_sandbox, cli):
    """Without --since/--from: the incident's start minus the margin."""
    from agentfire.journal import Journal

    Journal(blast_sandbox / ".agentfire/incidents", "inc-w").append("kill", actor="t")
    r = cli("--incident", "inc-w", "blast", "--tool", "send_*", "--json")
    assert r.exit_code == 0, r
    assert r.json()["window"]["origin"].startswith("incident start")


def _point_store_at(sandbox: Path, target: Path) -> None:
    import re as _re

    rb = (sandbox / "runbook.yaml").read_text()
    rb = _re.sub(r"path: /\S+obs.jsonl", f"path: {target}", rb)
    rb = rb.replace("seed_scenario: wrong_recipient", "seed_scenario: null")
    (sandbox / "runbook.yaml").write_text(rb)


def test_missing_store_exits_1_and_names_the_gap(blast_sandbox, cli, tmp_path):
    _point_store_at(blast_sandbox, tmp_path / "nowhere")
    r = cli("blast", "--tool", "send_*", *WINDOW, "--json")
    assert r.exit_code == 1, r
    assert "NOT scanned" in r.stderr and "does not exist" in r.stderr
    doc = r.json()
    assert doc["complete"] is False and doc["unscanned"][0]["from"] == WINDOW[1].replace(":00Z", ":00.000Z")


def test_corrupt_lines_are_skipped_loudly(blast_sandbox, cli, tmp_path, store):
    path, rows = store
    d = tmp_path / "torn"
    d.mkdir()
    text = path.read_text()
    (d / "a.jsonl").write_text(text + '{"traceId": "torn", "startTi\n{"id": "bad time", "traceId": "x", "startTime": "yesterday"}\n')
    _point_store_at(blast_sandbox, d)
    r = cli("blast", "--tool", "send_email", "--arg", "to~landlord", *WINDOW, "--json")
    assert r.exit_code == 0, r
    want = reference(rows, from_flags(tool="send_email", args=["to~landlord"]), resolve(from_=WINDOW[1], to=WINDOW[3]))
    assert r.json()["trajectories"] == len(want)
    assert "not valid JSON" in r.stderr


def test_emit_sql_cli(blast_sandbox, cli):
    r = cli("blast", "--tool", "send_email", "--arg", "to~landlord", "--emit-sql", "clickhouse", "--since", "6h")
    assert r.exit_code == 0, r
    assert r.stdout.startswith("-- agentfire blast") and "FROM s0 JOIN traj" in r.stdout


def test_parquet_files_in_the_store_scan_the_same(store, tmp_path):
    """Half the rows as Parquet (times as timestamps, no isRootObservation column), half as JSON
    lines: the same answer as the reference."""
    import duckdb

    path, rows = store
    d = tmp_path / "mixed"
    d.mkdir()
    half = len(rows) // 2
    write_store(d / "a.jsonl", rows[:half])
    write_store(tmp_path / "b.jsonl", rows[half:])
    duckdb.sql(f"""COPY (SELECT id, traceId, type, name, parentObservationId,
                   CAST(startTime AS TIMESTAMPTZ) AS startTime, CAST(endTime AS TIMESTAMPTZ) AS endTime,
                   userId, level, input, output, model, metadata
                   FROM read_json_auto('{tmp_path / "b.jsonl"}')) TO '{d / "b.parquet"}' (FORMAT PARQUET)""")
    window = resolve(from_=_ts(NOW - timedelta(hours=6)), to=_ts(NOW))
    for flags in SIGNATURES:
        sig = from_flags(**flags)
        got = files_scan.scan(d, sig, window)
        assert got.complete, got.gaps
        assert {h.trace_id: (h.user_id, h.status, h.step_index, h.tool, h.args) for h in got.hits} == \
            reference(rows, sig, window), flags


CH_SCHEMA = """
CREATE TABLE observations (
  id String, trace_id String, project_id String, type LowCardinality(String),
  parent_observation_id Nullable(String), start_time DateTime64(3, 'UTC'),
  end_time Nullable(DateTime64(3, 'UTC')), name String, metadata Map(LowCardinality(String), String),
  level LowCardinality(String), input Nullable(String), output Nullable(String),
  provided_model_name Nullable(String), event_ts DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(event_ts) ORDER BY (project_id, type, toDate(start_time), id);
CREATE TABLE traces (
  id String, project_id String, user_id Nullable(String), timestamp DateTime64(3, 'UTC'),
  event_ts DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(event_ts) ORDER BY (project_id, id);
"""


def test_emitted_clickhouse_sql_runs_on_embedded_clickhouse(store, tmp_path):
    """The self-hosted Langfuse path at small scale: Langfuse-shaped ClickHouse tables (chDB, an
    in-process ClickHouse), the emitted query gives the reference's trajectories, users, still-open."""
    chdb_session = pytest.importorskip("chdb.session")
    from agentfire.blast.sql import emit_query

    _path, rows = store
    obs = tmp_path / "obs.jsonl"
    with open(obs, "w") as fh:
        for r in rows:
            fh.write(json.dumps({
                "id": r["id"], "trace_id": r["traceId"], "project_id": "p1", "type": r["type"],
                "parent_observation_id": r["parentObservationId"], "start_time": r["startTime"].replace("Z", ""),
                "end_time": r["endTime"].replace("Z", "") if r["endTime"] else None, "name": r["name"],
                "metadata": {k: str(v) for k, v in (r["metadata"] or {}).items()}, "level": r["level"],
                "input": r["input"], "output": r["output"], "provided_model_name": r["model"],
                "event_ts": r["startTime"].replace("Z", ""),
            }) + "\n")
    users = {r["traceId"]: r["userId"] for r in rows}
    sess = chdb_session.Session(str(tmp_path / "ch"))
    try:
        for stmt in CH_SCHEMA.split(";"):
            if stmt.strip():
                sess.query(stmt)
        sess.query(f"INSERT INTO observations SELECT * FROM file('{obs}', 'JSONEachRow')")
        values = ", ".join(f"('{t}', 'p1', '{u}', now64(3), now64(3))" for t, u in users.items())
        sess.query(f"INSERT INTO traces VALUES {values}")
        window = resolve(from_=_ts(NOW - timedelta(hours=6)), to=_ts(NOW))
        for flags in SIGNATURES:
            sig = from_flags(**flags)
            sql = emit_query(sig, "clickhouse", window.start, window.end).replace("{project_id:String}", "'p1'")
            got = sess.query(f"SELECT trace_id, user_id, still_open FROM ({sql})", "JSONCompact")
            data = json.loads(got.bytes() if hasattr(got, "bytes") else str(got))["data"]
            want = reference(rows, sig, window)
            assert {r[0]: (r[1], bool(r[2])) for r in data} == {
                t: (v[0], v[1] == "running") for t, v in want.items()}, flags
    finally:
        sess.close()


def test_a_root_exported_open_then_closed_is_finished_not_still_open(tmp_path: Path) -> None:
    """Stores that append each version of an observation (Langfuse exports carry updatedAt on
    every row) hold a trajectory's root twice: open, then closed. The trajectory ended: blast
    must not count it as still running (the reference collapses versions by id)."""
    from agentfire.blast import files_scan, from_flags, resolve

    rows = [r for r in synthetic_rows() if r["traceId"] in ("tr-0010", "tr-0011", "tr-0012")]
    for r in rows:
        r["updatedAt"] = r["endTime"] or r["startTime"]
    roots = [r for r in rows if r["parentObservationId"] is None and r["endTime"] is not None]
    assert roots
    roots[0]["level"] = "ERROR"  # set when it ended: the version written at its start says DEFAULT
    for root in roots:  # the version written when it started, before the one written at its end
        rows.insert(0, dict(root, endTime=None, level="DEFAULT", updatedAt=root["startTime"]))
    path = write_store(tmp_path / "obs.jsonl", rows)
    sig = from_flags(tool="*")
    window = resolve(from_=_ts(NOW - timedelta(hours=9)), to=_ts(NOW))
    want = reference(rows, sig, window)
    got = files_scan.scan(path, sig, window)
    assert want and {h.trace_id: h.status for h in got.hits} == {t: v[1] for t, v in want.items()}
    assert not {r["traceId"] for r in roots} & set(got.still_open_ids)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_steps_exported_in_several_versions_count_once_in_the_step_index(tmp_path: Path, fmt: str) -> None:
    """A store that appends each version of an observation (updatedAt on every row): every step
    is there twice, started and then ended. The hit's step index counts each step once, as the
    reference does (it keeps one row per observation id), and the status is the closed root's."""
    import duckdb

    from agentfire.blast import files_scan, from_flags, resolve

    rows = [r for r in synthetic_rows() if r["traceId"] in {f"tr-{k:04d}" for k in range(10, 40)}]
    versions = []
    for r in rows:
        r["updatedAt"] = r["endTime"] or r["startTime"]
        versions.append(dict(r, endTime=None, output=None, updatedAt=r["startTime"]))  # written at its start
    rows = versions + rows
    store = tmp_path / "store"
    store.mkdir()
    if fmt == "jsonl":
        write_store(store / "obs.jsonl", rows)
    else:
        src = write_store(tmp_path / "src.jsonl", rows)
        duckdb.sql(f"COPY (SELECT * REPLACE (CAST(startTime AS TIMESTAMPTZ) AS startTime, "
                   f"CAST(endTime AS TIMESTAMPTZ) AS endTime) FROM read_json('{src}', format='newline_delimited')) "
                   f"TO '{store / 'obs.parquet'}' (FORMAT PARQUET)")
    window = resolve(from_=_ts(NOW - timedelta(hours=9)), to=_ts(NOW))
    for flags in (dict(tool="send_email"), dict(tool="*"), dict(tool="read_inbox", then=["send_email"])):
        sig = from_flags(**flags)
        want = reference(rows, sig, window)
        got = files_scan.scan(store, sig, window)
        assert got.complete and want, flags
        assert {h.trace_id: (h.status, h.step_index) for h in got.hits} == \
            {t: (v[1], v[2]) for t, v in want.items()}, flags
        if flags.get("tool") == "send_email":  # later steps, where double counting would show
            assert any(v[2] > 2 for v in want.values())


def test_times_without_an_offset_are_utc_on_a_machine_in_another_zone(tmp_path: Path) -> None:
    """A store whose times carry no offset (a hand export, a Parquet TIMESTAMP column) scanned on
    a laptop set to New York: the hits and the freeze aggregate are the Python reference's (UTC),
    not five hours off."""
    import os
    import subprocess
    import sys

    import duckdb

    from agentfire.blast import from_flags, resolve

    rows = [dict(r, startTime=r["startTime"].rstrip("Z"), endTime=r["endTime"] and r["endTime"].rstrip("Z"))
            for r in synthetic_rows()]
    store = tmp_path / "store"
    store.mkdir()
    write_store(store / "a.jsonl", rows[: len(rows) // 2])
    src = write_store(tmp_path / "b.jsonl", rows[len(rows) // 2:])
    duckdb.sql(f"COPY (SELECT * REPLACE (CAST(startTime AS TIMESTAMP) AS startTime, CAST(endTime AS TIMESTAMP) AS endTime) "
               f"FROM read_json('{src}', format='newline_delimited')) TO '{store / 'b.parquet'}' (FORMAT PARQUET)")
    lo, hi = _ts(NOW - timedelta(hours=3)), _ts(NOW)
    sig = from_flags(tool="send_email")
    want = reference(rows, sig, resolve(from_=lo, to=hi))
    assert want
    code = f"""
import json, sys
from datetime import datetime
from agentfire.blast import files_scan, from_flags, resolve
from agentfire.blast.costs import window_costs
r = files_scan.scan(__import__("pathlib").Path(sys.argv[1]), from_flags(tool="send_email"), resolve(from_={lo!r}, to={hi!r}))
costs = window_costs(files_scan.store_files(__import__("pathlib").Path(sys.argv[1])),
                     datetime.fromisoformat({lo!r}.replace("Z", "+00:00")), datetime.fromisoformat({hi!r}.replace("Z", "+00:00")))
print(json.dumps({{"hits": {{h.trace_id: h.step_index for h in r.hits}}, "costs": sorted(c.trace_id for c in costs)}}))
"""
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "TZ": "America/New_York",
           "PYTHONPATH": os.pathsep.join([repo, *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", code, str(store)], env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["hits"] == {t: v[2] for t, v in want.items()}
    started = defaultdict(list)
    for r in rows:
        started[r["traceId"]].append(r["startTime"] + "Z")
    lo_dt, hi_dt = NOW - timedelta(hours=3), NOW
    assert got["costs"] == sorted(t for t, s in started.items() if lo_dt <= min(map(_parse, s)) < hi_dt)


def _parse(ts: str) -> datetime:
    from agentfire.trajectory import parse_time

    return parse_time(ts)
