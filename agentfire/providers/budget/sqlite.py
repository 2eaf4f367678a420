"""The `sqlite` budget store (the embedded default): one row per scope, WAL mode.

Writes run in BEGIN IMMEDIATE (one writer at a time across processes) and compare the version
column before replacing the row, so a stale writer gets VersionConflict instead of overwriting.
WAL lets agents read while an on-call writes. A missing file means nothing was ever capped (open);
it is created on the first write.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfire.providers.budget import (
    FIELDS, BudgetStoreError, Caps, VersionConflict, parse_caps, to_fields,
)

if TYPE_CHECKING:  # a section from the cache is a runbook.Section: no pydantic at start
    from agentfire.config import SqliteBudget

# No declared types on the cap columns: the value is kept as written and parse_caps judges it.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS caps (scope TEXT PRIMARY KEY, version INTEGER NOT NULL, "
    + ", ".join(FIELDS) + ")"
)


class SqliteBudgetStore:
    kind = "sqlite"

    def __init__(self, path: Path, *, timeout_s: float = 2.0):
        self.path = path
        self.target = str(path)
        self.timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, shared by an agent's threads

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        if not self.path.exists():
            if not create:
                return None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BudgetStoreError(f"budget store {self.path}: cannot create ({exc.strerror})") from None
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            if create:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(SCHEMA)
        except sqlite3.Error as exc:
            raise BudgetStoreError(f"budget store {self.path}: {exc}") from None
        self._conn = conn
        return conn

    def read(self, scope: str) -> Caps:
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return Caps(scope)
            try:
                cur = conn.execute(f"SELECT version, {', '.join(FIELDS)} FROM caps WHERE scope = ?", (scope,))
                row = cur.fetchone()
                names = [d[0] for d in cur.description]
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return Caps(scope)
                raise BudgetStoreError(f"budget store {self.path}: {exc}") from None
            except sqlite3.Error as exc:
                raise BudgetStoreError(f"budget store {self.path}: {exc}") from None
        if row is None:
            return Caps(scope)
        return parse_caps(scope, dict(zip(names, row)), f"budget store {self.path} scope {scope!r}")

    def compare_and_set(self, caps: Caps, expect_version: int) -> int:
        fields = to_fields(caps)
        with self._lock:
            conn = self._connect(create=True)
            assert conn is not None
            try:
                conn.execute(SCHEMA)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT version FROM caps WHERE scope = ?", (caps.scope,)).fetchone()
                    current = 0 if row is None else row[0]
                    if current != expect_version:
                        conn.execute("ROLLBACK")
                        raise VersionConflict(caps.scope, expect_version,
                                              current if isinstance(current, int) else -1)
                    new = expect_version + 1
                    conn.execute(
                        f"INSERT OR REPLACE INTO caps (scope, version, {', '.join(FIELDS)}) "
                        f"VALUES (?, ?, {', '.join('?' for _ in FIELDS)})",
                        (caps.scope, new, *(fields[f] for f in FIELDS)),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise BudgetStoreError(f"budget store {self.path}: write failed: {exc}") from None
        return new

    def scopes(self) -> list[str]:
        with self._lock:
            conn = self._connect(create=False)
            if conn is None:
                return []
            try:
                return [r[0] for r in conn.execute("SELECT scope FROM caps ORDER BY scope")]
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise BudgetStoreError(f"budget store {self.path}: {exc}") from None
            except sqlite3.Error as exc:
                raise BudgetStoreError(f"budget store {self.path}: {exc}") from None

    def probe(self) -> str:
        if not self.path.exists():
            return f"{self.path}: not created yet (no caps set; created by the first freeze)"
        n = len(self.scopes())
        return f"{self.path}: {n} scope(s)"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def from_config(section: SqliteBudget, runbook: Any) -> SqliteBudgetStore:
    return SqliteBudgetStore(runbook.resolve_path(section.path))
