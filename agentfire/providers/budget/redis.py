"""The `redis` budget store: one hash per scope (`<key_prefix><scope>`).

A write is one Lua script: compare the hash's `version` with the version the writer read, and only
then replace the fields and bump the version, atomically on the server. The expiry is a field
(`expires_at`, epoch seconds) rather than a key TTL, because expiring means returning to the
`prior` caps, not to no caps at all. The redis client is imported only when a store is built.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from agentfire.config import RedisBudget
from agentfire.errors import ConfigError
from agentfire.providers.budget import (
    BudgetGarbage, BudgetStoreError, Caps, VersionConflict, parse_caps, to_fields,
)

# KEYS[1] the scope's hash; ARGV[1] the expected version; ARGV[2..] field, value pairs.
# Returns {1, new_version} or {0, current_version_or_false}.
CAS_SCRIPT = """
local current = redis.call('HGET', KEYS[1], 'version')
if not current then current = '0' end
if current ~= ARGV[1] then return {0, current} end
local new = tostring(tonumber(current) + 1)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', new, unpack(ARGV, 2))
return {1, new}
"""


def describe(url: str) -> str:
    """host:port/db without credentials, for messages."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/") or "0"
    return f"redis://{parts.hostname or '?'}:{parts.port or 6379}/{db}"


class RedisBudgetStore:
    kind = "redis"

    def __init__(self, url: str, *, key_prefix: str = "agentfire:budget:", timeout_s: float = 1.0):
        try:
            import redis
        except ImportError:
            raise ConfigError("the redis budget store needs the redis client: pip install 'agentfire[redis]'") from None
        self._redis = redis
        self.key_prefix = key_prefix
        self.target = describe(url)
        # No client-side retries: a down store must fail (closed) fast, not after backoff.
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            decode_responses=True, retry_on_timeout=False,
        )
        self._cas = self.client.register_script(CAS_SCRIPT)

    def key(self, scope: str) -> str:
        return self.key_prefix + scope

    def _fail(self, exc: Exception, doing: str) -> BudgetStoreError:
        if isinstance(exc, self._redis.ResponseError) and "WRONGTYPE" in str(exc):
            return BudgetGarbage(f"budget store {self.target}: {doing}: the key is not a hash ({exc}); failing closed")
        if isinstance(exc, self._redis.AuthenticationError):
            return BudgetStoreError(f"budget store {self.target}: {doing}: authentication refused")
        return BudgetStoreError(f"budget store {self.target}: {doing}: {type(exc).__name__}: {exc}")

    def read(self, scope: str) -> Caps:
        try:
            fields = self.client.hgetall(self.key(scope))
        except self._redis.RedisError as exc:
            raise self._fail(exc, f"reading {self.key(scope)}") from None
        return parse_caps(scope, fields, f"budget store {self.target} key {self.key(scope)!r}")

    def compare_and_set(self, caps: Caps, expect_version: int) -> int:
        pairs: list[str] = []
        for name, value in to_fields(caps).items():
            pairs += [name, value]
        try:
            ok, value = self._cas(keys=[self.key(caps.scope)], args=[str(expect_version), *pairs])
        except self._redis.RedisError as exc:
            raise self._fail(exc, f"writing {self.key(caps.scope)}") from None
        if int(ok) != 1:
            try:
                current = int(value)
            except (TypeError, ValueError):
                current = -1
            raise VersionConflict(caps.scope, expect_version, current)
        return int(value)

    def scopes(self) -> list[str]:
        try:
            keys = [k for k in self.client.scan_iter(match=self._glob_prefix() + "*", count=500)]
        except self._redis.RedisError as exc:
            raise self._fail(exc, "listing scopes") from None
        return sorted(k[len(self.key_prefix):] for k in keys)

    def _glob_prefix(self) -> str:
        return "".join("\\" + c if c in "*?[]\\" else c for c in self.key_prefix)

    def probe(self) -> str:
        try:
            self.client.ping()
        except self._redis.RedisError as exc:
            raise self._fail(exc, "PING") from None
        detail = f"{self.target}: PONG, {len(self.scopes())} scope(s) under {self.key_prefix!r}"
        warning = self.persistence_warning()
        return f"WARNING: {warning}; {detail}" if warning else detail

    def persistence_warning(self) -> str | None:
        """Why a restart would lose the caps (no RDB snapshots and no AOF), or None.

        A freeze lives only in this store: a Redis restart without persistence silently lifts it."""
        try:
            save = self.client.config_get("save").get("save")
            aof = self.client.config_get("appendonly").get("appendonly")
        except self._redis.RedisError:  # managed Redis may refuse CONFIG: say we could not tell
            return None
        if (save is None or not str(save).strip()) and str(aof).lower() != "yes":
            return ("no persistence (save \"\", appendonly no): a Redis restart silently lifts every "
                    "freeze; enable appendonly or RDB snapshots for the budget store")
        return None

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


def from_config(section: RedisBudget, runbook: Any) -> RedisBudgetStore:
    if section.url_env:
        from agentfire.secrets import secret

        url = secret(section.url_env, what="the budget store's redis:// URL")
    elif section.url:
        url = section.url
    else:
        raise ConfigError(f"{runbook.path}: budget: a redis store needs url or url_env")
    from agentfire.config import check_url

    where = f"{runbook.path}: budget.{'url_env ($' + section.url_env + ')' if section.url_env else 'url'}"
    check_url(url, schemes=("redis", "rediss", "unix"), what=where)
    db = urlsplit(url).path.strip("/")
    if not url.startswith("unix://") and db and not db.isdigit():
        # redis-py ignores a database it cannot parse and uses 0: another store than meant
        raise ConfigError(f"{where}: the database after the port must be a number (/0, /1, ...)")
    try:
        return RedisBudgetStore(url, key_prefix=section.key_prefix, timeout_s=section.timeout_seconds)
    except ValueError as exc:  # redis-py's own URL checks (a database that is not a number...)
        raise ConfigError(f"{where}: not a valid redis URL ({exc})") from None
