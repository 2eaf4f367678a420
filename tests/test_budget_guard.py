"""The agent's side of spend caps: check_budget, the <= 1 s cache, failing closed."""

from __future__ import annotations

import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest
import yaml

from agentfire import guard
from agentfire.providers.budget import Caps, CapsState
from agentfire.providers.budget.redis import RedisBudgetStore
from agentfire.providers.budget.sqlite import SqliteBudgetStore
from tests.conftest import REPO, free_port
from tests.servers.redis import redis_server  # noqa: F401  (fixture)


def set_budget(root: Path, section: dict) -> Path:
    cfg = root / "runbook.yaml"
    doc = yaml.safe_load(cfg.read_text())
    doc["budget"] = section
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return cfg


@pytest.fixture(autouse=True)
def fresh_guard():
    guard.forget_caps()
    yield
    guard.forget_caps()


def caps(**kw) -> Caps:
    return Caps("agent", **kw)


def test_check_budget_verdicts() -> None:
    c = caps(hard_usd=2.0, freeze_usd=0.5, admission="frozen")
    assert guard.check_budget(0.0, c) is None  # a running trajectory under the caps goes on
    assert guard.check_budget(0.0, c, starting=True) == "frozen"
    assert guard.check_budget(0.5, c) == "freeze"  # reaching the cap is enough
    assert guard.check_budget(2.0, c) == "hard_cap"
    assert guard.check_budget(1e9, caps()) is None  # no caps at all
    assert guard.check_budget(0.0, caps(admission="open"), starting=True) is None
    assert guard.check_budget(0.0, Caps("agent", error="down"), starting=False) == "unreadable"


def test_an_expired_freeze_applies_its_prior() -> None:
    c = caps(freeze_usd=0.5, admission="frozen", expires_at=1000.0, prior=CapsState(hard_usd=3.0))
    assert guard.check_budget(0.6, c, now=999.0) == "freeze"
    assert guard.check_budget(0.6, c, now=1000.0) is None
    assert guard.check_budget(0.0, c, starting=True, now=1000.0) is None
    assert guard.check_budget(3.0, c, now=1000.0) == "hard_cap"


def test_cache_serves_at_most_one_second_old_caps(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"t": 1000.0}
    fake_time = types.SimpleNamespace(monotonic=lambda: clock["t"], time=__import__("time").time)
    monkeypatch.setattr(guard, "time", fake_time)
    store = SqliteBudgetStore(sandbox / ".agentfire/budget.sqlite")
    assert guard.load_caps().version == 0  # nothing written: open
    store.compare_and_set(Caps("support-agent", freeze_usd=0.4, admission="frozen"), 0)
    clock["t"] += 0.99
    assert guard.load_caps().version == 0  # cached
    clock["t"] += 0.02  # 1.01 s after the fetch
    got = guard.load_caps()
    assert got.version == 1 and got.admission == "frozen"
    # a longer max age is clamped to 1 s
    store.compare_and_set(Caps("support-agent"), 1)
    clock["t"] += 1.01
    assert guard.load_caps(max_age_s=60).version == 2


def test_redis_store_down_fails_closed(sandbox: Path) -> None:
    set_budget(sandbox, {"kind": "redis", "url": f"redis://127.0.0.1:{free_port()}/0", "timeout_seconds": 0.5})
    d = guard.budget_allows(0.0, starting=True)
    assert not d and d.verdict == "unreadable"
    assert "spend caps unreadable" in d.reason and "failing closed" in d.reason and "127.0.0.1" in d.reason
    assert guard.check_budget(0.0, guard.load_caps()) == "unreadable"


def test_garbage_in_redis_fails_closed_never_allows(sandbox: Path, redis_server) -> None:  # noqa: F811
    import redis

    prefix = f"g:{uuid.uuid4().hex[:8]}:"
    set_budget(sandbox, {"kind": "redis", "url": redis_server.url, "key_prefix": prefix})
    redis.Redis.from_url(redis_server.url).hset(
        prefix + "support-agent", mapping={"version": "3", "freeze_usd": "0.4O", "admission": "open"})
    d = guard.budget_allows(0.0, starting=False)
    assert not d and d.verdict == "unreadable"
    assert "freeze_usd is '0.4O', not a number" in d.reason


def test_redis_caps_reach_the_guard(sandbox: Path, redis_server) -> None:  # noqa: F811
    prefix = f"ok:{uuid.uuid4().hex[:8]}:"
    set_budget(sandbox, {"kind": "redis", "url": redis_server.url, "key_prefix": prefix})
    RedisBudgetStore(redis_server.url, key_prefix=prefix).compare_and_set(
        Caps("support-agent", hard_usd=1.0, admission="frozen"), 0)
    assert guard.budget_allows(0.2).allowed
    d = guard.budget_allows(0.0, starting=True)
    assert d.verdict == "frozen" and "frozen" in d.reason
    assert guard.budget_allows(1.5).verdict == "hard_cap"


def test_broken_runbook_fails_closed(sandbox: Path) -> None:
    (sandbox / "runbook.yaml").write_text("agent: [")
    d = guard.budget_allows(0.0)
    assert not d and d.verdict == "unreadable" and "not valid YAML" in d.reason


def test_guard_import_pulls_in_no_store_client() -> None:
    code = ("import sys, agentfire.guard; "
            "print(','.join(m for m in ('redis', 'sqlite3', 'yaml', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == ""


def test_a_hung_store_is_asked_once_per_interval_not_on_every_call(sandbox: Path) -> None:
    """A Redis that accepts connections and never answers (a blackholed address, a hung server):
    the failure is cached from when the read gave up, so the calls after it refuse at once
    instead of each waiting out the timeout again."""
    from tests.fakes.tcpproxy import TcpProxy

    proxy = TcpProxy("127.0.0.1", free_port())
    proxy.set_mode("hang")
    try:
        # the default timeout (1 s) equals the cache interval: the case that cost 1 s per call
        set_budget(sandbox, {"kind": "redis", "url": f"redis://127.0.0.1:{proxy.port}/0", "timeout_seconds": 1.0})
        verdicts = [guard.budget_allows(0.0).verdict for _ in range(5)]
        assert verdicts == ["unreadable"] * 5
        assert proxy.accepted == 1, f"the hung store was asked {proxy.accepted} times in 5 calls"
    finally:
        proxy.close()


def test_non_finite_spend_fails_closed() -> None:
    c = caps(hard_usd=2.0, freeze_usd=0.5)
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert guard.check_budget(bad, c) == "hard_cap", bad
        assert guard.check_budget(bad, caps()) == "hard_cap", bad  # even with no caps at all
    assert guard.check_budget("0.1", c) == "hard_cap"  # not a number
    assert guard.check_budget(0.1, c) is None
