"""The budget Protocol: where spend caps live (sqlite, redis), one record per scope.

A scope is what caps apply to: the agent (its name in runbook.yaml), optionally per region
("support-agent/eu-west"). Its record holds the hard cap, the freeze cap and admission, an optional
expiry with the state it returns to, and a version counter that every write bumps: writes are
compare-and-set on that version, so two on-calls acting at once never lose an update.

Stores are synchronous on purpose: the agent's guard reads them before each model call, and an
event loop per read would cost more than the read itself. Every store keeps each field as text
(Redis hash fields are strings anyway); `parse_caps` validates what comes back, so a hand-edited
record with a non-numeric cap is a clear error, never a silent "no cap".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Protocol, runtime_checkable

from agentfire.errors import NotDoneError

ADMISSION = ("open", "frozen")
FIELDS = ("hard_usd", "freeze_usd", "admission", "expires_at", "prior", "updated_by", "updated_at", "note")


class BudgetStoreError(NotDoneError):
    """The store could not be read or written (down, unreachable, locked, not a database)."""


class BudgetGarbage(BudgetStoreError):
    """The store answered, but a record does not parse (a non-numeric cap...): never 'allow'."""


class VersionConflict(NotDoneError):
    """Someone else changed the scope since we read it: nothing was written."""

    def __init__(self, scope: str, expected: int, current: int):
        super().__init__(
            f"scope {scope!r} changed under you: you read version {expected}, the store now has "
            f"version {current}; nothing was written"
        )
        self.scope, self.expected, self.current = scope, expected, current


@dataclass(frozen=True)
class CapsState:
    """The settable part: what a freeze changes and what an expiry or a lift returns to."""

    hard_usd: float | None = None
    freeze_usd: float | None = None
    admission: str = "open"

    def to_json(self) -> dict[str, Any]:
        return {"hard_usd": self.hard_usd, "freeze_usd": self.freeze_usd, "admission": self.admission}


OPEN = CapsState()


@dataclass(frozen=True)
class Caps:
    """One scope's record as stored. `effective(now)` is what applies (after expiry: `prior`)."""

    scope: str
    hard_usd: float | None = None
    freeze_usd: float | None = None
    admission: str = "open"
    expires_at: float | None = None  # epoch seconds; from then on `prior` (or OPEN) applies
    prior: CapsState | None = None
    version: int = 0  # 0: never written
    updated_by: str = ""
    updated_at: str = ""
    note: str = ""
    error: str | None = field(default=None, compare=False)  # set by the guard: unreadable store

    @property
    def state(self) -> CapsState:
        return CapsState(self.hard_usd, self.freeze_usd, self.admission)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def effective(self, now: float) -> CapsState:
        if self.expired(now):
            return self.prior or OPEN
        return self.state

    def with_state(self, s: CapsState, **changes: Any) -> "Caps":
        return replace(self, hard_usd=s.hard_usd, freeze_usd=s.freeze_usd, admission=s.admission,
                       **changes)

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        from datetime import datetime, timezone

        d: dict[str, Any] = {"scope": self.scope, **self.state.to_json()}
        d["expires_at"] = (
            None if self.expires_at is None
            else datetime.fromtimestamp(self.expires_at, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
        d["prior"] = self.prior.to_json() if self.prior else None
        if now is not None:
            d["expired"] = self.expired(now)
            d["effective"] = self.effective(now).to_json()
        d.update(version=self.version, updated_by=self.updated_by, updated_at=self.updated_at,
                 note=self.note)
        return d


def to_fields(caps: Caps) -> dict[str, str]:
    """The record as text fields (both stores keep these; "" means unset)."""

    def num(v: float | None) -> str:
        return "" if v is None else repr(float(v))

    return {
        "hard_usd": num(caps.hard_usd), "freeze_usd": num(caps.freeze_usd),
        "admission": caps.admission, "expires_at": num(caps.expires_at),
        "prior": json.dumps(caps.prior.to_json(), separators=(",", ":")) if caps.prior else "",
        "updated_by": caps.updated_by, "updated_at": caps.updated_at, "note": caps.note,
    }


def _number(value: Any, what: str, where: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        out = float(value)
    except (TypeError, ValueError):
        raise BudgetGarbage(
            f"{where}: {what} is {str(value)[:40]!r}, not a number; failing closed "
            "(fix or delete the record)"
        ) from None
    if math.isnan(out) or math.isinf(out) or out < 0:
        raise BudgetGarbage(f"{where}: {what} is {out!r}; it must be a finite number >= 0; failing closed")
    return out


def _admission(value: Any, where: str) -> str:
    if value in (None, ""):
        return "open"
    if value not in ADMISSION:
        raise BudgetGarbage(f"{where}: admission is {str(value)[:40]!r}, not one of open, frozen; failing closed")
    return str(value)


def parse_state(doc: Mapping[str, Any], where: str, label: str = "") -> CapsState:
    """A {hard_usd, freeze_usd, admission} mapping (a stored prior, a journaled before), validated."""
    return CapsState(_number(doc.get("hard_usd"), f"{label}hard_usd", where),
                     _number(doc.get("freeze_usd"), f"{label}freeze_usd", where),
                     _admission(doc.get("admission"), where))


def parse_caps(scope: str, fields: Mapping[str, Any] | None, where: str) -> Caps:
    """Validate a stored record (None: never written -> open, version 0)."""
    if not fields:
        return Caps(scope)
    raw_version = fields.get("version")
    try:
        version = int(raw_version)  # type: ignore[arg-type]
        if version < 0 or str(raw_version).strip() != str(version):
            raise ValueError
    except (TypeError, ValueError):
        raise BudgetGarbage(f"{where}: version is {str(raw_version)[:40]!r}, not a counter; failing closed") from None
    prior = None
    raw_prior = fields.get("prior")
    if raw_prior not in (None, ""):
        try:
            p = json.loads(raw_prior)
            if not isinstance(p, dict):
                raise ValueError
        except (TypeError, ValueError):
            raise BudgetGarbage(f"{where}: prior is not a JSON object; failing closed") from None
        prior = parse_state(p, where, "prior.")
    return Caps(
        scope=scope,
        hard_usd=_number(fields.get("hard_usd"), "hard_usd", where),
        freeze_usd=_number(fields.get("freeze_usd"), "freeze_usd", where),
        admission=_admission(fields.get("admission"), where),
        expires_at=_number(fields.get("expires_at"), "expires_at", where),
        prior=prior, version=version,
        updated_by=str(fields.get("updated_by") or ""), updated_at=str(fields.get("updated_at") or ""),
        note=str(fields.get("note") or ""),
    )


@runtime_checkable
class BudgetStore(Protocol):
    kind: str
    target: str  # where, for messages (never a secret)

    def read(self, scope: str) -> Caps:
        """The scope's record (version 0 when never written). Raises BudgetStoreError/BudgetGarbage."""
        ...

    def compare_and_set(self, caps: Caps, expect_version: int) -> int:
        """Write `caps` for caps.scope if the stored version is still `expect_version`; returns the
        new version. Raises VersionConflict (nothing written) or BudgetStoreError."""
        ...

    def scopes(self) -> list[str]:
        """Every scope that has a record."""
        ...

    def probe(self) -> str:
        """Read-only reachability check for `doctor`; returns a detail line."""
        ...

    def close(self) -> None: ...
