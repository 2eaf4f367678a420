"""watch benchmarks, one command:  python3 bench/watch_bench.py [--traces 10000] [--skip-langfuse]

1. One `agentfire watch` round over N new trajectories (default 10,000: the sandbox's
   wrong_recipient scenario, about 4% failing) in the files store, and the same rows behind the
   Langfuse contract fake (tests/fakes/langfuse.py; --latency-ms per request, default 50): wall
   time of the round, split into the store read and triage, trajectories per second, requests
   to Langfuse; and whether it paged (the failing ones end inside the rule's window). Target: one
   round over 10,000 trajectories within the default 60 s round interval.
2. The tau-airline dev set (../shared/datasets/tau-airline, outside the repository; skipped when
   absent): one round over its solved runs (reward 1) and, apart, over every run: how many
   verdicts of medium/high severity the solved runs produce and whether any alert fires
   (target: no page on solved runs). Rule thresholds are the runbook's defaults.

Prints a table; exits 1 when a target is missed. Not part of pytest (timings belong here).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEVSET = next((p / "shared" / "datasets" / "tau-airline" for p in REPO.parents
               if (p / "shared" / "datasets" / "tau-airline").is_dir()),
              REPO.parent / "shared" / "datasets" / "tau-airline")
RUNBOOK = """\
version: 1
agent: {{name: support-agent, flag: agent.enabled}}
regions: {{local: {{kind: flagd, path: flags.json, create: true}}}}
traces: {traces}
watch: {{state: watch-state.json, max_per_round: 1000000{extra}}}
"""


def _runbook(root: Path, traces: dict[str, Any], extra: str = "") -> Any:
    from agentfire.config import load_runbook

    (root / "runbook.yaml").write_text(RUNBOOK.format(traces=json.dumps(traces), extra=extra))
    return load_runbook(root / "runbook.yaml")


def one_round(rb: Any, now: datetime, since_s: float) -> Any:
    from agentfire import watch

    state = watch.state_path(rb)
    if state.exists():
        state.unlink()
    t0 = time.perf_counter()
    r = watch.run_round(rb, now=now, since_s=since_s, send=True)
    r.wall_s = time.perf_counter() - t0  # type: ignore[attr-defined]
    return r


def bench_rounds(n: int, latency_ms: float, skip_langfuse: bool) -> list[dict[str, Any]]:
    from agentfire.sandbox import seed_store

    out = []
    with tempfile.TemporaryDirectory(prefix="agentfire-watch-bench-") as tmp:
        root = Path(tmp)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        res = seed_store(root / "traces", scenario="wrong_recipient", traces=n, seed=3, now=now)
        # the round at now + 20 min: every trajectory of the 6 h window has ended or gone stale
        at = now + timedelta(minutes=20)
        rb = _runbook(root, {"kind": "files", "path": "traces", "seed_scenario": None})
        r = one_round(rb, at, since_s=7 * 3600)
        out.append({"store": "files", "trajectories": r.triaged, "rows": res.rows, "wall_s": r.wall_s,
                    "read_s": r.read_ms / 1000, "triage_s": r.triage_ms / 1000, "requests": None,
                    "findings": len(r.findings), "pages": len(r.actions("trigger")), "ok": r.ok})
        if skip_langfuse:
            return out
        # the fake in its own process: its page building and validation must not share this
        # process's interpreter lock with the round being measured
        import subprocess

        proc = subprocess.Popen([sys.executable, __file__, "--serve-langfuse", str(res.data_file),
                                 "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                text=True)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line.startswith("ENV "):
                raise SystemExit(f"the Langfuse fake did not start: {line!r}")
            os.environ.update(json.loads(line[4:]))
            rb = _runbook(root, {"kind": "langfuse"})
            from agentfire import providers

            store = providers.build("traces", rb.traces, rb)
            state = root / "watch-state.json"
            if state.exists():
                state.unlink()
            from agentfire import watch

            t0 = time.perf_counter()
            r = watch.run_round(rb, now=at, since_s=7 * 3600, store=store)
            wall = time.perf_counter() - t0
            out.append({"store": f"langfuse fake ({latency_ms:g} ms)", "trajectories": r.triaged, "rows": res.rows,
                        "wall_s": wall, "read_s": r.read_ms / 1000, "triage_s": r.triage_ms / 1000,
                        "requests": store.requests_made, "findings": len(r.findings),
                        "pages": len(r.actions("trigger")), "ok": r.ok, "errors": r.errors})
        finally:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=30)
    return out


def bench_devset(data: Path) -> list[dict[str, Any]]:
    from agentfire.trajectory import from_observations, parse_time

    cases = json.loads((data / "cases.json").read_text(encoding="utf-8"))
    solved = {c["trace"] for c in cases if c["reward"] >= 1}
    runs = {c["trace"] for c in cases}
    rows_by: dict[str, list[str]] = {}
    with (data / "observations.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                tid = json.loads(line)["traceId"]
                rows_by.setdefault(tid, []).append(line if line.endswith("\n") else line + "\n")
    # the dev set's timestamps are historical (one minute of 2026-11-20): the round runs just after
    # its last trajectory stopped, and the rules' windows (the defaults but 2 h) hold all of it
    from agentfire import watch

    far = datetime(2100, 1, 1, tzinfo=timezone.utc)
    stops, starts = [], []
    for tid in runs:
        t = from_observations(tid, [json.loads(x) for x in rows_by[tid]], as_of=far)
        stops.append(watch.done_time(t) or far)
        starts.append(t.start)
    at = max(stops) + timedelta(minutes=1)
    since = (at - min(s for s in starts if s)).total_seconds() + 60
    extra = (", lookback_seconds: 7200, rules: [{name: high, min_severity: high, threshold: 1, window_seconds: 7200},"
             " {name: medium, min_severity: medium, threshold: 3, window_seconds: 7200, severity: warning}]")
    out = []
    for label, keep in (("tau-airline solved", solved), ("tau-airline all", runs)):
        with tempfile.TemporaryDirectory(prefix="agentfire-watch-devset-") as tmp:
            root = Path(tmp)
            (root / "traces").mkdir()
            with open(root / "traces" / "devset.jsonl", "w", encoding="utf-8") as fh:
                for tid in sorted(keep):
                    fh.writelines(rows_by[tid])
            rb = _runbook(root, {"kind": "files", "path": "traces", "seed_scenario": None}, extra)
            r = one_round(rb, at, since_s=since)
            out.append({"set": label, "trajectories": r.triaged, "findings": len(r.findings),
                        "kinds": sorted({f["kind"] for f in r.findings}),
                        "pages": len(r.actions("trigger")), "wall_s": r.wall_s, "ok": r.ok})
    return out


def serve_langfuse(data: Path, latency_ms: float) -> int:
    from tests.fakes.langfuse import FakeLangfuse

    rows = [json.loads(x) for x in data.read_text().splitlines() if x.strip()]
    with FakeLangfuse(rows=rows, latency=latency_ms / 1000) as fake:
        print("ENV " + json.dumps(fake.env()), flush=True)
        sys.stdin.read()  # until the parent closes it
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve-langfuse", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--traces", type=int, default=10_000)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--skip-langfuse", action="store_true")
    ap.add_argument("--data", type=Path, default=DEVSET, help=f"the tau-airline directory (default {DEVSET})")
    a = ap.parse_args()
    if a.serve_langfuse is not None:
        return serve_langfuse(a.serve_langfuse, a.latency_ms)
    missed = []
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"one watch round over {a.traces:,} new trajectories (target: under the 60 s round interval)")
    print(f"  {'store':<24} {'traj':>6} {'rows':>8} {'round s':>8} {'read s':>7} {'triage s':>8} "
          f"{'traj/s':>7} {'requests':>8} {'findings':>8} {'pages':>5}")
    for row in bench_rounds(a.traces, a.latency_ms, a.skip_langfuse):
        print(f"  {row['store']:<24} {row['trajectories']:>6} {row['rows']:>8} {row['wall_s']:>8.1f} "
              f"{row['read_s']:>7.1f} {row['triage_s']:>8.1f} {row['trajectories'] / row['wall_s']:>7.0f} "
              f"{row['requests'] if row['requests'] is not None else '-':>8} {row['findings']:>8} {row['pages']:>5}")
        if not row["ok"]:
            missed.append(f"{row['store']}: round error {row.get('errors')}")
        if row["wall_s"] > 60:
            missed.append(f"{row['store']}: round took {row['wall_s']:.0f} s")
        if row["trajectories"] < a.traces:
            missed.append(f"{row['store']}: triaged {row['trajectories']} of {a.traces}")
    if (a.data / "cases.json").is_file():
        print(f"\ntau-airline dev set ({a.data}): one round (target: solved runs never page)")
        for row in bench_devset(a.data):
            print(f"  {row['set']:<20} {row['trajectories']:>4} trajectories  {row['findings']:>3} medium/high "
                  f"verdicts {row['kinds']}  pages {row['pages']}  ({row['wall_s']:.1f} s)")
            if row["set"].endswith("solved") and row["pages"]:
                missed.append(f"{row['pages']} page(s) on solved tau-airline runs")
    else:
        print(f"\ntau-airline dev set not found at {a.data}: skipped (pass --data DIR)")
    if missed:
        print("target missed: " + "; ".join(missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
