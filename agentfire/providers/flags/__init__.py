"""The flags Protocol: what a kill-switch provider must do, and how it reports failure."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Outcome(str, enum.Enum):
    """Per-region outcome of a kill (or an undo). Exhaustive: renderers match on every member."""

    CONFIRMED = "CONFIRMED"  # written and read back in the wanted state
    ALREADY_OFF = "ALREADY_OFF"  # read off before we touched it
    ALREADY_ON = "ALREADY_ON"  # undo: read on before we touched it
    SKIPPED = "SKIPPED"  # undo: this incident did not turn it off, so it stays as it is
    DRY_RUN = "DRY_RUN"  # nothing written; detail says what would happen
    MISMATCH = "MISMATCH"  # written, but read back still in the old state
    PENDING_APPROVAL = "PENDING_APPROVAL"  # LaunchDarkly 405: approval request open (ours or earlier)
    RATE_LIMITED = "RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    AUTH = "AUTH"
    UNREACHABLE = "UNREACHABLE"
    TIMEOUT = "TIMEOUT"
    ERROR = "ERROR"  # anything else (corrupt flag file, 400 from the API...)

    @property
    def ok(self) -> bool:
        return self in _OK


_OK = {Outcome.CONFIRMED, Outcome.ALREADY_OFF, Outcome.ALREADY_ON, Outcome.SKIPPED, Outcome.DRY_RUN}


class FlagError(Exception):
    """A provider could not read or write; `outcome` classifies it for the region report."""

    def __init__(self, outcome: Outcome, detail: str):
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


@dataclass(frozen=True)
class WriteResult:
    """What a write did: `pending` for an approval request, `detail` for the report."""

    pending: bool = False
    detail: str = ""


@runtime_checkable
class FlagProvider(Protocol):
    kind: str
    target: str  # a short human description of where the flag lives (never a secret)

    async def read(self, flag: str) -> bool:
        """The flag's live value in this region: True when the agent is on. Raises FlagError."""
        ...

    async def write(self, flag: str, on: bool, *, comment: str, dry_run: bool) -> WriteResult:
        """Turn the flag on or off. Raises FlagError. dry_run changes nothing."""
        ...

    async def probe(self, flag: str) -> str:
        """Read-only reachability and auth check for `doctor`; returns a detail line."""
        ...

    async def aclose(self) -> None: ...
