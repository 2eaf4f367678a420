"""blast benchmarks, one command: python3 bench/blast_bench.py [--files-only|--langfuse-only]

1. Files store: 10 million observations (JSON lines, about 3.3 GB, generated once by DuckDB into
   $AGENTFIRE_BENCH_CACHE, default /tmp/agentfire-bench; and a Parquet copy) scanned by
   `agentfire blast` as a whole process under the default memory limit, each beside the plain
   DuckDB count of the same trajectories (a process too) in the same run: a selective signature
   (--tool send_email --arg to~landlord, 1 trajectory in 997; --runs 10 for the 10-out-of-10
   check) and non-selective ones (--tool read_inbox, and a loop's sequence --tool read_inbox --then
   read_inbox --then read_inbox: every trajectory is a hit); the plain count
   and blast alternate run by run (each pair under the same load; Parquet 5 runs each by
   default, --parquet-runs), medians compared. Wall time and each process's own peak RSS (wait4),
   the max over all runs reported. agentfire runs as installed: bytecode compiled, its runbook
   validated once before (one unmeasured blast first).
   Targets: every run completes; non-selective under 30 s and 1 GB; Parquet within 2x of the
   plain count.
2. Langfuse: 2,000 trajectories / 40,000 observations in a 6 h window behind the Langfuse contract
   fake with 50 ms latency per request: agentfire's blast against the naive approach (list every
   trace in the window, fetch each one, match in Python), side by side: requests and wall time.
   Targets: at least 20x fewer requests and 10x faster.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# 3.3 GB of JSON lines and its Parquet copy: outside the repo; delete after (rm -r the dir)
CACHE = Path(os.environ.get("AGENTFIRE_BENCH_CACHE", "/tmp/agentfire-bench"))


def generate_10m(path: Path, n: int = 10_000_000) -> None:
    """500,000 trajectories of 20 observations (root, model calls, tools), one starting every
    40 ms (5.5 h in all); 1 in 997 sends the landlord an email. Trace ids are 32 hex digits, as
    W3C/OpenTelemetry and Langfuse make them (random to a scan's statistics: sequential ids let
    DuckDB prune by id ranges that real stores never have). Written by DuckDB itself (about 15 s)
    and kept for the next run."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute(f"""
    COPY (
    SELECT 'o' || i AS id, md5('t' || (i // 20)) AS traceId,
      CASE WHEN i % 20 = 0 THEN 'AGENT' WHEN i % 20 % 3 = 1 THEN 'GENERATION' ELSE 'TOOL' END AS type,
      CASE WHEN i % 20 = 0 THEN 'support-agent' WHEN i % 20 % 3 = 1 THEN 'llm'
           WHEN i % 20 = 8 THEN (CASE WHEN (i // 20) % 997 = 0 THEN 'send_email' ELSE 'search' END)
           ELSE 'read_inbox' END AS name,
      CASE WHEN i % 20 = 0 THEN NULL ELSE 'o' || (i - i % 20) END AS parentObservationId,
      strftime(TIMESTAMP '2026-01-01 00:00:00' + to_milliseconds((i // 20) * 40 + (i % 20) * 2),
               '%Y-%m-%dT%H:%M:%S.%gZ') AS startTime,
      CASE WHEN i % 20 = 0 AND (i // 20) % 13 = 0 THEN NULL ELSE
      strftime(TIMESTAMP '2026-01-01 00:00:00' + to_milliseconds((i // 20) * 40 + (i % 20) * 2 + 1),
               '%Y-%m-%dT%H:%M:%S.%gZ') END AS endTime,
      CASE WHEN i % 20 = 8 AND (i // 20) % 997 = 0 THEN '{{"to":"landlord@example.com","subject":"re: lease"}}'
           WHEN i % 20 % 3 = 1 THEN '[{{"role":"user","content":"hello there please help"}}]'
           ELSE '{{"query":"status of order ' || i || '"}}' END AS input,
      '{{"ok":true,"text":"done"}}' AS output, 'DEFAULT' AS level,
      'u' || ((i // 20) % 50000) AS userId,
      CASE WHEN i % 20 % 3 = 1 THEN 'gpt-4o' ELSE NULL END AS model
    FROM range({n}) r(i)
    ) TO '{tmp}' (FORMAT JSON)
    """)
    con.close()
    os.replace(tmp, path)


# Linux carries a parent's RSS into the ru_maxrss of a child it forks (and across exec): a bench
# that parsed a 125 MB JSON answer would report every later child at that size. A tiny wrapper
# process starts the measured one and reports the peak RSS of its own children.
WRAP = """
import json, os, resource, subprocess, sys, time
t = time.monotonic()
code = subprocess.call(sys.argv[2:], stdout=open(sys.argv[1] + '.out', 'w'), stderr=open(sys.argv[1] + '.err', 'w'))
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({'wall': time.monotonic() - t, 'rss_kb': ru.ru_maxrss, 'cpu': ru.ru_utime + ru.ru_stime, 'code': code},
          open(sys.argv[1], 'w'))
"""


def measure(cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run one process: wall time, its own peak RSS (the max over all runs is reported), CPU
    seconds, exit code, stdout."""
    report = cwd / "measure.json"
    subprocess.run([sys.executable, "-c", WRAP, str(report), *cmd], cwd=cwd, env=env, check=True)
    r = json.loads(report.read_text())
    out, err = Path(f"{report}.out"), Path(f"{report}.err")
    return {"wall_s": round(r["wall"], 2), "rss_mb": round(r["rss_kb"] / 1024), "cpu_s": round(r["cpu"], 2),
            "code": r["code"], "stdout": out.read_text(), "stderr": err.read_text()}


PLAIN = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET enable_progress_bar=false")
fmt, path, tool, needle, lo, hi = sys.argv[1:7]
if fmt != "parquet":  # text times: '...T00:00:00.016Z' sorts before '...T00:00:00Z' ('.' < 'Z')
    lo, hi = lo.rstrip("Z"), hi.rstrip("Z")
src = (f"read_parquet('{path}/*.parquet')" if fmt == "parquet" else
       f"read_json('{path}', format='newline_delimited', columns={{traceId: 'VARCHAR', type: 'VARCHAR', "
       f"name: 'VARCHAR', startTime: 'VARCHAR', input: 'VARCHAR'}})")
cond = f"AND strpos(lower(input), '{needle}') > 0" if needle else ""
print(con.execute(f"SELECT count(DISTINCT traceId) FROM {src} WHERE upper(type) = 'TOOL' AND name = '{tool}' "
                  f"AND startTime >= '{lo}' AND startTime < '{hi}' {cond}").fetchone()[0])
"""

def _trajectories(lo_ms: int, hi_ms: int, pred) -> int:
    """How many generated trajectories have their step 8 (send_email or search, at 16 ms after
    the trajectory's start, one every 40 ms) in [lo_ms, hi_ms) and satisfy pred(k)."""
    first, last = -(-(lo_ms - 16) // 40), (hi_ms - 16 - 1) // 40
    return sum(1 for k in range(max(first, 0), min(last, 499_999) + 1) if pred(k))


DAY = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
HOUR = ("2026-01-01T04:30:00Z", "2026-01-01T05:30:00Z")  # the incident's last hour of the 5.5 h store
TEN_MIN = ("2026-01-01T05:20:00Z", "2026-01-01T05:30:00Z")
# name: (flags, tool, needle for the plain count, expected trajectories, window); the selective
# signature (1 trajectory in 997) and a non-selective one (every trajectory) over the whole store,
# and the shapes of an incident: the last hour, a busy tool in the last ten minutes
SIGNATURES = {
    "selective": (["--tool", "send_email", "--arg", "to~landlord"], "send_email", "landlord",
                  len(range(0, 500_000, 997)), DAY),
    "non-selective": (["--tool", "read_inbox"], "read_inbox", "", 500_000, DAY),
    "selective-1h": (["--tool", "send_email", "--arg", "to~landlord"], "send_email", "landlord",
                     _trajectories(16_200_000, 19_800_000, lambda k: k % 997 == 0), HOUR),
    "search-10min": (["--tool", "search"], "search", "",
                     _trajectories(19_200_000, 19_800_000, lambda k: k % 997 != 0), TEN_MIN),
    # a sequence whose first step every trajectory calls (the plain count is its last step's:
    # every trajectory that emails the landlord read its inbox first)
    "sequence": (["--tool", "read_inbox", "--then", "send_email", "--arg", "to~landlord"], "send_email", "landlord",
                 len(range(0, 500_000, 997)), DAY),
    # a loop's signature as `blast --like` derives it (the same call three times) on a store where
    # every trajectory makes it: a non-selective sequence (the plain count is the tool's)
    "loop": (["--tool", "read_inbox", "--then", "read_inbox", "--then", "read_inbox"], "read_inbox", "", 500_000, DAY),
}


def prepare(fmt: str) -> Path:
    data = CACHE / "blast-10m-w3c.jsonl"
    if not data.exists():
        print(f"generating {data} (once) ...", file=sys.stderr, flush=True)
        t = time.monotonic()
        generate_10m(data)
        print(f"  generated in {time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
    if fmt == "parquet":
        pq = CACHE / "blast-10m-w3c-parquet" / "obs.parquet"
        if not pq.exists():
            import duckdb

            print(f"converting to {pq} (once) ...", file=sys.stderr, flush=True)
            pq.parent.mkdir(parents=True, exist_ok=True)
            duckdb.sql(f"COPY (SELECT * FROM read_json('{data}', format='newline_delimited')) "
                       f"TO '{pq}.tmp' (FORMAT PARQUET)")
            os.replace(f"{pq}.tmp", pq)
        return pq.parent
    return data


def bench_files(fmt: str = "jsonl", which: str = "selective", runs: int = 1, baseline: Path | None = None) -> dict:
    """One case: the plain count and blast alternate run by run (and the `baseline` checkout's
    blast, when given, in the same rounds)."""
    # generated in a child: a child forked from a bench that had DuckDB write 3 GB would report
    # the bench's own peak as its RSS (Linux carries ru_maxrss over fork and exec)
    proc = subprocess.run([sys.executable, __file__, "--prepare", fmt], text=True, stdout=subprocess.PIPE)
    if proc.returncode != 0:
        raise SystemExit(f"could not prepare the {fmt} store")
    data = Path(proc.stdout.strip().splitlines()[-1])
    work = CACHE / f"blast-10m-runbook-{fmt}"
    work.mkdir(parents=True, exist_ok=True)
    rb = (REPO / "runbook.yaml").read_text().replace("path: .agentfire/traces", f"path: {data}")
    (work / "runbook.yaml").write_text(rb)
    env = {**os.environ, "PYTHONPATH": str(REPO), "AGENTFIRE_CONFIG": str(work / "runbook.yaml"),
           "NO_COLOR": "1"}
    env.pop("AGENTFIRE_INCIDENT", None)
    flags, tool, needle, expected, (lo, hi) = SIGNATURES[which]
    cmd = [sys.executable, "-m", "agentfire", "blast", *flags, "--from", lo, "--to", hi, "--json"]
    plain_cmd = [sys.executable, "-c", PLAIN, fmt, str(data), tool, needle, lo, hi]
    # as an installed agentfire runs: its bytecode compiled (pip compiles at install; a checkout
    # under PYTHONDONTWRITEBYTECODE would compile every module at every start, ~80 ms) and its
    # runbook validated once before (agentfire.runbook's cache): one unmeasured blast first
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agentfire")], check=True,
                   stdout=subprocess.DEVNULL)
    measure(cmd, env, work)
    base_env = {**env, "PYTHONPATH": str(baseline)} if baseline else None
    if baseline:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(baseline / "agentfire")], check=True,
                       stdout=subprocess.DEVNULL)
        measure(cmd, base_env, work)  # type: ignore[arg-type]
    done, plains, befores = [], [], []
    for k in range(runs):  # the plain count and blast alternate: each pair under the same load
        p = measure(plain_cmd, env, work)
        assert p["code"] == 0 and int(p["stdout"].split()[-1]) == expected, p
        plains.append(p)
        if base_env is not None:
            b = measure(cmd, base_env, work)
            ok_b = b["code"] == 0 and json.loads(b["stdout"])["trajectories"] == expected
            befores.append(b["wall_s"] if ok_b else float("nan"))
        r = measure(cmd, env, work)
        if r["code"] != 0:
            print(f"  run {k + 1}/{runs}: blast exited {r['code']}: {r['stderr'][-300:]}", flush=True)
            done.append({**r, "ok": False})
            continue
        doc = json.loads(r["stdout"])
        ok = doc["trajectories"] == expected and doc["complete"]
        done.append({**r, "ok": ok, "hits": doc["trajectories"], "scan_s": doc["scan"]["seconds"],
                     "warnings": doc["warnings"]})
        print(f"  run {k + 1}/{runs}: blast {r['wall_s']:.2f} s, {r['rss_mb']} MB, {doc['trajectories']} hits; "
              f"plain count {p['wall_s']:.2f} s ({r['wall_s'] / p['wall_s']:.2f}x)"
              + (f", warnings: {doc['warnings']}" if doc["warnings"] else ""), flush=True)
    good = [r for r in done if r["ok"]]
    walls = sorted(r["wall_s"] for r in good)
    plain_walls = sorted(p["wall_s"] for p in plains)
    plain_s = plain_walls[len(plain_walls) // 2]
    out = {"observations": 10_000_000, "format": fmt, "signature": which, "runs": runs,
           "completed": len(good), "wall_s_median": walls[len(walls) // 2] if walls else None,
           "wall_s_max": walls[-1] if walls else None,
           "max_rss_mb": max((r["rss_mb"] for r in done), default=None),
           "plain_duckdb_s": plain_s, "plain_duckdb_rss_mb": max(p["rss_mb"] for p in plains),
           "hits": expected, "load_avg": round(os.getloadavg()[0], 1)}
    if befores:
        out["baseline_s_median"] = sorted(befores)[len(befores) // 2]
    ratio = (out["wall_s_median"] / plain_s) if walls else float("nan")
    print(f"files store, 10,000,000 observations ({fmt}), {which} signature {' '.join(flags)} {lo}..{hi}: "
          f"{len(good)}/{runs} runs complete; blast median {out['wall_s_median']} s (max {out['wall_s_max']} s), "
          f"max RSS of all runs {out['max_rss_mb']} MB; plain DuckDB count median {plain_s:.2f} s "
          f"({out['plain_duckdb_rss_mb']} MB): {ratio:.2f}x; load average {out['load_avg']}"
          + (f"; baseline {baseline}: median {out['baseline_s_median']} s ({out['baseline_s_median'] / plain_s:.2f}x)"
             if befores else ""), flush=True)
    return out


def langfuse_rows(now) -> tuple[list[dict], dict]:
    """The sandbox's wrong_recipient incident, 2,000 trajectories over 6 h, each padded with
    framework spans (chains, retrievers) to 20 observations: 40,000 in all."""
    import tempfile
    from datetime import timedelta

    from agentfire.sandbox import seed_store
    from agentfire.trajectory import iso, parse_time

    d = Path(tempfile.mkdtemp(prefix="blast-bench-"))
    res = seed_store(d, scenario="wrong_recipient", traces=2000, seed=3, now=now)
    rows = [json.loads(line) for line in res.data_file.read_text().splitlines()]
    by_trace: dict[str, list[dict]] = {}
    for r in rows:
        by_trace.setdefault(r["traceId"], []).append(r)
    for tid, rs in by_trace.items():
        anchor = min(rs, key=lambda r: r["startTime"])
        parent = next((r["id"] for r in rs if not r.get("parentObservationId")), None)
        t0 = parse_time(anchor["startTime"])
        for k in range(20 - len(rs)):
            at = t0 + timedelta(milliseconds=3 * k + 1)
            rows.append({"id": f"{tid}-pad{k}", "traceId": tid, "type": "CHAIN" if k % 2 else "RETRIEVER",
                         "name": "framework.step", "parentObservationId": parent or f"{tid}-root",
                         "startTime": iso(at), "endTime": iso(at + timedelta(milliseconds=1)),
                         "input": "{}", "output": "{}", "level": "DEFAULT", "userId": anchor.get("userId")})
    return rows, res.truth


def naive(base_url: str, auth: tuple[str, str], sig, window) -> set[str]:
    """The runbook's own sketch: list every trace in the window, fetch each one, match in Python."""
    import httpx

    from agentfire.trajectory import from_observations, iso

    hits: set[str] = set()
    with httpx.Client(base_url=base_url, auth=auth, timeout=30) as c:
        ids, page = [], 1
        while True:
            r = c.get("/api/public/traces", params={"fromTimestamp": iso(window.start),
                                                    "toTimestamp": iso(window.end), "page": page, "limit": 100})
            r.raise_for_status()
            doc = r.json()
            ids += [t["id"] for t in doc["data"]]
            if page >= doc["meta"]["totalPages"]:
                break
            page += 1
        for tid in ids:
            rows, cursor = [], None
            while True:
                params = {"traceId": tid, "fields": "core,basic,io,metadata,model,usage", "limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                r = c.get("/api/public/v2/observations", params=params)
                r.raise_for_status()
                doc = r.json()
                rows += doc["data"]
                cursor = (doc.get("meta") or {}).get("cursor")
                if not cursor:
                    break
            if sig.matches(from_observations(tid, rows), (window.start, window.end)):
                hits.add(tid)
    return hits


def bench_langfuse() -> dict | None:
    import asyncio
    from datetime import datetime, timedelta, timezone

    try:
        from agentfire.blast.pushdown import LangfusePushdown
        from agentfire.blast.remote_scan import RemoteScan
        from agentfire.providers.traces.langfuse import LangfuseTraceStore
        from tests.fakes.langfuse import FakeLangfuse
    except ImportError as exc:
        print(f"langfuse: not run ({exc})")
        return None
    from agentfire.blast import from_flags, resolve

    now = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    rows, truth = langfuse_rows(now)
    n_traces = len({r["traceId"] for r in rows})
    sig = from_flags(tool="send_email", args=["to~invoices@ledgerline-payments.net"])
    window = resolve(from_=(now - timedelta(hours=6)).isoformat(), to=(now + timedelta(seconds=1)).isoformat())
    want = {f["trace_id"] for f in truth["failing"]}
    with FakeLangfuse(rows=rows, latency=0.05) as fake:
        auth = (fake.public_key, fake.secret_key)
        fake.reset_counts()
        t = time.monotonic()
        store = LangfuseTraceStore(fake.base_url, *auth)
        result = asyncio.run(RemoteScan(store, LangfusePushdown()).run(sig, window))
        blast_s, blast_n = time.monotonic() - t, fake.count()
        assert {h.trace_id for h in result.hits} == want and result.complete
        fake.reset_counts()
        t = time.monotonic()
        naive_hits = naive(fake.base_url, auth, sig, window)
        naive_s, naive_n = time.monotonic() - t, fake.count()
        assert naive_hits == want
    print(f"langfuse fake, 50 ms latency, {n_traces} trajectories / {len(rows)} observations in 6 h, "
          f"{len(want)} hits:")
    print(f"  {'':8} {'requests':>9} {'wall s':>8}")
    print(f"  {'blast':8} {blast_n:>9} {blast_s:>8.2f}")
    print(f"  {'naive':8} {naive_n:>9} {naive_s:>8.2f}")
    print(f"  ratio    {naive_n / blast_n:>8.0f}x {naive_s / blast_s:>7.0f}x   [targets: >= 20x fewer requests, >= 10x faster]")
    return {"blast_requests": blast_n, "blast_s": round(blast_s, 2), "naive_requests": naive_n,
            "naive_s": round(naive_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files-only", action="store_true")
    ap.add_argument("--langfuse-only", action="store_true")
    ap.add_argument("--parquet-only", action="store_true")
    ap.add_argument("--runs", type=int, default=1, help="runs of the selective JSONL scan (10 for the flakiness check)")
    ap.add_argument("--parquet-runs", type=int, default=5,
                    help="runs of each Parquet scan (medians: a single run on a shared box is noise)")
    ap.add_argument("--no-non-selective", action="store_true", help="skip the --tool read_inbox scans")
    ap.add_argument("--case", action="append", metavar="FORMAT:SIGNATURE",
                    help=f"run only these (repeatable), e.g. parquet:selective-1h; signatures: {', '.join(SIGNATURES)}")
    ap.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                    help="another checkout (git worktree add /tmp/before COMMIT) whose blast runs in the same rounds")
    ap.add_argument("--prepare", choices=["jsonl", "parquet"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.prepare:
        print(prepare(a.prepare))
        return
    rows = []
    cases = [tuple(c.split(":", 1)) for c in a.case or []]
    if not cases and not a.langfuse_only:
        if not a.parquet_only:
            cases += [("jsonl", "selective")] + ([] if a.no_non_selective else [("jsonl", "non-selective"),
                                                                              ("jsonl", "loop")])
        cases += [("parquet", "selective"), ("parquet", "selective-1h"), ("parquet", "search-10min"),
                  ("parquet", "sequence")]
        cases += [] if a.no_non_selective else [("parquet", "non-selective"), ("parquet", "loop")]
    for fmt, which in cases:
        if which not in SIGNATURES or fmt not in ("jsonl", "parquet"):
            raise SystemExit(f"--case {fmt}:{which}: unknown (formats jsonl, parquet; signatures {', '.join(SIGNATURES)})")
        runs = a.parquet_runs if fmt == "parquet" else (a.runs if which == "selective" else 1)
        rows.append(bench_files(fmt, which, runs, a.baseline))
    if rows:
        print(f"\n{'format':<8} {'signature':<14} {'complete':>9} {'blast s':>8} {'max RSS MB':>11} "
              f"{'plain s':>8} {'ratio':>6} {'baseline s':>11}   [targets: 10/10 complete; non-selective < 30 s "
              "and < 1024 MB; Parquet within 2x of the plain count]")
        for r in rows:
            ratio = r["wall_s_median"] / r["plain_duckdb_s"] if r["wall_s_median"] else float("nan")
            print(f"{r['format']:<8} {r['signature']:<14} {r['completed']:>4}/{r['runs']:<4} "
                  f"{r['wall_s_median'] or '-':>8} {r['max_rss_mb']:>11} {r['plain_duckdb_s']:>8} {ratio:>5.2f}x "
                  f"{r.get('baseline_s_median', '-'):>11}")
        print(json.dumps(rows))
    if not a.files_only and not a.case:
        bench_langfuse()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
