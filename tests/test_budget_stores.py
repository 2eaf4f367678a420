"""Both budget stores through the same contract: sqlite (a file) and redis (a real server)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from agentfire.providers.budget import (
    BudgetGarbage, BudgetStore, BudgetStoreError, Caps, CapsState, VersionConflict,
)
from agentfire.providers.budget.redis import RedisBudgetStore
from agentfire.providers.budget.sqlite import SqliteBudgetStore
from tests.conftest import free_port
from tests.servers.redis import redis_server  # noqa: F401  (fixture)


class Backend:
    """Opens independent store instances (own connections) and pokes raw fields for garbage."""

    def __init__(self, kind: str, open_: Callable[[], BudgetStore], poke: Callable[[str, dict[str, str]], None]):
        self.kind, self.open, self.poke = kind, open_, poke


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "state" / "budget.sqlite"

        def poke(scope: str, fields: dict[str, str]) -> None:
            SqliteBudgetStore(path).compare_and_set(Caps(scope), 0)  # creates the table and row
            with sqlite3.connect(path) as conn:
                for k, v in fields.items():
                    conn.execute(f"UPDATE caps SET {k} = ? WHERE scope = ?", (v, scope))

        return Backend("sqlite", lambda: SqliteBudgetStore(path), poke)
    server = request.getfixturevalue("redis_server")
    prefix = f"test:{uuid.uuid4().hex[:8]}:"

    def poke_redis(scope: str, fields: dict[str, str]) -> None:
        import redis

        redis.Redis.from_url(server.url).hset(prefix + scope, mapping={"version": "1", **fields})

    return Backend("redis", lambda: RedisBudgetStore(server.url, key_prefix=prefix), poke_redis)


def frozen(scope: str = "agent", **kw: Any) -> Caps:
    return Caps(scope, hard_usd=kw.get("hard", 5.0), freeze_usd=kw.get("freeze", 0.4),
                admission=kw.get("admission", "frozen"), expires_at=kw.get("expires_at"),
                prior=kw.get("prior"), updated_by="alice", updated_at="2026-11-23T23:00:00Z", note="t")


def test_a_scope_never_written_is_open_at_version_zero(backend: Backend) -> None:
    store = backend.open()
    caps = store.read("agent")
    assert caps == Caps("agent") and caps.version == 0 and caps.state == CapsState()
    assert store.scopes() == []


def test_write_then_read_back_everything(backend: Backend) -> None:
    store = backend.open()
    want = frozen(expires_at=1_900_000_000.25, prior=CapsState(hard_usd=9.5, admission="open"))
    assert store.compare_and_set(want, 0) == 1
    got = backend.open().read("agent")  # another connection sees it
    assert got.version == 1 and got.state == want.state and got.expires_at == want.expires_at
    assert got.prior == want.prior and got.updated_by == "alice" and got.note == "t"
    assert store.scopes() == ["agent"]
    # unsetting a cap really unsets it (no stale field left behind)
    assert store.compare_and_set(Caps("agent", admission="open"), 1) == 2
    assert store.read("agent").state == CapsState() and store.read("agent").prior is None


def test_stale_version_is_refused_and_nothing_is_written(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    assert a.compare_and_set(frozen(freeze=0.4), 0) == 1
    with pytest.raises(VersionConflict) as exc:
        b.compare_and_set(frozen(freeze=9.0), 0)  # b read version 0 before a wrote
    assert exc.value.current == 1 and exc.value.expected == 0
    assert "version 0" in str(exc.value) and "version 1" in str(exc.value)
    assert a.read("agent").freeze_usd == 0.4 and a.read("agent").version == 1


def test_simultaneous_writers_on_one_version_exactly_one_wins(backend: Backend) -> None:
    stores = [backend.open() for _ in range(8)]
    stores[0].compare_and_set(Caps("agent"), 0)
    barrier = threading.Barrier(len(stores))
    results: list[Any] = [None] * len(stores)

    def go(i: int) -> None:
        barrier.wait()
        try:
            results[i] = stores[i].compare_and_set(frozen(freeze=float(i)), 1)
        except VersionConflict as exc:
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [i for i, r in enumerate(results) if r == 2]
    assert len(winners) == 1, results
    assert all(isinstance(r, VersionConflict) and r.current == 2 for i, r in enumerate(results) if i != winners[0])
    assert stores[0].read("agent").freeze_usd == float(winners[0])


def test_read_modify_write_loops_lose_no_update(backend: Backend) -> None:
    """Each writer adds 1 to the freeze cap 25 times, re-reading on conflict: no increment is lost."""
    stores = [backend.open() for _ in range(4)]
    stores[0].compare_and_set(Caps("agent", freeze_usd=0.0), 0)

    def add(store: BudgetStore) -> None:
        for _ in range(25):
            while True:
                cur = store.read("agent")
                try:
                    store.compare_and_set(Caps("agent", freeze_usd=(cur.freeze_usd or 0) + 1), cur.version)
                    break
                except VersionConflict:
                    continue

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    final = stores[0].read("agent")
    assert final.freeze_usd == 100.0 and final.version == 101


@pytest.mark.parametrize("fields,named", [
    ({"hard_usd": "lots"}, "hard_usd is 'lots', not a number"),
    ({"freeze_usd": "nan"}, "freeze_usd"),
    ({"freeze_usd": "-1"}, "freeze_usd"),
    ({"admission": "maybe"}, "admission is 'maybe'"),
    ({"prior": "{not json"}, "prior"),
    ({"version": "x"}, "version is 'x'"),
])
def test_garbage_is_a_clear_error_never_open(backend: Backend, fields: dict[str, str], named: str) -> None:
    backend.poke("agent", fields)
    with pytest.raises(BudgetGarbage) as exc:
        backend.open().read("agent")
    assert named in str(exc.value) and "failing closed" in str(exc.value)


def test_store_down_is_a_store_error(backend: Backend, tmp_path: Path) -> None:
    if backend.kind == "sqlite":
        bad = tmp_path / "not-a-db.sqlite"
        bad.write_bytes(b"this is not a database, it is a text file" * 100)
        store: BudgetStore = SqliteBudgetStore(bad)
    else:
        store = RedisBudgetStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(BudgetStoreError) as exc:
        store.read("agent")
    assert not isinstance(exc.value, BudgetGarbage)
    assert time.monotonic() - started < 5  # no retry storm behind a down store
    with pytest.raises(BudgetStoreError):
        store.compare_and_set(frozen(), 0)


def test_redis_key_of_the_wrong_type_is_garbage(redis_server) -> None:  # noqa: F811
    import redis

    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    redis.Redis.from_url(redis_server.url).set(prefix + "agent", "0.40")
    with pytest.raises(BudgetGarbage, match="not a hash"):
        RedisBudgetStore(redis_server.url, key_prefix=prefix).read("agent")


def test_redis_target_never_shows_the_password() -> None:
    store = RedisBudgetStore("redis://:s3cretpass@127.0.0.1:1/2")
    assert store.target == "redis://127.0.0.1:1/2"


def test_expired_caps_return_to_prior() -> None:
    c = frozen(expires_at=100.0, prior=CapsState(hard_usd=9.0))
    assert c.effective(99.9) == CapsState(5.0, 0.4, "frozen")
    assert c.effective(100.0) == CapsState(hard_usd=9.0) and c.expired(100.0)
    assert frozen(expires_at=100.0).effective(101) == CapsState()  # no prior: open, no caps
