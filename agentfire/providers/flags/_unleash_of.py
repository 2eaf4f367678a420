"""An OpenFeature provider over the official Unleash Python SDK (`UnleashClient`), for agents.

Why not `openfeature-provider-unleash`: it gives no control over the poll interval, request
timeout, TLS options or the on-disk cache (UnleashClient bootstraps from a file cache left by an
earlier process, which would serve a stale "on" before the first fetch), it answers an unknown
flag with the caller's default without saying so, and it never reports a failing server. This one:
- polls with the region's `refresh_interval_seconds` and a bounded request timeout;
- keeps the SDK's state in memory only (ready only after a real fetch);
- reports each failed fetch as STALE (with the SDK's own words) and each good one as READY, so the
  guard can go off after `max_stale_seconds`;
- answers FLAG_NOT_FOUND for a flag the server did not send.
Imported only when an agent builds an Unleash source (it imports UnleashClient and openfeature).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata
from UnleashClient import UnleashClient
from UnleashClient.cache import BaseCache

_LOG = logging.getLogger("UnleashClient")


class _MemoryCache(BaseCache):
    """UnleashClient's cache, in memory: nothing from an earlier process is ever served."""

    bootstrapped = False

    def __init__(self) -> None:
        self._d: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        self._d[key] = value

    def mset(self, data: dict) -> None:
        self._d.update(data)

    def get(self, key: str, default: Any = None) -> Any:
        return self._d.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._d

    def destroy(self) -> None:
        self._d.clear()


class _LastError(logging.Handler):
    """The SDK logs why a fetch failed and returns an empty result: keep its words."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001
            return
        if "fetch failed" in text:
            self.message = text.replace("Unleash Client feature fetch failed due to ", "")[:300]


_HANDLER = _LastError()
_LOG.addHandler(_HANDLER)


class UnleashClientProvider(AbstractProvider):
    def __init__(self, *, url: str, token: str, app_name: str, environment: str,
                 refresh_interval: int = 15, request_timeout: float = 5.0,
                 custom_options: dict[str, Any] | None = None, first_fetch_timeout: float = 5.0):
        self._known: frozenset[str] = frozenset()
        self.generation = 0  # bumped by every successful fetch (new state or 304)
        self._fetched = threading.Event()
        self._ok = False
        self._token = token
        self.client = UnleashClient(
            url=url.rstrip("/") + "/api", app_name=app_name, environment=environment,
            refresh_interval=refresh_interval, request_timeout=request_timeout, request_retries=0,
            custom_headers={"Authorization": token}, custom_options=custom_options or {},
            disable_metrics=True, disable_registration=True, cache=_MemoryCache(),
            multiple_instance_mode=_silently_allow(),
        )
        transport = self.client._transport  # noqa: SLF001 - the SDK reports failures only in logs
        inner = transport.fetch_features

        def fetch(etag: str = "") -> Any:
            _HANDLER.message = ""
            result = inner(etag)
            if result.raw_state is None and not result.not_modified:
                self._failed(_HANDLER.message or "no answer from the Unleash server")
            else:
                if result.raw_state is not None:
                    self._known = _names(result.raw_state)
                self._succeeded()
            self._fetched.set()
            return result

        transport.fetch_features = fetch  # type: ignore[method-assign]
        store = self.client._store  # noqa: SLF001
        for name in ("apply_fetched", "apply_streamed"):
            inner_apply = getattr(store, name, None)
            if inner_apply is not None:
                setattr(store, name, self._bumping(inner_apply))
        self._first_fetch_timeout = first_fetch_timeout

    def _bumping(self, apply: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return apply(*args, **kwargs)
            finally:
                self.generation += 1  # after the state is in: memoised answers are recomputed

        return wrapped

    def _failed(self, why: str) -> None:
        self._ok = False
        self.last_error = _redact(why, self._token)
        if self._fetched.is_set():  # after the first fetch: the guard serves the last state a while
            self.emit_provider_stale(ProviderEventDetails(message=self.last_error))

    def _succeeded(self) -> None:
        was_ok, self._ok = self._ok, True
        self.last_error = ""
        if not was_ok and self._fetched.is_set():
            self.emit_provider_ready(ProviderEventDetails(message="Unleash fetch recovered"))

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        # the first fetch runs inside initialize_client (request_timeout bounds it)
        self.client.initialize_client()
        if not self._ok:
            raise ProviderNotReadyError(
                f"first fetch from Unleash failed: {getattr(self, 'last_error', '') or 'no answer'}")

    def shutdown(self) -> None:
        try:
            self.client.destroy()
        except Exception:  # noqa: BLE001
            pass

    def get_metadata(self) -> Metadata:
        return Metadata(name="agentfire Unleash (UnleashClient)")

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None
                                ) -> FlagResolutionDetails[bool]:
        if flag_key not in self._known:
            return FlagResolutionDetails(default_value, reason=Reason.ERROR,
                                         error_code=ErrorCode.FLAG_NOT_FOUND,
                                         error_message=f"flag {flag_key!r} is not in this token's environment/project")
        ctx: dict[str, Any] = {}
        if evaluation_context is not None:
            if evaluation_context.targeting_key:
                ctx["userId"] = evaluation_context.targeting_key
            ctx.update(evaluation_context.attributes)
        on = self.client.is_enabled(flag_key, ctx)
        return FlagResolutionDetails(bool(on), reason=Reason.TARGETING_MATCH if on else Reason.DISABLED)

    def _type_mismatch(self, flag_key: str, default_value: Any) -> FlagResolutionDetails[Any]:
        return FlagResolutionDetails(default_value, reason=Reason.ERROR, error_code=ErrorCode.TYPE_MISMATCH,
                                     error_message="Unleash toggles are boolean")

    def resolve_string_details(self, flag_key: str, default_value: str,  # type: ignore[override]
                               evaluation_context: EvaluationContext | None = None) -> Any:
        return self._type_mismatch(flag_key, default_value)

    def resolve_integer_details(self, flag_key: str, default_value: int,  # type: ignore[override]
                                evaluation_context: EvaluationContext | None = None) -> Any:
        return self._type_mismatch(flag_key, default_value)

    def resolve_float_details(self, flag_key: str, default_value: float,  # type: ignore[override]
                              evaluation_context: EvaluationContext | None = None) -> Any:
        return self._type_mismatch(flag_key, default_value)

    def resolve_object_details(self, flag_key: str, default_value: Any,  # type: ignore[override]
                               evaluation_context: EvaluationContext | None = None) -> Any:
        return self._type_mismatch(flag_key, default_value)


def _names(raw_state: str) -> frozenset[str]:
    try:
        doc = json.loads(raw_state)
    except ValueError:
        return frozenset()
    feats = doc.get("features") if isinstance(doc, dict) else None
    return frozenset(f["name"] for f in feats or [] if isinstance(f, dict) and isinstance(f.get("name"), str))


def _redact(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def _silently_allow() -> Any:
    from UnleashClient.utils import InstanceAllowType

    return InstanceAllowType.SILENTLY_ALLOW
