"""The eval set: append-only, atomic, locked, idempotent, never rewrites a corrupt line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from agentfire.capture import OffRails, build_case, case_id
from agentfire.errors import StateFileError
from agentfire.evalset import EvalSet, encode_case
from tests.conftest import REPO
from tests.test_capture import trajectory


def _case(cid: str, **extra) -> dict:
    return {"id": cid, "expected": "x", **extra}


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def test_append_adds_then_the_same_id_is_a_noop(tmp_path):
    es = EvalSet(tmp_path / "evals" / "r.jsonl")
    assert es.cases() == []
    a = es.append(_case("a"))
    b = es.append(_case("b"))
    assert (a.outcome, a.line, b.outcome, b.line) == ("added", 1, "added", 2)
    before = es.path.read_bytes()
    again = es.append(_case("a", expected="changed"))
    assert again.outcome == "exists" and again.line == 1 and again.differs == ["expected"]
    assert es.path.read_bytes() == before
    assert [c["id"] for c in es.cases()] == ["a", "b"]
    assert es.find("b") == (2, _case("b"))


@pytest.mark.parametrize("bad, why", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a case object"),
    (b'{"expected": "no id"}', "without a string 'id'"),
    (b'{"id": "\xff\xfe"}', "not UTF-8"),
])
def test_a_corrupt_line_is_never_rewritten_or_dropped(tmp_path, bad, why):
    path = tmp_path / "r.jsonl"
    path.write_bytes(json.dumps(_case("a")).encode() + b"\n" + bad + b"\n"
                     + json.dumps(_case("c")).encode() + b"\n")
    before = path.read_bytes()
    es = EvalSet(path)
    with pytest.raises(StateFileError) as err:
        es.append(_case("new"))
    assert f"{path}:2:" in str(err.value) and why in str(err.value)
    assert "fix or remove that line by hand" in str(err.value)
    assert path.read_bytes() == before
    with pytest.raises(StateFileError, match=f"{path}:2:"):
        es.cases()


def test_a_last_line_without_newline_is_completed_not_changed(tmp_path):
    path = tmp_path / "r.jsonl"
    first = json.dumps(_case("a"))
    path.write_text(first)  # hand-edited, no trailing newline
    r = EvalSet(path).append(_case("b"))
    assert r.line == 2
    assert path.read_text().splitlines()[0] == first
    assert [c["id"] for c in EvalSet(path).cases()] == ["a", "b"]


def test_blank_lines_are_kept_and_counted(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_case("a")) + "\n\n")
    r = EvalSet(path).append(_case("b"))
    assert r.line == 3
    assert path.read_text() == json.dumps(_case("a")) + "\n\n" + encode_case(_case("b")).decode() + "\n"


HOSTILE = (
    "[bold red]markup[/] [link=https://evil.example]click[/link] "
    "\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2J "
    "nul\x00 bell\x07 cr\r lf\n crlf\r\n tab\t del\x7f c1\x85 "
    "ls\u2028 ps\u2029 rlo\u202e bom\ufeff zw\u200b "
    "quote\" backslash\\ \\n-literal {\"json\": [1]} </script> ${HOME} `rm -rf` "
    "emoji 😀 cjk 漢字 rtl שלום lone-surrogate \ud800 end"
)


def test_hostile_text_round_trips_exactly(tmp_path):
    es = EvalSet(tmp_path / "r.jsonl")
    big = HOSTILE * 40_000  # ~5 MB of it
    traj = trajectory("trace-hostile", steps=[
        ("TOOL", "read_doc", {"q": HOSTILE}, big),
        ("TOOL", "send_email", {"to": HOSTILE, "body": big}, {"ok": HOSTILE}),
    ], root_input={"text": big, "nested": [[[HOSTILE]]], "n": 1.5e300})
    case = build_case(traj, OffRails(step=2), expected=HOSTILE, incident="inc-h", actor=HOSTILE)
    assert len(json.dumps(case)) > 10_000_000
    es.append(case)
    es.append(_case("after"))
    raw = es.path.read_bytes()
    assert raw.count(b"\n") == 2  # one physical line per case, whatever the content
    text = raw.decode("utf-8")  # valid UTF-8 despite the lone surrogate
    assert len(text.splitlines()) == 2  # even for readers that split on U+2028/U+0085
    stored = es.cases()
    assert stored[0] == case  # exactly, big values and all
    assert stored[0]["vars"]["input"]["text"] == big
    assert stored[0]["off_rails"]["input"]["to"] == HOSTILE


WORKER = r"""
import sys
from agentfire.capture import OffRails, build_case
from agentfire.evalset import EvalSet
from tests.test_capture import trajectory

path, me, n, others = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
es = EvalSet(path)
outcomes = []
plan = [f"t-{me}-{k}" for k in range(n)]
plan += [f"t-{(me + 1) % others}-{k}" for k in range(0, n, 10)]  # overlap: same cases again
for tid in plan:
    case = build_case(trajectory(tid), OffRails(step=4), expected="ask first",
                      incident=f"inc-{me}", actor=f"worker-{me}")
    outcomes.append(es.append(case).outcome)
print(" ".join(outcomes))
"""


def _spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", WORKER, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_16_processes_capturing_100_cases_each_into_one_file(tmp_path):
    path = tmp_path / "evals" / "regressions.jsonl"
    procs = [_spawn(str(path), str(i), "100", "16") for i in range(16)]
    outcomes: Counter[str] = Counter()
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outcomes.update(out.split())
    expected_ids = {case_id(f"t-{i}-{k}", 4) for i in range(16) for k in range(100)}
    # every case exactly once, though 160 of them were captured twice concurrently
    assert outcomes == Counter({"added": 1600, "exists": 160})
    lines = _lines(path)
    assert len(lines) == 1600
    ids = [json.loads(line)["id"] for line in lines]
    assert len(set(ids)) == 1600 and set(ids) == expected_ids
    assert len(EvalSet(path).cases()) == 1600
    assert not [n for n in os.listdir(path.parent) if n.endswith(".tmp")]


KILLED_WORKER = r"""
import sys
from agentfire.evalset import EvalSet
es = EvalSet(sys.argv[1])
big = "x" * 40_000_000
for k in range(1000):
    es.append({"id": f"big-{k}", "input": big})
"""


def test_a_capture_killed_with_sigkill_mid_write_leaves_the_file_valid(tmp_path):
    path = tmp_path / "regressions.jsonl"
    es = EvalSet(path)
    es.append(_case("before"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    killed_mid_write = False
    for _attempt in range(20):
        proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(path)], env=env)
        try:
            # wait until a write is in flight (its temp file exists), then kill it there
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                tmps = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
                if tmps:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.001)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        # the temp file still there after the kill: the process died inside the write
        if [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]:
            killed_mid_write = True
        cases = es.cases()  # raises on any torn or corrupt line
        assert cases[0] == _case("before")
        assert all(c["id"] == "before" or len(c["input"]) == 40_000_000 for c in cases)
        if killed_mid_write:
            break
    assert killed_mid_write, "never managed to kill the writer inside a write"
    # the lock died with the process; the next capture works and removes the orphan temp file
    r = es.append(_case("after"))
    assert r.added
    assert es.cases()[-1] == _case("after")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_non_finite_numbers_from_a_trace_keep_the_line_valid_json(tmp_path):
    es = EvalSet(tmp_path / "r.jsonl")
    es.append(_case("nan", input={"score": float("nan"), "big": [float("inf"), -float("inf"), 1.5]}))
    line = es.path.read_text()
    assert "NaN" not in line and "Infinity" not in line
    json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in the eval set"))
    assert es.cases()[0]["input"] == {"score": "nan", "big": ["inf", "-inf", 1.5]}
