"""The agent's view of the kill switch: one OpenFeature provider per region, built once per process.

An agent evaluates the kill-switch flag the way the vendors' SDKs do, in memory, with default off:
flagd files through `openfeature-provider-flagd` (in-process FILE resolver), LaunchDarkly through
its server SDK behind `launchdarkly-openfeature-server` (SDK key, streaming), Unleash through
`UnleashClient` (backend token, polling), and any other OpenFeature provider a runbook names by
import path or entry point. Agents never hold an admin or write token.

A `Source` owns one region's provider: it is initialised in a background thread (the first caller
waits at most `init_timeout_seconds`; until the provider is ready the agent is off), re-initialised
with backoff when that fails, and registered with the OpenFeature API under its own domain, so
the agent's other code can use it through `openfeature.api.get_client(source.domain)`. An
evaluation asks the provider directly (the OpenFeature provider contract: no network call, a few
microseconds) and maps anything but a boolean `True` to off with the real reason.

The CLI uses the same code for its read-back (`agent_view`): after a kill, each region is evaluated
as an agent would evaluate it, for the agent's context.

Heavy imports (the OpenFeature SDK, vendor SDKs) happen only when a source is built.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

# how long a source waits before retrying a failed initialisation (doubles up to the cap)
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
NETWORK_MAX_STALE_S = 30.0


class SourceUnavailable(Exception):
    """The region has no agent-side source (e.g. no SDK key configured): the agent is off."""


@dataclass
class ProviderSpec:
    """How to build one region's OpenFeature provider; returned by a flags module's
    `openfeature_provider(section, runbook, oneshot=...)`."""

    build: Callable[[], Any]  # constructs the provider (may block; runs in the init thread)
    label: str  # what evaluates, e.g. "LaunchDarkly server SDK (streaming)"
    propagation: str  # how fast agents see a change, for kill's output
    propagation_s: float | None = None  # the bound in seconds, when there is one
    check: Callable[[], str | None] | None = None  # per-call cheap check: a reason means off
    max_stale_s: float = NETWORK_MAX_STALE_S
    attach: Callable[[Any], None] | None = None  # called with the provider once it is ready
    # a token that changes whenever the provider's flag data may have changed (a fetch, a stream
    # update): with it, answers are memoised per context between changes (a vendor SDK's own
    # evaluation costs 50-150 us; the kill switch is asked before every action)
    version: Callable[[], Any] | None = None
    # for a one-shot read (the CLI's read-back): builds, synchronously, the evaluator the provider
    # itself asks (an object with resolve_boolean_details), without the provider's lifecycle
    once: Callable[[], Any] | None = None


@dataclass
class Verdict:
    on: bool
    reason: str
    error: bool = False  # not evaluated (provider not ready, source failing, unknown flag...)


def _context(ctx: Any) -> Any:
    from openfeature.evaluation_context import EvaluationContext

    if ctx is None or isinstance(ctx, EvaluationContext):
        return ctx
    if not isinstance(ctx, dict):
        raise TypeError(f"context must be a dict or an EvaluationContext, not {type(ctx).__name__}")
    attrs = {k: v for k, v in ctx.items() if k not in ("targetingKey", "targeting_key")}
    key = ctx.get("targetingKey", ctx.get("targeting_key"))
    return EvaluationContext(None if key is None else str(key), attrs)


def default_context(section: Any, runbook: Any) -> dict[str, Any]:
    """The region's agent context; the targeting key defaults to the agent's name (LaunchDarkly
    refuses to evaluate for a context without a key)."""
    ctx = dict(getattr(section, "agent_context", None) or {})
    if not ctx.get("targetingKey") and not ctx.get("targeting_key"):
        ctx["targetingKey"] = runbook.agent.name
    return ctx


@dataclass
class Source:
    region: str
    flag: str
    spec: ProviderSpec
    context: Any  # EvaluationContext for a typical request
    init_timeout_s: float
    max_stale_s: float
    domain: str = ""
    provider: Any = None
    reason: str = "provider initialising"
    ready: threading.Event = field(default_factory=threading.Event)
    bad_since: float | None = None  # monotonic time the provider reported ERROR/STALE
    bad_reason: str = ""
    closed: bool = False
    created: float = field(default_factory=time.monotonic)
    _thread: threading.Thread | None = None
    _statuses: Any = None
    _memo: dict[Any, tuple[Any, "Verdict"]] = field(default_factory=dict)

    def start(self) -> "Source":
        from openfeature.provider import ProviderStatus

        self._statuses = ProviderStatus
        self.reason = f"{self.spec.label} not ready yet (initialising)"
        self.domain = self.domain or f"agentfire:{self.region}:{id(self):x}"
        self._thread = threading.Thread(target=self._init_loop, name=f"agentfire-guard-{self.region}",
                                        daemon=True)
        self._thread.start()
        return self

    # -- lifecycle ------------------------------------------------------------------------------

    def _init_loop(self) -> None:
        from openfeature import api
        from openfeature.event import ProviderEvent

        delay = RETRY_MIN_S
        while not self.closed:
            provider = None
            try:
                provider = self.spec.build()
                api.set_provider_and_wait(provider, self.domain)
            except Exception as exc:  # noqa: BLE001 - any failure is a reason to stay off
                self.reason = f"{self.spec.label} not ready: {_describe(exc)}"
                _shutdown(provider)
                if self.closed:
                    return
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.closed:
                _shutdown(provider)
                return
            client = api.get_client(self.domain)
            for event in (ProviderEvent.PROVIDER_ERROR, ProviderEvent.PROVIDER_STALE):
                client.add_handler(event, self._on_bad)
            for event in (ProviderEvent.PROVIDER_READY, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED):
                client.add_handler(event, self._on_good)
            if self.spec.attach is not None:
                self.spec.attach(provider)
            self.provider = provider
            self.bad_since = None
            self.reason = ""
            self.ready.set()
            return

    def _on_bad(self, details: Any) -> None:
        msg = getattr(details, "message", None) or getattr(details, "error_message", None) or "source failing"
        if self.bad_since is None:
            self.bad_since = time.monotonic()
        self.bad_reason = str(msg)

    def _on_good(self, details: Any) -> None:
        self.bad_since = None
        self.bad_reason = ""

    def close(self) -> None:
        self.closed = True
        provider, self.provider = self.provider, None
        self.ready.clear()
        if provider is not None:
            try:
                from openfeature.provider._registry import provider_registry

                provider_registry._providers.pop(self.domain, None)  # noqa: SLF001
            except Exception:  # noqa: BLE001
                pass
            _shutdown(provider)

    def wait_ready(self, timeout_s: float) -> bool:
        return self.ready.wait(max(0.0, timeout_s))

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self, context: Any = None) -> Verdict:
        provider = self.provider
        if provider is None:
            return Verdict(False, self.reason or "provider not ready", True)
        if self.spec.check is not None:
            problem = self.spec.check()  # e.g. a flag file that changed: validated before use
            if problem:
                return Verdict(False, problem, True)
        try:
            from openfeature.provider._registry import provider_registry

            status = provider_registry.get_provider_status(provider)
        except Exception:  # noqa: BLE001
            status = None
        statuses = self._statuses
        if status is not statuses.READY and status is not None:
            if status in (statuses.ERROR, statuses.STALE):
                now = time.monotonic()
                if self.bad_since is None:
                    self.bad_since = now
                if now - self.bad_since >= self.max_stale_s:
                    why = self.bad_reason or status.value.lower()
                    return Verdict(False, f"{self.spec.label}: source failing ({why}) for "
                                          f"{now - self.bad_since:.1f}s", True)
            else:
                return Verdict(False, f"{self.spec.label}: provider {status.value.lower()}", True)
        version = self.spec.version
        if version is None:
            return self._resolve(provider, context)
        key = _memo_key(context)
        token = version()
        hit = self._memo.get(key) if key is not _NO_MEMO else None
        if hit is not None and hit[0] == token:
            return hit[1]
        verdict = self._resolve(provider, context)
        if key is not _NO_MEMO and not verdict.error:
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            self._memo[key] = (token, verdict)
        return verdict

    def _resolve(self, provider: Any, context: Any) -> Verdict:
        ctx = self.context if context is None else _context(context)
        return _verdict(self.spec.label, self.flag, provider, ctx)


def _verdict(label: str, flag: str, provider: Any, ctx: Any) -> Verdict:
    """The provider's answer for the flag, as the agent reads it: anything but True is off."""
    try:
        det = provider.resolve_boolean_details(flag, False, ctx)
    except Exception as exc:  # noqa: BLE001 - OpenFeatureError or a provider bug: off
        return Verdict(False, f"{label}: {_describe(exc)}", True)
    code = det.error_code
    if code is not None:
        code = getattr(code, "value", code)
        return Verdict(False, f"{label}: {code}: {det.error_message or 'no detail'}", True)
    if det.value is True:
        return Verdict(True, "flag on")
    if det.value is False:
        why = getattr(det.reason, "value", det.reason) or "off"
        return Verdict(False, f"kill switch is off ({str(why).lower()})")
    return Verdict(False, f"{label}: TYPE_MISMATCH: flag {flag!r} is not a boolean "
                          f"({type(det.value).__name__})", True)


MEMO_MAX = 4096
_NO_MEMO = object()


def _memo_key(context: Any) -> Any:
    """A hashable key for a context (None: the region's default), or _NO_MEMO."""
    if context is None:
        return None
    if isinstance(context, dict):
        try:
            key = tuple(sorted(context.items()))
            hash(key)
            return key
        except TypeError:
            return _NO_MEMO
    return _NO_MEMO


_EXTRAS = {"openfeature": "guard", "ldclient": "launchdarkly", "ld_openfeature": "launchdarkly",
           "UnleashClient": "unleash", "yggdrasil_engine": "unleash"}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        extra = _EXTRAS.get(exc.name.split(".")[0])
        return f"{exc.name} is not installed" + (f" (pip install 'agentfire[{extra}]')" if extra else "")
    code = getattr(exc, "error_code", None)
    msg = getattr(exc, "error_message", None)
    if code is not None:
        return f"{getattr(code, 'value', code)}: {msg or type(exc).__name__}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _shutdown(provider: Any) -> None:
    if provider is None:
        return
    try:
        provider.shutdown()
    except Exception:  # noqa: BLE001
        pass


# --- building a region's provider -------------------------------------------------------------


def provider_spec(section: Any, runbook: Any, *, oneshot: bool = False) -> ProviderSpec:
    """The OpenFeature provider agents use for this region: a configured one, else the built-in
    flags module's `openfeature_provider`. Raises SourceUnavailable with the reason."""
    custom = getattr(section, "openfeature_provider", None)
    if custom is not None:
        return generic_spec(custom)
    from agentfire.providers import _factory

    factory = _factory("flags", section.kind)
    module = importlib.import_module(factory.__module__)
    build = getattr(module, "openfeature_provider", None)
    if build is None:
        raise SourceUnavailable(f"flags provider {section.kind!r} has no agent-side provider; "
                                "name one under openfeature_provider")
    return build(section, runbook, oneshot=oneshot)


def generic_spec(spec: Any) -> ProviderSpec:
    target = spec.provider

    def load() -> Callable[..., Any]:
        if ":" in target:
            module, _, attr = target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group="openfeature.provider") if ep.name == target]
        if not found:
            raise SourceUnavailable(f"no OpenFeature provider {target!r}: not 'module:Factory' and no "
                                    "entry point of that name in group 'openfeature.provider'")
        return found[0].load()

    def build() -> Any:
        factory = load()
        kwargs = dict(spec.options)
        for key, env in spec.options_env.items():
            value = os.environ.get(env)
            if not value:
                raise SourceUnavailable(f"environment variable ${env} is not set ({key} of {target})")
            kwargs[key] = value
        return factory(**kwargs)

    return ProviderSpec(
        build=build, label=f"OpenFeature provider {target}",
        propagation=spec.propagation or f"as {target} propagates changes (not measured here)",
        propagation_s=spec.propagation_seconds,
    )


def make_source(region: str, section: Any, runbook: Any, *, oneshot: bool = False) -> Source:
    spec = provider_spec(section, runbook, oneshot=oneshot)
    stale = getattr(section, "max_stale_seconds", None)
    return Source(
        region=region, flag=runbook.agent.flag, spec=spec,
        context=_context(default_context(section, runbook)),
        init_timeout_s=float(getattr(section, "init_timeout_seconds", 5.0)),
        max_stale_s=spec.max_stale_s if stale is None else float(stale),
    ).start()


def propagation(section: Any, runbook: Any) -> tuple[str, float | None]:
    """How fast agents see a change in this region (for kill's output), from the configuration."""
    try:
        spec = provider_spec(section, runbook)
    except Exception as exc:  # noqa: BLE001
        return f"agents cannot evaluate it ({_describe(exc)}): they are off", None
    return spec.propagation, spec.propagation_s


# --- the CLI's read-back: one evaluation as an agent would do it ------------------------------


@dataclass
class AgentView:
    on: bool | None  # None: could not be evaluated (agents fail closed, so they are off)
    detail: str
    seconds: float = 0.0


def agent_view(runbook: Any, region: str, *, timeout_s: float, want_on: bool | None = None,
               context: Any = None) -> AgentView:
    """Evaluate the region's flag as an agent would, with a fresh provider, for the region's
    agent context. With `want_on`, keep evaluating until it says so or `timeout_s` passes
    (a provider that polls sees the change at its next fetch). Blocking; bounded by timeout_s."""
    started = time.monotonic()
    section = runbook.regions[region]
    try:
        spec = provider_spec(section, runbook, oneshot=True)
        if spec.once is not None:
            ctx = _context(context if context is not None else default_context(section, runbook))
            return _view_once(spec, runbook.agent.flag, ctx, started, timeout_s, want_on)
        src = make_source(region, section, runbook, oneshot=True)
    except SourceUnavailable as exc:
        return AgentView(None, str(exc))
    except Exception as exc:  # noqa: BLE001
        return AgentView(None, _describe(exc))
    try:
        end = started + timeout_s
        if not src.wait_ready(min(end, started + src.init_timeout_s) - time.monotonic()):
            return AgentView(None, src.reason or "provider not ready", time.monotonic() - started)
        ctx = _context(context) if context is not None else None
        while True:
            v = src.evaluate(ctx)
            if v.error:
                view = AgentView(None, v.reason)
            else:
                view = AgentView(v.on, f"{src.spec.label}: {'on' if v.on else v.reason}")
            # a flag the source does not have yet (a polling source, a server's client-API cache)
            # gets the same grace as a value that has not changed yet
            settled = want_on is None and "FLAG_NOT_FOUND" not in view.detail
            if settled or view.on is want_on or time.monotonic() >= end:
                view.seconds = time.monotonic() - started
                return view
            time.sleep(0.1)
    finally:
        src.close()


def _view_once(spec: ProviderSpec, flag: str, ctx: Any, started: float, timeout_s: float,
               want_on: bool | None) -> AgentView:
    """agent_view with the provider's own evaluator (spec.once), built afresh for each try: the
    checks a Source makes before it evaluates (spec.check), then the same answer mapping."""
    end = started + timeout_s
    while True:
        problem = spec.check() if spec.check is not None else None
        if problem:
            view = AgentView(None, problem)
        else:
            try:
                evaluator = spec.once()  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - as a provider that cannot initialise
                view = AgentView(None, f"{spec.label} not ready: {_describe(exc)}")
            else:
                v = _verdict(spec.label, flag, evaluator, ctx)
                view = AgentView(None, v.reason) if v.error else \
                    AgentView(v.on, f"{spec.label}: {'on' if v.on else v.reason}")
        settled = want_on is None and "FLAG_NOT_FOUND" not in view.detail
        if settled or view.on is want_on or time.monotonic() >= end:
            view.seconds = time.monotonic() - started
            return view
        time.sleep(0.1)
