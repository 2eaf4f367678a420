"""Provider registries: flags, budget, traces.

Each family maps a `kind` (as written in runbook.yaml) to a config schema (a pydantic model,
cheap to import) and a factory named by import path, loaded only when a command needs it, so
`agentfire --help` never imports an HTTP client or a vendor SDK. Third-party providers register
through the `agentfire.providers` entry-point group, loaded after the built-ins: the entry point's
object is a dict {"family": ..., "kind": ..., "schema": Model, "factory": "module:callable"}.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Callable

from agentfire.errors import ConfigError

# family -> kind -> "module:callable" building the provider from (schema instance, Runbook)
BUILTIN_FACTORIES: dict[str, dict[str, str]] = {
    "flags": {
        "flagd": "agentfire.providers.flags.flagd:from_config",
        "unleash": "agentfire.providers.flags.unleash:from_config",
        "launchdarkly": "agentfire.providers.flags.launchdarkly:from_config",
    },
    "budget": {
        "sqlite": "agentfire.providers.budget.sqlite:from_config",
        "redis": "agentfire.providers.budget.redis:from_config",
    },
    "traces": {
        "files": "agentfire.providers.traces.files:from_config",
        "langfuse": "agentfire.providers.traces.langfuse:from_config",
        "phoenix": "agentfire.providers.traces.phoenix:from_config",
    },
}


@lru_cache(maxsize=1)
def _plugins() -> tuple[dict[str, Any], ...]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group="agentfire.providers"):
        try:
            spec = ep.load()
        except Exception as exc:  # a broken plugin must not take the kill switch down
            raise ConfigError(f"provider plugin {ep.name!r} failed to load: {exc}") from None
        if not (isinstance(spec, dict) and {"family", "kind", "schema", "factory"} <= spec.keys()):
            raise ConfigError(f"provider plugin {ep.name!r} is not a provider spec dict")
        found.append(spec)
    return tuple(found)


def provider_schemas(family: str, kind: Any = None) -> dict[str, Any]:
    """Schemas by kind. Built-ins win, so for a built-in `kind` the entry points are not scanned
    (scanning every installed distribution costs ~0.1 s of each command's start)."""
    from agentfire.config import PROVIDER_SCHEMAS

    schemas = dict(PROVIDER_SCHEMAS[family])
    if kind in schemas:
        return schemas
    for spec in _plugins():
        if spec["family"] == family:
            schemas.setdefault(spec["kind"], spec["schema"])
    return schemas


def _factory(family: str, kind: str) -> Callable[..., Any]:
    target = BUILTIN_FACTORIES[family].get(kind)
    if target is None:
        for spec in _plugins():
            if spec["family"] == family and spec["kind"] == kind:
                target = spec["factory"]
                break
    if target is None:
        raise ConfigError(f"no {family} provider of kind {kind!r}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build(family: str, section: Any, runbook: Any) -> Any:
    """Instantiate the provider for a validated config section."""
    return _factory(family, section.kind)(section, runbook)
