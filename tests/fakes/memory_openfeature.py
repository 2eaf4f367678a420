"""A third-party OpenFeature provider, as a team would name one in runbook.yaml: not agentfire code.

It is the OpenFeature SDK's own InMemoryProvider, built from plain values so that runbook.yaml can
configure it (`openfeature_provider: {provider: "tests.fakes.memory_openfeature:provider",
options: {flags: {agent.enabled: true}}}`). A secret-looking option can come from an env variable
through `options_env` (here `api_key`, which it only checks is present).
"""

from __future__ import annotations

from typing import Any

from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider


def provider(flags: dict[str, Any], api_key: str | None = None) -> InMemoryProvider:
    if api_key is not None and not api_key.startswith("key-"):
        raise ValueError("api_key must start with 'key-'")
    return InMemoryProvider({
        key: InMemoryFlag("on" if value is True else "value", {"on": value} if value is True else {"value": value})
        for key, value in flags.items()
    })


class _Slow(InMemoryProvider):
    """A provider whose initialisation never finishes in time (a vendor SDK stuck connecting)."""

    def __init__(self, seconds: float):
        super().__init__({})
        self.seconds = seconds

    def initialize(self, evaluation_context: Any) -> None:
        import time

        time.sleep(self.seconds)


def slow(seconds: float = 30.0) -> InMemoryProvider:
    return _Slow(seconds)
