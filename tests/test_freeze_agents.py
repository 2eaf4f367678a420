"""8 agent processes call the guard in a loop while `agentfire freeze` runs: once freeze returns,
no process starts a new trajectory later than the guard's cache interval (1 s)."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_agentfire
from tests.servers.redis import redis_server  # noqa: F401  (fixture)
from tests.test_freeze_cli import COSTS, set_budget, write_traces

AGENTS = 8
CACHE_S = 1.0
SLACK_S = 0.5  # generous: the bound is exact in principle (see agent_loop), this absorbs clock reads


def agent_loop(config: str, out: str, ready, stop) -> None:  # type: ignore[no-untyped-def]
    """A busy agent: before each new trajectory, ask the guard; record when it was allowed.

    `t0` is taken *before* load_caps: a start is allowed only with caps fetched at or after
    t0 - 1 s, so an allowed start at t0 means the store still said "open" at t0 - 1 s or later.
    """
    from agentfire import guard

    starts: list[float] = []
    refusals: dict[str, int] = {}
    while not stop.is_set():
        t0 = time.time()
        verdict = guard.check_budget(0.0, guard.load_caps(config=config), starting=True)
        if verdict is None:
            starts.append(t0)
            if len(starts) == 1:
                ready.release()
        else:
            refusals[verdict] = refusals.get(verdict, 0) + 1
        time.sleep(0.002)
    Path(out).write_text(json.dumps({"starts": starts, "refusals": refusals}))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_no_new_trajectory_later_than_the_cache_interval_after_freeze(
    sandbox: Path, kind: str, request: pytest.FixtureRequest,
) -> None:
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        set_budget(sandbox, {"kind": "redis", "url": server.url, "key_prefix": f"ag:{uuid.uuid4().hex[:8]}:"})
    write_traces(sandbox, COSTS)
    config = str(sandbox / "runbook.yaml")
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Semaphore(0), ctx.Event()
    outs = [sandbox / f"agent-{i}.json" for i in range(AGENTS)]
    procs = [ctx.Process(target=agent_loop, args=(config, str(o), ready, stop)) for o in outs]
    for p in procs:
        p.start()
    try:
        for _ in procs:  # every agent is starting trajectories before the freeze
            assert ready.acquire(timeout=60), "an agent process never started a trajectory"
        r = run_agentfire("--incident", "inc-agents", "--new", "freeze", "--to", "p50", "--yes", "--json", cwd=sandbox)
        returned = time.time()
        assert r.exit_code == 0, r
        time.sleep(CACHE_S + 1.5)  # let every agent run well past the cache interval
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    results = [json.loads(o.read_text()) for o in outs]
    last_start = max(max(res["starts"]) for res in results)
    lag = last_start - returned
    print(f"{kind}: last new trajectory {lag * 1000:+.0f} ms after freeze returned "
          f"(bound {CACHE_S * 1000:.0f} ms); refusals per agent: "
          f"{[res['refusals'].get('frozen', 0) for res in results]}")
    assert lag <= CACHE_S + SLACK_S, f"an agent started a trajectory {lag:.3f}s after freeze returned"
    for res in results:
        assert res["refusals"].get("frozen", 0) > 0, res["refusals"]  # every agent saw the freeze
        assert set(res["refusals"]) == {"frozen"}  # and never an unreadable store
