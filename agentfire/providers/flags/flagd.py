"""OpenFeature flagd file provider (the embedded default).

A kill makes the off variant the flag's default variant and keeps the flag ENABLED: a DISABLED
flag makes flagd return the *caller's* default, and an agent that passes True would stay on.
Targeting rules could still serve the on variant to some users, so a kill stashes them in the
flag's metadata and an undo puts them back. Writes are atomic (temp file, fsync, replace) under a
lock, and a file that cannot be parsed is never written over: flagd keeps serving its last good
values from a corrupt file, so a half-written kill would silently fail open.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfire._files import atomic_write, locked
from agentfire.errors import StateFileError
from agentfire.providers.flags import (
    FlagError, Outcome, WriteResult, in_thread, mark_sent, progress,
)

if TYPE_CHECKING:  # a section from the cache is a runbook.Section: no pydantic at start
    from agentfire.config import FlagdRegion

LOCK_TIMEOUT_S = 10.0  # outside a command's deadline (e.g. the guard creating the file)

STASH_KEY = "agentfire.stashedTargeting"


def new_flag_file(flag: str, on_variant: str = "on", off_variant: str = "off") -> dict[str, Any]:
    return {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            flag: {
                "state": "ENABLED",
                "variants": {on_variant: True, off_variant: False},
                "defaultVariant": on_variant,
            }
        },
    }


class FlagdFileProvider:
    kind = "flagd"

    def __init__(self, path: Path, *, on_variant: str = "on", off_variant: str = "off",
                 create: bool = False):
        self.path = path
        self.on_variant = on_variant
        self.off_variant = off_variant
        self.create = create
        self.target = str(path)

    # -- file handling ---------------------------------------------------------------------

    def _lock(self) -> Any:
        """The file's lock, waited for no longer than the command's deadline leaves."""
        prog = progress()
        prog.doing = f"waiting for the lock {self.path}.lock (another process holds it)"
        return locked(self.path, timeout=prog.left(LOCK_TIMEOUT_S))

    def _load(self, flag: str) -> dict[str, Any]:
        progress().doing = f"reading {self.path}"
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if self.create:
                doc = new_flag_file(flag, self.on_variant, self.off_variant)
                with self._lock():
                    if progress().expired():
                        raise FlagError(Outcome.TIMEOUT, f"{self.path}: the deadline passed; not created")
                    if not self.path.exists():
                        atomic_write(self.path, _dump(doc))
                return json.loads(self.path.read_bytes())
            raise FlagError(Outcome.NOT_FOUND, f"flag file {self.path} does not exist") from None
        except PermissionError as exc:
            raise FlagError(Outcome.ERROR, f"{self.path}: cannot read ({exc.strerror})") from None
        except OSError as exc:  # e.g. a file where a directory of the path is expected
            raise FlagError(Outcome.ERROR, f"{self.path}: cannot read ({exc.strerror or exc})") from None
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FlagError(
                Outcome.ERROR, f"{self.path}: not valid JSON ({exc}); left untouched"
            ) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("flags"), dict):
            raise FlagError(Outcome.ERROR, f"{self.path}: no 'flags' object; left untouched")
        return doc

    def _flag(self, doc: dict[str, Any], flag: str) -> dict[str, Any]:
        entry = doc["flags"].get(flag)
        if entry is None:
            raise FlagError(Outcome.NOT_FOUND, f"flag {flag!r} is not in {self.path}")
        if not isinstance(entry, dict) or not isinstance(entry.get("variants"), dict):
            raise FlagError(Outcome.ERROR, f"{self.path}: flag {flag!r} has no variants; left untouched")
        variants = entry["variants"]
        for v in (self.on_variant, self.off_variant):
            if v not in variants:
                raise FlagError(
                    Outcome.ERROR,
                    f"{self.path}: flag {flag!r} has no variant {v!r} "
                    f"(has: {', '.join(map(str, variants))}); left untouched",
                )
        return entry

    def _value(self, entry: dict[str, Any]) -> bool:
        if entry.get("state", "ENABLED") != "ENABLED":
            # DISABLED: flagd answers with the caller's default, which may well be on
            return True
        if entry.get("targeting"):
            # rules may serve the on variant to some users
            return True
        if entry.get("defaultVariant") not in entry["variants"]:
            # flagd rejects such a flag, so callers get their default, as with DISABLED: it was
            # read as off, and kill answered ALREADY_OFF without writing anything
            return True
        return bool(entry["variants"].get(entry.get("defaultVariant")))

    def read_sync(self, flag: str) -> bool:
        return self._value(self._flag(self._load(flag), flag))

    def write_sync(self, flag: str, on: bool, *, comment: str, dry_run: bool) -> WriteResult:
        with self._lock():
            doc = self._load(flag)
            self._flag(doc, flag)  # validates the flag before anything is written
            new = copy.deepcopy(doc)
            e = new["flags"][flag]
            e["state"] = "ENABLED"
            meta = e.setdefault("metadata", {}) if isinstance(e.get("metadata", {}), dict) else {}
            if on:
                e["defaultVariant"] = self.on_variant
                stashed = meta.pop(STASH_KEY, None)
                if stashed is not None:
                    e["targeting"] = json.loads(stashed)
            else:
                e["defaultVariant"] = self.off_variant
                if e.get("targeting"):
                    meta[STASH_KEY] = json.dumps(e.pop("targeting"), separators=(",", ":"))
                e.pop("targeting", None)
            if not meta:
                e.pop("metadata", None)
            else:
                e["metadata"] = meta
            if dry_run:
                return WriteResult(detail=f"would set defaultVariant={e['defaultVariant']!r} in {self.path}")
            if new == doc:
                return WriteResult(detail="file already in that state")
            prog = progress()
            if prog.expired():  # the command stopped waiting: a late write would be unreported
                raise FlagError(Outcome.TIMEOUT, f"{self.path}: the deadline passed before the write; "
                                                 "no write was sent")
            prog.doing = f"writing {self.path}"
            mark_sent()
            try:
                atomic_write(self.path, _dump(new))
            except StateFileError as exc:
                raise FlagError(Outcome.ERROR, str(exc)) from None
            except OSError as exc:
                raise FlagError(Outcome.ERROR, f"{self.path}: cannot write ({exc.strerror})") from None
        return WriteResult(detail=f"defaultVariant={e['defaultVariant']!r}")

    # -- the Protocol ----------------------------------------------------------------------

    # blocking file I/O runs in a daemon thread (in_thread): a file that blocks (a hung network
    # mount) or a lock held elsewhere cannot hold the command, the guard or the interpreter's exit

    async def read(self, flag: str) -> bool:
        return await in_thread(_flag_errors, self.read_sync, flag)

    async def write(self, flag: str, on: bool, *, comment: str, dry_run: bool) -> WriteResult:
        return await in_thread(
            _flag_errors, self.write_sync, flag, on, comment=comment, dry_run=dry_run
        )

    async def probe(self, flag: str) -> str:
        def check() -> str:
            if not self.path.exists():
                if self.create:
                    return f"{self.path} will be created on first use (agent on)"
                raise FlagError(Outcome.NOT_FOUND, f"flag file {self.path} does not exist")
            on = self.read_sync(flag)
            return f"{self.path}: {flag} is {'on' if on else 'off'}"

        return await in_thread(_flag_errors, check)

    async def aclose(self) -> None:
        return None


def _flag_errors(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A lock or directory that cannot be used is this region's ERROR, not a crash."""
    try:
        return fn(*args, **kwargs)
    except StateFileError as exc:
        raise FlagError(Outcome.ERROR, str(exc)) from None


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def from_config(section: FlagdRegion, runbook: Any) -> FlagdFileProvider:
    return FlagdFileProvider(
        runbook.resolve_path(section.path),
        on_variant=section.on_variant,
        off_variant=section.off_variant,
        create=section.create,
    )


# --- the agent's side --------------------------------------------------------------------------


def openfeature_provider(section: FlagdRegion, runbook: Any, *, oneshot: bool = False) -> Any:
    """What agents evaluate the file with: `openfeature-provider-flagd`'s in-process FILE resolver.

    The provider re-reads the file every `watch_interval_ms`, and keeps serving its last good
    values when the file turns corrupt or disappears (it only reports an error). So each
    evaluation also stats the file (about a microsecond): a file that changed is validated at
    once, a corrupt or missing one is off with the reason, and a good one is loaded before the
    answer, so an agent sees a kill on its next call rather than at the watcher's next tick."""
    import os
    import stat

    from agentfire.agentside import ProviderSpec

    path = runbook.resolve_path(section.path)
    state: dict[str, Any] = {"sig": None, "problem": None, "provider": None}

    def signature() -> tuple[int, int, int] | str:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return f"flag file {path} does not exist"
        except OSError as exc:
            return f"flag file {path}: {exc.strerror or exc}"
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block the agent's call
            return f"flag file {path} is not a regular file"
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def validate() -> str | None:
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return f"flag file {path} does not exist"
        except OSError as exc:
            return f"flag file {path}: cannot read ({exc.strerror or exc})"
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"flag file {path}: not valid JSON ({exc})"
        if not isinstance(doc, dict) or not isinstance(doc.get("flags"), dict):
            return f"flag file {path}: no 'flags' object"
        return None

    def build() -> Any:
        from openfeature.contrib.provider.flagd import FlagdProvider
        from openfeature.contrib.provider.flagd.config import ResolverType

        sig = signature()
        problem = sig if isinstance(sig, str) else validate()
        if problem:
            raise FlagError(Outcome.ERROR, problem)
        state["sig"] = signature()
        return FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path),
                             deadline_ms=section.watch_interval_ms)

    def attach(provider: Any) -> None:
        state["provider"] = provider

    def check() -> str | None:
        sig = signature()
        if isinstance(sig, str):
            state["sig"] = None
            return sig
        if sig != state["sig"]:
            state["sig"] = sig
            state["problem"] = validate()
            provider = state["provider"]
            if state["problem"] is None and provider is not None:
                try:  # load it now (the watcher thread would, within watch_interval_ms)
                    provider.resolver.connector.safe_load_data()
                except Exception:  # noqa: BLE001 - the provider reports its own errors as events
                    pass
        return state["problem"]

    interval = section.watch_interval_ms / 1000
    return ProviderSpec(
        build=build, label=f"flagd file {path}",
        propagation=f"flagd file: on the agents' next call (in-process, re-read every {interval:g}s)",
        propagation_s=interval, check=check, attach=attach, max_stale_s=0.0,
        once=(lambda: FileEvaluator(path)) if oneshot and _has_flagd_core() else None,
    )


def _has_flagd_core() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("openfeature.contrib.tools.flagd.core") is not None
    except ImportError:
        return False


class FileEvaluator:
    """One evaluation of the flag file as the agents' provider makes it, for the CLI's read-back.

    `FlagdProvider(resolver_type=FILE)` answers `resolve_boolean_details` through its in-process
    resolver, which asks flagd-core's `FlagdCore` (the flagd evaluation engine: targeting,
    fractional rollouts, DISABLED, type checks) with the file as its FileWatcher reads it (YAML
    for *.yaml, else JSON). This is that evaluator fed that way, without what a long-lived
    agent needs and a one-shot read does not: the provider module's gRPC and protobuf imports
    (0.1-0.15 s of each kill), its watcher thread and the SDK's registration.
    tests/test_kill_flagd.py checks it answers as the provider does, file by file."""

    def __init__(self, path: Path):
        from openfeature.contrib.tools.flagd.core import FlagdCore

        self.core = FlagdCore()
        with open(path) as f:  # as FileWatcher._load_data reads it
            if str(path).endswith(".yaml"):
                import yaml

                data = yaml.safe_load(f)
            else:
                data = json.load(f)
        self.core.set_flags_and_get_changed_keys(json.dumps(data))  # as the resolver's adapter

    def resolve_boolean_details(self, flag_key: str, default_value: bool, evaluation_context: Any = None) -> Any:
        return self.core.resolve_boolean_value(flag_key, default_value, evaluation_context)
