"""Triage on the tau-airline dev set: `python bench/triage_devset.py [--data DIR]`.

The dev set (../shared/datasets/tau-airline/, not copied into the repository) holds 200 real
trajectories of a tool-using airline agent: 84 solved their task (reward 1), 116 did not; each has
a `-golden` trace with the task's correct state-changing calls. Measured here, side by side in one
run, without and with the golden run (the default golden diff mode):

  - false alarms: solved runs whose verdict carries a medium or high severity (target <= 5%);
  - flagged: failed runs whose verdict carries a medium or high severity (target >= 60% with golden).
  - pointing without a finding: on failed runs where nothing fires without the golden run, how
    often the verdict's step (the place it says to start reading) is the step the golden diff
    names, and how often that step is among the verdict's candidates.

The trajectories are read the way the `files` trace store reads them (agentfire.trajectory.
from_observations over the rows of each trace) and triaged with the default runbook triage section
(or `--config runbook.yaml`'s). Exits 1 when a target is missed, 2 when the dev set is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agentfire.config import TriageSection  # noqa: E402
from agentfire.trajectory import from_observations  # noqa: E402
from agentfire.triage import triage_trajectory  # noqa: E402

# ../shared/datasets/tau-airline beside the checkout (or beside a parent of it, for worktrees)
DEFAULT_DATA = next((p / "shared" / "datasets" / "tau-airline" for p in REPO.parents
                     if (p / "shared" / "datasets" / "tau-airline").is_dir()),
                    REPO.parent / "shared" / "datasets" / "tau-airline")
ALARM = ("high", "medium")


def load(data: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    cases = json.loads((data / "cases.json").read_text(encoding="utf-8"))
    rows: dict[str, list[dict]] = defaultdict(list)
    with (data / "observations.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = json.loads(line)
                rows[r["traceId"]].append(r)
    return cases, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help=f"the tau-airline directory (default {DEFAULT_DATA})")
    ap.add_argument("--config", type=Path, default=None, help="a runbook.yaml whose triage section to use")
    ap.add_argument("--verbose", "-v", action="store_true", help="one line per trajectory")
    a = ap.parse_args()
    if not (a.data / "cases.json").is_file() or not (a.data / "observations.jsonl").is_file():
        print(f"the tau-airline dev set is missing: no cases.json / observations.jsonl in {a.data} "
              "(pass --data DIR)", file=sys.stderr)
        return 2
    cfg = TriageSection()
    if a.config is not None:
        from agentfire.config import load_runbook

        cfg = load_runbook(a.config).model.triage

    t0 = time.perf_counter()
    cases, rows = load(a.data)
    results: dict[str, Counter] = {"without": Counter(), "with": Counter()}
    kinds: dict[str, Counter] = {"without": Counter(), "with": Counter()}
    pointing: Counter = Counter()
    for c in cases:
        traj = from_observations(c["trace"], rows[c["trace"]], source="devset")
        golden = from_observations(c["golden"], rows[c["golden"]], source="devset")
        solved = c["reward"] >= 1
        reports = {}
        for label, g in (("without", None), ("with", golden)):
            rep = reports[label] = triage_trajectory(traj, cfg, g, golden_label=c["golden"]) if g is not None \
                else triage_trajectory(traj, cfg)
            alarm = rep.verdict.severity in ALARM
            results[label][("solved" if solved else "failed", alarm)] += 1
            if alarm:
                kinds[label][(("solved" if solved else "failed"), rep.verdict.kind)] += 1
            if a.verbose:
                v = rep.verdict
                print(f"{c['trace']:<24} {'solved' if solved else 'failed'} {label:<7} "
                      f"{v.severity or '-':<6} {v.kind:<20} step {v.step_index}: {v.sentence[:150]}")
        bare, diffed = reports["without"].verdict, reports["with"].verdict
        if not solved and bare.kind == "none" and diffed.kind == "golden_divergence":
            pointing["n"] += 1
            pointing["verdict"] += bare.step_index == diffed.step_index
            pointing["candidates"] += diffed.step_index in {x.step_index for x in bare.candidates}
    elapsed = time.perf_counter() - t0

    n_solved = sum(1 for c in cases if c["reward"] >= 1)
    n_failed = len(cases) - n_solved
    print(f"triage on the tau-airline dev set ({a.data}): {len(cases)} trajectories, "
          f"{n_solved} solved, {n_failed} failed; {elapsed:.1f} s")
    missed = []
    for label in ("without", "with"):
        fa = results[label][("solved", True)]
        fl = results[label][("failed", True)]
        print(f"  {label:<7} golden: false alarms {fa:3d}/{n_solved} ({fa / n_solved:5.1%}, target <= 5%)   "
              f"flagged failed {fl:3d}/{n_failed} ({fl / n_failed:5.1%}"
              f"{', target >= 60%' if label == 'with' else ''})")
        for (group, kind), n in sorted(kinds[label].items()):
            print(f"           {group} {kind}: {n}")
        if fa / n_solved > 0.05:
            missed.append(f"false alarms {label} golden")
        if label == "with" and fl / n_failed < 0.60:
            missed.append("flagged failed with golden")
    if pointing["n"]:
        print(f"  pointing without a finding (failed, nothing fired without golden, golden diff names a step):"
              f" verdict's step = golden diff's step in {pointing['verdict']}/{pointing['n']},"
              f" among its candidates in {pointing['candidates']}/{pointing['n']}")
    if missed:
        print(f"target missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
