"""blast benchmarks, one command: python3 bench/blast_bench.py [--files-only|--langfuse-only]

1. Files store: 10 million observations (JSON lines, about 3.3 GB, generated once by DuckDB into
   a cache dir) scanned by `agentfire blast` as a whole process; wall time and peak RSS.
   Targets: under 10 s and under 1 GB.
2. Langfuse: 2,000 trajectories / 40,000 observations in a 6 h window behind the Langfuse contract
   fake with 50 ms latency per request: agentfire's blast against the naive approach (list every
   trace in the window, fetch each one, match in Python), side by side: requests and wall time.
   Targets: at least 20x fewer requests and 10x faster.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("AGENTFIRE_BENCH_CACHE", Path.home() / ".cache/agentfire/bench"))


def generate_10m(path: Path, n: int = 10_000_000) -> None:
    """500,000 trajectories of 20 observations (root, model calls, tools); 1 in 997 sends the
    landlord an email. Written by DuckDB itself (about 15 s) and kept for the next run."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    con = duckdb.connect()
    con.execute(f"""
    COPY (
    SELECT 'o' || i AS id, 't' || (i // 20) AS traceId,
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


def bench_files(fmt: str = "jsonl") -> dict:
    data = CACHE / "blast-10m.jsonl"
    if not data.exists():
        print(f"generating {data} (once) ...", flush=True)
        t = time.monotonic()
        generate_10m(data)
        print(f"  generated in {time.monotonic() - t:.1f} s", flush=True)
    if fmt == "parquet":
        pq = CACHE / "blast-10m-parquet" / "obs.parquet"
        if not pq.exists():
            import duckdb

            print(f"converting to {pq} (once) ...", flush=True)
            pq.parent.mkdir(parents=True, exist_ok=True)
            duckdb.sql(f"COPY (SELECT * FROM read_json('{data}', format='newline_delimited')) "
                       f"TO '{pq}.tmp' (FORMAT PARQUET)")
            os.replace(f"{pq}.tmp", pq)
        data = pq.parent
    work = CACHE / f"blast-10m-runbook-{fmt}"
    work.mkdir(parents=True, exist_ok=True)
    rb = (REPO / "runbook.yaml").read_text().replace("path: .agentfire/traces", f"path: {data}")
    (work / "runbook.yaml").write_text(rb)
    env = {**os.environ, "PYTHONPATH": str(REPO), "AGENTFIRE_CONFIG": str(work / "runbook.yaml"),
           "NO_COLOR": "1"}
    env.pop("AGENTFIRE_INCIDENT", None)
    cmd = [sys.executable, "-m", "agentfire", "blast", "--tool", "send_email", "--arg", "to~landlord",
           "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z", "--json"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    rss_mb = r1.ru_maxrss / 1024
    # the machine is shared: CPU seconds / cores is what an idle 2-core machine would take
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    load = os.getloadavg()[0]
    if proc.returncode not in (0,):
        print(proc.stderr[-2000:])
        raise SystemExit(f"blast exited {proc.returncode}")
    doc = json.loads(proc.stdout)
    expected = len(range(0, 500_000, 997))
    assert doc["trajectories"] == expected, (doc["trajectories"], expected)
    out = {"observations": 10_000_000, "format": fmt, "wall_s": round(wall, 2),
           "peak_rss_mb": round(rss_mb), "hits": doc["trajectories"],
           "still_open": doc["still_open_count"], "scan_s": doc["scan"]["seconds"],
           "cpu_s": round(cpu, 2), "load_avg": round(load, 1)}
    print(f"files store: 10,000,000 observations ({fmt}): "
          f"{wall:.2f} s wall (scan {doc['scan']['seconds']:.2f} s), peak RSS {rss_mb:.0f} MB, "
          f"CPU {cpu:.1f} s (= {cpu / (os.cpu_count() or 1):.1f} s on {os.cpu_count()} idle cores; "
          f"load average {load:.1f}), {doc['trajectories']} hits, {doc['still_open_count']} still open  "
          f"[targets: < 10 s, < 1024 MB]")
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
    a = ap.parse_args()
    if not a.langfuse_only:
        if not a.parquet_only:
            bench_files("jsonl")
        bench_files("parquet")
    if not a.files_only:
        bench_langfuse()


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
