"""The validated runbook (`Runbook`), finding runbook.yaml, and a cache of validated runbooks.

No pydantic here. `agentfire.config` parses and validates runbook.yaml (pydantic models, file:line
errors) and builds a `Runbook`; importing pydantic, creating those models and validating is most
of what a short command like `status` or `kill` costs at its start (0.1-0.15 s). So a runbook that
validated is kept, keyed by its exact bytes and the code that validated it (agentfire's version,
agentfire/config.py, pydantic's version): `load_runbook_validated_before` answers from that
cache, without pydantic, and validates otherwise. A section read from the cache is a `Section`:
its validated fields (defaults included) as read-only attributes, and `model_dump()`; a runbook
that fails validation is never cached, so its error is always the validator's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentfire.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from agentfire.config import AgentSection, RunbookConfig

CONFIG_FILENAME = "runbook.yaml"
CONFIG_ENV = "AGENTFIRE_CONFIG"

_PATH_VAR = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")


@dataclass(frozen=True)
class Runbook:
    """The validated runbook: the raw model plus typed provider sections and the base dir."""

    path: Path
    model: RunbookConfig
    regions: dict[str, BaseModel]
    budget: BaseModel
    traces: BaseModel
    env_names: tuple[str, ...] = field(default=())
    drill_scope: str | None = None  # set by for_drill(): the budget scope a drill freezes

    def for_drill(self) -> "Runbook":
        """What a drill's commands see: only the `gameday:` regions, its budget scope."""
        from dataclasses import replace

        g = self.model.gameday
        regions = {n: r for n, r in self.regions.items() if g.regions is None or n in g.regions}
        return replace(self, regions=regions, drill_scope=g.scope or self.agent.name)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def agent(self) -> AgentSection:
        return self.model.agent

    def resolve_path(self, value: str) -> Path:
        """A path from runbook.yaml: ~ and $VARS expanded, relative to the file. A variable that
        is unset (or empty) is a ConfigError naming it: left literal, a freeze would go into a
        store the agents never read, reported CONFIRMED."""
        unset = [m.group(1) or m.group(2) for m in _PATH_VAR.finditer(value)
                 if not os.environ.get(m.group(1) or m.group(2))]
        if unset:
            raise ConfigError(
                f"{self.path}: path {value!r} names {', '.join('$' + u for u in dict.fromkeys(unset))}, "
                "which is not set; set it, or write the path out")
        p = Path(os.path.expandvars(os.path.expanduser(value)))
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def journal_dir(self) -> Path:
        return self.resolve_path(self.model.journal.dir)

    def select_regions(self, spec: str) -> list[str]:
        """`all` or a comma-separated list of region names; unknown names are usage errors."""
        names = list(self.regions)
        if spec.strip().lower() == "all":
            return names
        wanted = [s.strip() for s in spec.split(",") if s.strip()]
        if not wanted:
            raise ConfigError("--region needs 'all' or region names")
        unknown = [w for w in wanted if w not in self.regions]
        if any(u.lower() == "all" for u in unknown):
            raise ConfigError(f"--region {spec!r}: 'all' stands alone; pass --region all, or only region names")
        if unknown:
            raise ConfigError(
                f"unknown region {', '.join(repr(u) for u in unknown)}; "
                f"{self.path} defines: {', '.join(names)} (or use 'all')"
            )
        return list(dict.fromkeys(wanted))


def _not_a_config_file(p: Path, origin: str) -> str:
    if p.is_dir():
        return f"config path is a directory, not a file: {p}{origin}; pass {p / 'runbook.yaml'}"
    return f"config file not found: {p}{origin}"


def find_config(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path:
    """--config, else $AGENTFIRE_CONFIG, else runbook.yaml here or in the nearest parent."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            # the CLI passes $AGENTFIRE_CONFIG as if it were --config: say where it came from
            origin = f" (from ${CONFIG_ENV})" if os.environ.get(CONFIG_ENV) == str(explicit) else ""
            raise ConfigError(_not_a_config_file(p, origin))
        return p.resolve()
    env = os.environ.get(CONFIG_ENV)
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(_not_a_config_file(p, f" (from ${CONFIG_ENV})"))
        return p.resolve()
    here = (cwd or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d / CONFIG_FILENAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_FILENAME} in {here} or any parent; pass --config PATH or set ${CONFIG_ENV}"
    )


# --- validated runbooks, kept -----------------------------------------------------------------

CACHE_ENV = "AGENTFIRE_CACHE_DIR"
CACHE_KEEP = 64  # validated runbooks kept (a few KB each); the oldest go first
_MODEL = "$model"


class Section:
    """A validated section of a runbook read from the cache: the fields pydantic validated
    (defaults included) as read-only attributes, and `model_dump()`; `_model` names the model
    (FlagdRegion, KillSection...). Fields only: a model's properties (PolicyRule.label) are not
    here, so only commands that read fields use the cache (status, kill)."""

    __slots__ = ("_model", "_fields")

    def __init__(self, model: str, fields: dict[str, Any]):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_fields", fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"{self._model} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._model} is read-only (validated runbook)")

    def model_dump(self) -> dict[str, Any]:
        return _plain(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Section) and (self._model, self._fields) == (other._model, other._fields)

    def __hash__(self) -> int:
        return hash((self._model, repr(self._fields)))

    def __repr__(self) -> str:
        return f"{self._model}({', '.join(f'{k}={v!r}' for k, v in self._fields.items())})"


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.model_dump()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _NotCacheable(Exception):
    pass


def _encode(value: Any) -> Any:
    """Validated models -> JSON-able data, each model marked with its class name."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        cls = type(value)
        from agentfire import config

        if getattr(config, cls.__name__, None) is not cls:  # a plugin's schema: not kept
            raise _NotCacheable(cls.__name__)
        return {_MODEL: cls.__name__, "fields": {n: _encode(getattr(value, n)) for n in cls.model_fields}}
    if isinstance(value, dict):
        if _MODEL in value or not all(isinstance(k, str) for k in value):
            raise _NotCacheable("a mapping that JSON would change")
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise _NotCacheable(type(value).__name__)


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if _MODEL in value:
            return Section(value[_MODEL], {k: _decode(v) for k, v in value["fields"].items()})
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "agentfire" / "runbooks"


def _key(data: bytes) -> str:
    """The runbook's bytes and what validated them: agentfire's version, agentfire/config.py
    (its models), pydantic's version file, the Python version."""
    import importlib.util
    import sys

    from agentfire import __version__

    try:  # CPython's own BLAKE2: `import hashlib` loads OpenSSL first (15 ms of a 150 ms start)
        from _blake2 import blake2b
    except ImportError:  # another Python
        from hashlib import blake2b
    h = blake2b(data, digest_size=32)
    here = Path(__file__).resolve().parent
    spec = importlib.util.find_spec("pydantic")
    stamps = [here / "config.py", Path(__file__).resolve()]
    if spec is not None and spec.origin:
        stamps.append(Path(spec.origin).parent / "version.py")
    for p in stamps:
        try:
            st = p.stat()
            h.update(f"{p}:{st.st_mtime_ns}:{st.st_size};".encode())
        except OSError:
            h.update(f"{p}:missing;".encode())
    h.update(f"{__version__};{sys.version}".encode())
    return h.hexdigest()


def load_runbook_validated_before(path: str | os.PathLike[str] | None = None) -> Runbook:
    """`agentfire.config.load_runbook`, answered from the cache when these exact bytes validated
    before under the same code; else validated (and kept when it validates)."""
    import json

    cfg_path = find_config(path)
    try:
        if cfg_path.stat().st_size <= MAX_CACHED_BYTES:
            data = cfg_path.read_bytes()
            key = _key(data)
            entry = _cache_dir() / f"{key[:40]}.json"
            try:
                doc = json.loads(entry.read_bytes())
            except (OSError, ValueError):
                doc = None
            if isinstance(doc, dict) and doc.get("key") == key:
                try:
                    rb = doc["runbook"]
                    return Runbook(cfg_path, _decode(rb["model"]), _decode(rb["regions"]),
                                   _decode(rb["budget"]), _decode(rb["traces"]), tuple(rb["env_names"]))
                except (KeyError, TypeError):
                    pass
        else:
            key = entry = None
    except OSError:
        key = entry = None
    from agentfire.config import load_runbook

    runbook = load_runbook(cfg_path)  # raises ConfigError for a bad file: never kept
    if entry is not None and key is not None:
        _keep(entry, key, runbook)
    return runbook


MAX_CACHED_BYTES = 1024 * 1024  # agentfire.config.MAX_CONFIG_BYTES: larger files are refused there


def _keep(entry: Path, key: str, runbook: Runbook) -> None:
    import json

    from agentfire._files import atomic_write
    from agentfire.errors import StateFileError

    try:
        doc = {"key": key, "runbook": {
            "model": _encode(runbook.model), "regions": _encode(runbook.regions),
            "budget": _encode(runbook.budget), "traces": _encode(runbook.traces),
            "env_names": list(runbook.env_names)}}
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False)
        if _plain(_decode(json.loads(text)["runbook"])) != _plain(_decode(doc["runbook"])):
            return  # JSON would change something (e.g. a tuple): validate each time instead
        atomic_write(entry, text.encode("utf-8"))
        kept = sorted(entry.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-CACHE_KEEP]:
            old.unlink(missing_ok=True)
    except (_NotCacheable, StateFileError, OSError, ValueError):
        pass  # not kept: the next start validates again
