"""The flags Protocol: what a kill-switch provider must do, and how it reports failure."""

from __future__ import annotations

import contextvars
import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


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
    INTERRUPTED = "INTERRUPTED"  # Ctrl-C (SIGINT) stopped the command before this region finished
    ERROR = "ERROR"  # anything else (corrupt flag file, 400 from the API...)

    @property
    def ok(self) -> bool:
        return self in _OK


_OK = {Outcome.CONFIRMED, Outcome.ALREADY_OFF, Outcome.ALREADY_ON, Outcome.SKIPPED, Outcome.DRY_RUN}


class FlagError(Exception):
    """A provider could not read or write; `outcome` classifies it for the region report."""

    def __init__(self, outcome: Outcome, detail: str):
        from agentfire.secrets import redact

        detail = redact(detail)  # servers echo tokens in error bodies; every output gets this
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail

    def __str__(self) -> str:
        from agentfire.secrets import redact

        return redact(self.detail)


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


# --- one region's progress within the command's deadline ------------------------------------


@dataclass
class RegionProgress:
    """What one region's task is doing, shared with the thread doing blocking I/O for it.

    `deadline` is a time.monotonic() value (None: no deadline); `gave_up` is set when the command
    stops waiting (deadline or Ctrl-C), so a thread that is still blocked does nothing after it;
    `sent` says whether a write was really sent (never guessed from having called write())."""

    deadline: float | None = None
    doing: str = ""
    sent: bool = False
    gave_up: threading.Event = field(default_factory=threading.Event)

    def left(self, default: float) -> float:
        """Seconds left before the deadline (`default` when there is none), never negative."""
        if self.deadline is None:
            return default
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        return self.gave_up.is_set() or (self.deadline is not None and time.monotonic() >= self.deadline)


PROGRESS: contextvars.ContextVar[RegionProgress | None] = contextvars.ContextVar(
    "agentfire_region_progress", default=None)


def progress() -> RegionProgress:
    """This region's progress (a detached one outside a kill, e.g. in the guard)."""
    p = PROGRESS.get()
    return p if p is not None else RegionProgress()


def mark_sent() -> None:
    """A provider calls this right before it sends a write (so a timeout can say so)."""
    p = PROGRESS.get()
    if p is not None:
        p.sent = True


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking I/O (a flag file on a hung mount, a lock held by another process) in a daemon
    thread and await it. Unlike asyncio.to_thread, a cancelled wait leaves nothing that the event
    loop's shutdown or the interpreter's exit joins: the command returns at its deadline whatever
    the file system does, and the thread, if it ever wakes, sees `gave_up` and writes nothing."""
    import asyncio  # here: `agentfire status` over flagd files runs without an event loop

    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def run() -> None:
        try:
            value = ctx.run(fn, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001  (handed to the awaiting task)
            ok, value = False, exc
        else:
            ok = True
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    threading.Thread(target=run, name="agentfire-blocking-io", daemon=True).start()
    return await fut
