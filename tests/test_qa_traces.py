"""Hostile trace content against the trace commands (triage, blast, capture) on the files store:
what real traces hold (truncated JSON, BOMs, ...) must neither abort a scan nor change an answer."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from agentfire.blast import files_scan, from_flags, resolve
from tests.test_blast import NOW, _ts, reference, synthetic_rows, write_store


def _tool_row(tid: str, i: int, name: str, raw_input: str, **kw) -> dict:
    st = NOW - timedelta(hours=1) + timedelta(seconds=i)
    row = {"id": f"{tid}-{i}", "traceId": tid, "type": "TOOL", "name": name,
           "parentObservationId": f"{tid}-root", "startTime": _ts(st), "endTime": _ts(st + timedelta(seconds=1)),
           "input": raw_input, "output": "{}", "level": "DEFAULT", "userId": "user-x"}
    row.update(kw)
    return row


def test_blast_arg_condition_survives_a_tool_input_that_is_not_json(tmp_path: Path):
    """One truncated tool input (`{"to": "a@b` as an SDK cuts a long value) used to abort the
    whole DuckDB scan: zero hits, the whole window 'unscanned'. It holds no argument instead."""
    rows = synthetic_rows() + [
        _tool_row("tr-bad", 1, "send_email", '{"to": "Landlord <ll@re'),
        _tool_row("tr-bad", 2, "send_email", "{to: landlord}"),
    ]
    path = write_store(tmp_path / "obs.jsonl", rows)
    window = resolve(from_=_ts(NOW - timedelta(hours=6)), to=_ts(NOW))
    for flags in (dict(tool="send_email", args=["to~landlord"]), dict(tool="send_email", args=["cc exists"]),
                  dict(tool="send_email", args=["n=2"]), dict(tool="send_email", args=["to re (?i)land"])):
        sig = from_flags(**flags)
        got = files_scan.scan(path, sig, window)
        assert got.complete and not got.gaps, got.gaps
        want = reference(rows, sig, window)
        assert want and {h.trace_id for h in got.hits} == set(want)


def _store(sandbox: Path, name: str, lines: list) -> None:
    d = sandbox / ".agentfire" / "traces"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / name, "w", encoding="utf-8") as fh:
        for r in lines:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def _small_trace(tid: str = "t-1") -> list[dict]:
    root = {"id": f"{tid}-root", "traceId": tid, "type": "AGENT", "name": "agent", "parentObservationId": None,
            "startTime": _ts(NOW - timedelta(hours=1)), "endTime": _ts(NOW), "input": "{}", "output": "{}",
            "userId": "user-x", "level": "DEFAULT"}
    return [root, _tool_row(tid, 1, "read_inbox", "{}"), _tool_row(tid, 2, "send_email", '{"to": "a@b.example"}')]


def test_triage_golden_file_malformed_is_one_line_not_a_traceback(sandbox: Path, cli):
    _store(sandbox, "obs.jsonl", _small_trace())
    bad = {
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "rows.jsonl": json.dumps(_small_trace("g")[0]) + '\n{"id": "x", "traceId": "g", "ty\n',
        "index.json": json.dumps({"steps": [{"index": "x", "kind": "tool", "name": "send_email"}]}),
        "cost.json": json.dumps({"steps": [], "cost_usd": "abc"}),
    }
    for name, text in bad.items():
        (sandbox / name).write_text(text)
        r = cli("triage", "t-1", "--golden", str(sandbox / name))
        assert r.exit_code == 1, (name, r)
        assert name in r.stderr and "Traceback" not in r.stderr, (name, r)
    assert "rows.jsonl:2: not valid JSON" in cli("triage", "t-1", "--golden", str(sandbox / "rows.jsonl")).stderr


def test_deeply_nested_values_do_not_crash_triage_golden_or_capture(sandbox: Path, cli):
    """JSON that Python can parse (depth 500) but that every later walk recursed over: triage's
    table and --json, golden save and capture each died with RecursionError. It is cut at
    MAX_DEPTH and said so; a store line nested past the parser's limit is an unreadable line."""
    deep = '{"a":' * 500 + '"x"' + "}" * 500
    rows = _small_trace()
    rows[0]["input"] = deep
    rows[2].update(input=deep, output=deep, metadata=json.loads('{"m":' * 400 + "1" + "}" * 400))
    _store(sandbox, "obs.jsonl", rows)
    line = json.dumps(_small_trace("t-2")[0])[:-1] + ', "metadata": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}"
    _store(sandbox, "deepline.jsonl", [line] + _small_trace("t-2")[1:])
    for args in (("triage", "t-1"), ("triage", "t-1", "--json", "--full"), ("golden", "save", "t-1", "--class", "deep"),
                 ("capture", "t-1", "--step", "2", "--expected", "no email", "--json"), ("triage", "t-2")):
        r = cli(*args)
        assert r.exit_code == 0, (args, r)
    doc = cli("triage", "t-1", "--json").json()
    assert any("nested deeper than" in p for p in doc["problems"])
    assert any("unreadable line" in p for p in cli("triage", "t-2", "--json").json()["problems"])
    assert cli("triage", "t-1", "--golden", "deep").exit_code == 0


def test_blast_python_only_regex_is_a_usage_error_not_an_unscanned_window(sandbox: Path, cli):
    """Python's re accepts lookaround and backreferences; DuckDB's RE2 does not, so the scan
    failed afterwards: exit 1 and the whole window 'NOT scanned'. Now exit 2 up front."""
    _store(sandbox, "obs.jsonl", _small_trace())
    for args in (["--arg", "to re (?=a)"], ["--arg", "to re (a)\\1"], ["--output-matches", "x*+"]):
        r = cli("blast", "--tool", "send_email", *args, "--since", "6h")
        assert r.exit_code == 2 and "RE2" in r.stderr, (args, r)
    assert cli("blast", "--tool", "send_email", "--arg", "to re (?i)^A@", "--since", "6h").exit_code == 0


def test_blast_window_out_of_range_is_a_usage_error(sandbox: Path, cli):
    _store(sandbox, "obs.jsonl", _small_trace())
    for args in (["--since", "99999999w"], ["--from", "0001-01-01T00:00:00+14:00"],
                 ["--to", "9999-12-31T23:59:59-14:00"], ["--since", "9" * 30 + "d"]):
        r = cli("blast", "--tool", "send_email", *args)
        assert r.exit_code == 2 and r.stderr.startswith("agentfire: error:"), (args, r)


def test_blast_signature_file_not_utf8_is_a_usage_error(sandbox: Path, cli):
    (sandbox / "sig.yaml").write_bytes(b"\xff\xfetool: send_email\n")
    r = cli("blast", "--signature", str(sandbox / "sig.yaml"))
    assert r.exit_code == 2 and "not UTF-8" in r.stderr, r


def test_numeric_times_out_of_range_are_unreadable_not_a_traceback(sandbox: Path, cli):
    """OTel-style nanosecond integers (or NaN, which Python's json accepts) as startTime made
    datetime.fromtimestamp raise in every command that reads the trace."""
    rows = _small_trace()
    rows[1]["startTime"] = 1_700_000_000_000_000_000
    rows[2]["endTime"] = 1e300
    lines = [json.dumps(r) for r in rows] + [json.dumps(_small_trace("t-3")[1])[:-1] + ', "startTime": NaN}']
    _store(sandbox, "obs.jsonl", lines)
    r = cli("triage", "t-1", "--json")
    assert r.exit_code == 0, r
    assert any("no readable startTime" in p for p in r.json()["problems"])
    assert cli("triage", "t-3").exit_code == 0
    assert cli("capture", "t-1", "--step", "2", "--expected", "no email").exit_code == 0


def test_triage_full_shows_a_long_unbroken_value_whole(sandbox: Path, cli):
    """--full promises values whole; Rich cropped a long token (a URL, base64) in the steps table
    with a bare '…' and no marker. The column folds it now."""
    rows = _small_trace()
    rows[2]["input"] = json.dumps({"to": "a@b.example", "token": "Q" * 5000})
    _store(sandbox, "obs.jsonl", rows)
    r = cli("triage", "t-1", "--full")
    assert r.exit_code == 0 and r.stdout.count("Q") >= 5000, r.stdout.count("Q")
    cut = cli("triage", "t-1")
    assert "--full shows all" in cut.stdout


def test_sandbox_seed_too_many_traces_is_a_usage_error(sandbox: Path, cli):
    """--traces 20000 and up asked random.sample for more distinct users than the pool holds."""
    r = cli("sandbox", "seed", "--traces", "20000")
    assert r.exit_code == 2 and "at most" in r.stderr, r
