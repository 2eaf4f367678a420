"""Crash safety soak: writers SIGKILLed at random while appending to one journal and one eval set.

Each writer appends journal entries and regression cases numbered (writer, seq) and prints each seq
after its append returned. The parent kills writers at random moments and starts new ones, then
checks: both files parse whole (a torn tail is sealed, never a corrupt row), every append a writer
confirmed is there, and no (writer, seq) appears twice.

    python bench/crash_soak.py [--seconds 60] [--writers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WRITER = r"""
import sys
from pathlib import Path
from agentfire.journal import Journal
from agentfire.evalset import EvalSet
root, wid, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
journal, evals = Journal(root / "incidents", "inc-20261130-000000-soak"), EvalSet(root / "cases.jsonl")
seq = start
while True:
    journal.append("soak", actor=wid, writer=wid, seq=seq, pad="x" * (seq % 7) * 500)
    evals.append({"id": f"{wid}-{seq}", "expected": "x", "input": "y" * ((seq % 5) * 2000)})
    print(seq, flush=True)
    seq += 1
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args()
    from agentfire.evalset import EvalSet
    from agentfire.journal import Journal

    root = Path(tempfile.mkdtemp(prefix="agentfire-soak-"))
    (root / "incidents").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    confirmed: dict[str, set[int]] = {}
    next_seq: dict[str, int] = {}
    procs: dict[str, subprocess.Popen[str]] = {}
    killed = started = 0
    rng = random.Random(7)

    def start(wid: str) -> None:
        nonlocal started
        procs[wid] = subprocess.Popen([sys.executable, "-c", WRITER, str(root), wid, str(next_seq.get(wid, 0))],
                                      stdout=subprocess.PIPE, text=True, env=env)
        started += 1

    def reap(wid: str) -> None:
        out = procs[wid].stdout.read() if procs[wid].stdout else ""
        seqs = [int(x) for x in out.split()]
        confirmed.setdefault(wid, set()).update(seqs)
        # a new writer continues after anything this one may have written unconfirmed
        next_seq[wid] = max(seqs, default=next_seq.get(wid, 0)) + 2

    for i in range(args.writers):
        start(f"w{i}")
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.05, 0.4))
        wid = rng.choice(list(procs))
        procs[wid].send_signal(signal.SIGKILL)
        procs[wid].wait()
        killed += 1
        reap(wid)
        start(wid)
    for wid, p in procs.items():
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed += 1
        reap(wid)

    journal = Journal(root / "incidents", "inc-20261130-000000-soak")
    entries = [e for e in journal.iter_entries() if e.get("action") == "soak"]  # raises on a corrupt row
    cases = EvalSet(root / "cases.jsonl").cases()  # raises on a corrupt row
    j_keys = Counter((e["writer"], e["seq"]) for e in entries)
    c_keys = Counter(c["id"] for c in cases)
    want = {(w, s) for w, ss in confirmed.items() for s in ss}
    lost_j = [k for k in want if k not in j_keys]
    lost_c = [k for k in want if f"{k[0]}-{k[1]}" not in c_keys]
    dup_j = [k for k, n in j_keys.items() if n > 1]
    dup_c = [k for k, n in c_keys.items() if n > 1]
    print(f"writers started {started}, SIGKILLed {killed}; confirmed appends {len(want)}; "
          f"journal rows {len(entries)}, cases {len(cases)}")
    print(f"lost: journal {len(lost_j)}, cases {len(lost_c)}; duplicated: journal {len(dup_j)}, "
          f"cases {len(dup_c)}; corrupt rows: 0 (both files parsed whole)")
    return 1 if (lost_j or lost_c or dup_j or dup_c) else 0


if __name__ == "__main__":
    sys.exit(main())
