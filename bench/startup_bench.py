"""agentfire start-up, measured side by side in one run:  python3 bench/startup_bench.py

Whole processes, interleaved round by round so machine load hits them alike, median of N runs,
wall and CPU (the child's user+system time):

    python -c pass                         the floor: the interpreter and site
    agentfire --help
    agentfire status                       3 flagd regions (the embedded sandbox), spend caps
    agentfire kill --region all --yes      3 flagd regions: read, write, read back, and each
                                           region's agent view (the flag as agents evaluate it)
    agentfire kill --undo --yes

against a fresh copy of the embedded sandbox in a temp dir. `--baseline DIR` runs the same
commands from another checkout (e.g. `git worktree add /tmp/before <commit>`) in the same rounds,
for a before/after in one run. Also lists the heavy modules each command imports
(python -X importtime). Targets: status and a 3-region kill under 0.2 s wall, --help under 0.3 s.

Bytecode: the children may write __pycache__ (a warm-up round runs first), as an installed
package has its .pyc files; PYTHONDONTWRITEBYTECODE in the environment would otherwise make every
run compile agentfire from source.

Prints a table and the load average; exits 1 when a target is missed. Not part of pytest.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# top-level packages a start-up must not need (imported only by the command that uses them)
HEAVY = ("pydantic", "pydantic_core", "grpc", "google", "openfeature", "duckdb", "langfuse",
         "opentelemetry", "httpx", "httpcore", "redis", "pyarrow", "phoenix")

COMMANDS: list[tuple[str, list[str]]] = [
    ("agentfire --help", ["--help"]),
    ("agentfire status", ["status"]),
    ("agentfire kill (3 regions)", ["kill", "--region", "all", "--yes", "--reason", "bench"]),
    ("agentfire kill --undo (3 regions)", ["kill", "--undo", "--yes"]),
]
TARGETS = {"agentfire --help": 0.3, "agentfire status": 0.2, "agentfire kill (3 regions)": 0.2}


def child_env(repo: Path, sandbox: Path) -> dict[str, str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    env["PYTHONPATH"] = str(repo)
    env["AGENTFIRE_CONFIG"] = str(sandbox / "runbook.yaml")
    for name in ("AGENTFIRE_INCIDENT", "PYTHONDONTWRITEBYTECODE", "AGENTFIRE_FORCE_TTY"):
        env.pop(name, None)
    return env


def make_sandbox(repo: Path, root: Path) -> Path:
    sb = root / "sandbox"
    sb.mkdir(parents=True)
    shutil.copy(repo / "runbook.yaml", sb / "runbook.yaml")
    shutil.copytree(repo / "fallbacks", sb / "fallbacks")
    return sb


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, cpu) of one whole process; a failure stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    p = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {p.returncode}:\n{p.stderr.decode()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(argv: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    p = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd,
                       capture_output=True, text=True)
    found = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            top = line.rsplit("|", 1)[1].strip().split(".")[0]
            if top in HEAVY:
                found.add(top)
    return sorted(found)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="rounds (median of each command)")
    ap.add_argument("--baseline", type=Path, help="another checkout to measure in the same rounds")
    args = ap.parse_args()

    checkouts = [("", REPO)] + ([("before: ", args.baseline.resolve())] if args.baseline else [])
    tmp = Path(tempfile.mkdtemp(prefix="agentfire-startup-"))
    try:
        setups = []
        for label, repo in checkouts:
            sb = make_sandbox(repo, tmp / (label.strip(": ") or "this"))
            setups.append((label, repo, sb, child_env(repo, sb)))
        agentfire = [sys.executable, "-m", "agentfire"]
        floor = ("python -c pass", [sys.executable, "-c", "pass"])
        samples: dict[str, list[tuple[float, float]]] = {}
        load_before = os.getloadavg()
        for round_ in range(args.runs + 1):  # round 0 warms the bytecode caches and the sandbox
            for label, repo, sb, env in setups:
                for name, argv in [floor] + [(n, agentfire + a) for n, a in COMMANDS]:
                    if label and name == floor[0]:
                        continue
                    w, c = run(argv, env, sb)
                    if round_:
                        samples.setdefault(label + name, []).append((w, c))
        load_after = os.getloadavg()
        imports = {label + n: heavy_imports(agentfire + a, env, sb)
                   for label, repo, sb, env in setups for n, a in COMMANDS}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    floor_wall = statistics.median(w for w, _ in samples[floor[0]])
    width = max(len(k) for k in samples) + 2
    print(f"{'whole process, median of ' + str(args.runs):<{width}} {'wall':>8} {'cpu':>8} "
          f"{'- python':>9} {'target':>8}  verdict  heavy imports")
    print("-" * (width + 70))
    ok = True
    for name, vals in samples.items():
        wall = statistics.median(w for w, _ in vals)
        cpu = statistics.median(c for _, c in vals)
        target = TARGETS.get(name)
        verdict = "" if target is None else ("PASS" if wall < target else "FAIL")
        ok = ok and verdict != "FAIL"
        heavy = ", ".join(imports.get(name, [])) or ("none" if name in imports else "")
        print(f"{name:<{width}} {wall * 1000:6.0f}ms {cpu * 1000:6.0f}ms {(wall - floor_wall) * 1000:7.0f}ms "
              f"{'< %.1fs' % target if target else '':>8}  {verdict:<7}  {heavy}")
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} cpus, load average "
          f"{load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end; agentfire from {REPO}"
          + (f"; before: {args.baseline}" if args.baseline else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
