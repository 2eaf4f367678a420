"""The traces Protocol: where trajectories come from (files, Langfuse, Phoenix).

Every store returns the one Trajectory model (agentfire.trajectory). Stores are async so that
scans can page concurrently; local stores run their file work in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from agentfire.errors import NotDoneError
from agentfire.trajectory import Trajectory


class TraceNotFound(NotDoneError):
    """The trace id does not exist in the named store (exit 1)."""


class TraceStoreError(NotDoneError):
    """The store could not be read (unreachable, auth, rate limited past the deadline...)."""


@dataclass(frozen=True)
class TrajectorySummary:
    """One trajectory in a window, without its steps (for costs, lists and naive scans)."""

    trace_id: str
    user_id: str | None
    start: datetime | None
    status: str
    cost_usd: float
    cost_known: bool = True  # False: model steps with tokens but no price (store or runbook prices:)


@runtime_checkable
class TraceStore(Protocol):
    kind: str
    target: str  # human description of where (never a secret)

    async def get_trajectory(self, trace_id: str) -> Trajectory:
        """The whole trajectory, steps ordered. Raises TraceNotFound / TraceStoreError."""
        ...

    async def list_trajectories(self, start: datetime, end: datetime) -> list[TrajectorySummary]:
        """Every trajectory that started in [start, end), with its cost and status."""
        ...

    async def probe(self) -> str:
        """Read-only reachability and auth check for `doctor`; returns a detail line."""
        ...

    async def aclose(self) -> None: ...


def doctor_probe(runbook) -> tuple[bool, str]:
    """`agentfire doctor`: build the configured trace store and probe it read-only.

    The files store is opened without seeding (doctor writes nothing anywhere)."""
    import asyncio

    from agentfire.errors import AgentfireError

    async def run() -> str:
        section = runbook.traces
        if section.kind == "files":
            from agentfire.providers.traces.files import FilesTraceStore, _has_data

            path = runbook.resolve_path(section.path)
            if section.seed_scenario and not _has_data(path):
                return f"{path}: empty; first use seeds the sandbox scenario {section.seed_scenario!r}"
            store = FilesTraceStore(path)
        else:
            from agentfire import providers

            store = providers.build("traces", section, runbook)
        try:
            return await store.probe()
        finally:
            await store.aclose()

    try:
        return True, asyncio.run(run())
    except AgentfireError as exc:
        return False, str(exc)


async def bounded_get(client: Any, path: str, params: Any, *, where: str, policy: Any,
                      timeout_s: float, detail: Any = None) -> Any:
    """One bounded GET for an HTTP trace store (agentfire._http retries), with the transport
    failures every store reports alike mapped to TraceStoreError naming `where`. Returns the
    response; the caller judges its status (404 and auth mean different things per vendor)."""
    import asyncio

    import httpx

    from agentfire import _http

    try:
        return await _http.request(client, "GET", path, policy=policy, params=params)
    except _http.RetriesExhausted as exc:
        what = detail(exc.response) if detail else f"HTTP {exc.response.status_code}"
        raise TraceStoreError(
            f"{where}: {what} after {exc.tries} tries"
            + (" (rate limited; lower the scan rate or wait)" if exc.response.status_code == 429 else "")
        ) from None
    except httpx.TimeoutException:
        raise TraceStoreError(f"{where}: no answer within {timeout_s:g} s") from None
    except httpx.TransportError as exc:
        raise TraceStoreError(f"{where} is unreachable: {type(exc).__name__}") from None
    except asyncio.TimeoutError:
        raise TraceStoreError(f"{where}: deadline passed") from None
