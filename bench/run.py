"""agentfire benchmarks, measured side by side in one run:  python3 bench/run.py

(a) kill across 20 regions behind a fake Unleash that takes 100 ms per request
    (bench/fake_unleash.py, a separate process): agentfire's concurrent kill (the killswitch core
    in this process, and `agentfire kill` as a whole process) against the same flips done one
    region after another (read, write, read back per region, through the same provider class).
    Target: concurrent at least 8x faster than sequential.
(b) start-up: `agentfire --help` as a whole process against `python -c pass` (median of N runs
    each, interleaved). Target: under 0.3 s, and no heavy import (langfuse, opentelemetry, duckdb,
    redis, httpx, pydantic, grpc) when the CLI starts (checked with python -X importtime).
    bench/startup_bench.py measures status and a 3-region flagd kill the same way.

Prints a table; exits 1 when a target is missed. Not part of pytest (timings belong here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOKEN_ENV = "AGENTFIRE_BENCH_UNLEASH_TOKEN"
TOKEN = "*:*.bench-admin-token"
FLAG = "agent.enabled"
HEAVY = ("langfuse", "opentelemetry", "duckdb", "redis", "httpx", "pydantic", "grpc")


def child_env() -> dict[str, str]:
    env = dict(os.environ, NO_COLOR="1", **{TOKEN_ENV: TOKEN})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("AGENTFIRE_CONFIG", None)
    env.pop("AGENTFIRE_INCIDENT", None)
    return env


# --- (a) kill across 20 slow regions ---------------------------------------------------------


class Fake:
    def __init__(self, regions: int, delay_ms: float):
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "bench/fake_unleash.py"), "--envs", str(regions),
             "--delay-ms", str(delay_ms), "--token", TOKEN, "--flag", FLAG],
            stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("PORT "):
            self.proc.kill()
            raise SystemExit(f"fake Unleash did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def set_all(self, enabled: bool) -> None:
        req = urllib.request.Request(f"{self.url}/_bench/set", data=json.dumps({"enabled": enabled}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def write_runbook(workdir: Path, url: str, regions: int) -> Path:
    lines = ["version: 1", f"agent: {{name: bench-agent, flag: {FLAG}}}", "regions:"]
    for i in range(1, regions + 1):
        lines.append(f"  r{i:02d}: {{kind: unleash, url: '{url}', project: default, "
                     f"environment: env-{i:02d}, token_env: {TOKEN_ENV}}}")
    lines += ["kill: {deadline_seconds: 60}", "journal: {dir: journal}"]
    path = workdir / "runbook.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def core_kill(cfg: Path, incident: str) -> float:
    from agentfire import killswitch
    from agentfire.config import load_runbook
    from agentfire.journal import Journal

    rb = load_runbook(cfg)
    started = time.perf_counter()
    result = killswitch.kill(rb, Journal(rb.journal_dir, incident), region_spec="all", actor="bench")
    took = time.perf_counter() - started
    bad = [r for r in result.regions if r.outcome.value != "CONFIRMED"]
    if bad:
        raise SystemExit(f"concurrent kill did not confirm: {[(r.region, r.outcome.value, r.detail) for r in bad]}")
    return took


def sequential_kill(cfg: Path) -> float:
    """The same flips, one region after another: read, write off, read back, through the same
    provider class agentfire uses (so only the concurrency differs)."""
    from agentfire import providers
    from agentfire.config import load_runbook

    rb = load_runbook(cfg)

    async def flips() -> None:
        for name, section in rb.regions.items():
            provider = providers.build("flags", section, rb)
            try:
                if await provider.read(FLAG) is not True:
                    raise SystemExit(f"{name}: expected on before the sequential kill")
                await provider.write(FLAG, False, comment="bench sequential", dry_run=False)
                if await provider.read(FLAG) is not False:
                    raise SystemExit(f"{name}: read back still on")
            finally:
                await provider.aclose()

    started = time.perf_counter()
    asyncio.run(flips())
    return time.perf_counter() - started


def process_kill(cfg: Path, incident: str) -> float:
    started = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "agentfire", "--config", str(cfg), "--incident", incident, "--new",
                        "kill", "--yes", "--json"], env=child_env(), capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - started
    if p.returncode != 0 or not json.loads(p.stdout)["all_off"]:
        raise SystemExit(f"agentfire kill failed (exit {p.returncode}): {p.stderr[-500:]}")
    return took


def bench_kill(regions: int, delay_ms: float, runs: int, seq_runs: int) -> list[tuple[str, str, str, bool | None]]:
    os.environ[TOKEN_ENV] = TOKEN
    fake = Fake(regions, delay_ms)
    try:
        with tempfile.TemporaryDirectory(prefix="agentfire-bench-") as tmp:
            cfg = write_runbook(Path(tmp), fake.url, regions)
            core, proc, seq = [], [], []
            for i in range(max(runs, seq_runs)):
                if i < runs:
                    fake.set_all(True)
                    core.append(core_kill(cfg, f"bench-core-{i}"))
                    fake.set_all(True)
                    proc.append(process_kill(cfg, f"bench-proc-{i}"))
                if i < seq_runs:
                    fake.set_all(True)
                    seq.append(sequential_kill(cfg))
    finally:
        fake.stop()
    c, p, s = statistics.median(core), statistics.median(proc), statistics.median(seq)
    floor = 3 * delay_ms / 1000  # read, write, read back: three round trips per region
    what = f"{regions} regions, {delay_ms:g} ms/request"
    return [
        (f"sequential flips ({what}, median of {len(seq)})", f"{s:.2f} s", "", None),
        (f"concurrent kill, core ({what}, median of {len(core)})", f"{c:.3f} s",
         f"floor {floor:.1f} s (3 round trips)", None),
        (f"agentfire kill, whole process (median of {len(proc)})", f"{p:.3f} s", "", None),
        ("  of which start-up and imports (process - core)", f"{p - c:.3f} s", "", None),
        ("speed-up, core vs sequential", f"{s / c:.1f}x", ">= 8x", s / c >= 8),
        ("speed-up, whole process vs sequential", f"{s / p:.1f}x", ">= 8x", s / p >= 8),
    ]


# --- (b) start-up ------------------------------------------------------------------------------


def run_once(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=child_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def heavy_imports(args: list[str]) -> list[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", *args], env=child_env(),
                       capture_output=True, text=True, check=True)
    found = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module.split(".")[0] in HEAVY:
                found.add(module.split(".")[0])
    return sorted(found)


def bench_startup(runs: int) -> list[tuple[str, str, str, bool | None]]:
    help_t, pass_t = [], []
    run_once(["-m", "agentfire", "--help"])  # warm the bytecode cache
    for _ in range(runs):  # interleaved, so machine load hits both alike
        pass_t.append(run_once(["-c", "pass"]))
        help_t.append(run_once(["-m", "agentfire", "--help"]))
    h, p = statistics.median(help_t), statistics.median(pass_t)
    at_import = heavy_imports(["-c", "import agentfire.cli"])
    at_help = heavy_imports(["-m", "agentfire", "--help"])
    return [
        (f"python -c pass (median of {runs})", f"{p:.3f} s", "", None),
        (f"agentfire --help, whole process (median of {runs})", f"{h:.3f} s", "< 0.3 s", h < 0.3),
        ("agentfire --help minus python start", f"{h - p:.3f} s", "", None),
        ("agentfire --help / python -c pass", f"{h / p:.1f}x", "", None),
        ("heavy imports at `import agentfire.cli`", ", ".join(at_import) or "none", "none", not at_import),
        ("heavy imports during `agentfire --help`", ", ".join(at_help) or "none", "none", not at_help),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description="agentfire benchmarks (prints a table; exit 1 if a target is missed)")
    ap.add_argument("--regions", type=int, default=20)
    ap.add_argument("--delay-ms", type=float, default=100.0)
    ap.add_argument("--runs", type=int, default=5, help="runs of each concurrent kill (median)")
    ap.add_argument("--seq-runs", type=int, default=2, help="runs of the slow sequential baseline")
    ap.add_argument("--startup-runs", type=int, default=15)
    args = ap.parse_args()

    rows = bench_kill(args.regions, args.delay_ms, args.runs, args.seq_runs) + bench_startup(args.startup_runs)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>12}  {'target':<28}  verdict")
    print("-" * (width + 52))
    for name, value, target, ok in rows:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{name:<{width}}  {value:>12}  {target:<28}  {verdict}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {load:.1f}; "
          f"agentfire from {REPO}")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
